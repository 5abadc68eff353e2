"""node-opcua, an independent OPC UA stack, against the station's server, knowing only OPC 40100-1:
it finds the VisionSystem by its type and every node by the specification's browse names, and runs
PrepareRecipe → StartSingleJob → ResultReadyEvent → GetResultById; an Int32 PartId and a missing
argument are refused, and so is an operator's PrepareRecipe.

tests/node holds the client (client.mjs) and its locked dependencies; .ci/run installs them with
`npm ci`."""

from __future__ import annotations

import asyncio

import pytest

from ..support.opcua_harness import NODE_MISSING, PASSWORDS, node_script, opcua_config, running

pytestmark = pytest.mark.skipif(bool(NODE_MISSING), reason=NODE_MISSING or "-")


def test_node_opcua_client_full_cycle_by_the_specification(tmp_path):
    path = opcua_config(tmp_path)

    async def scenario():
        async with running(path) as station:
            return await node_script(
                "client.mjs",
                station.config.opcua.endpoint,
                "int",
                PASSWORDS["int"],
                "op",
                PASSWORDS["op"],
                str(tmp_path / "pki"),
            )

    code, result, err = asyncio.run(scenario())
    assert code == 0 and "error" not in result, (result["error"] if "error" in result else result, err[-2000:])
    assert result["systemType"].endswith(";i=1003")  # VisionSystemType of the Machine Vision namespace
    assert {"VisionStateMachine", "RecipeManagement", "ResultManagement", "ConfigurationManagement"} <= {
        n.split(":")[-1] for n in result["system"]
    }
    assert {"StartSingleJob", "StartContinuous", "Stop", "Abort"} <= {n.split(":")[-1] for n in result["automatic"]}
    assert result["state"] == "Operational"
    assert result["prepare"] == {"status": "Good", "internalId": "1", "isCompleted": True}
    assert result["callStatus"] == "Good" and result["jobId"]
    event = result["event"]
    assert event["jobId"] == result["jobId"] and event["partId"] == "NODE-1" and event["measId"] == "MEAS-1"
    assert event["resultState"] == 1  # PASS
    got = result["getResultById"]
    assert got["status"] == "Good" and got["error"] == 0
    assert (got["resultId"], got["jobId"], got["partId"], got["recipe"]) == (
        event["resultId"],
        result["jobId"],
        "NODE-1",
        "1",
    )
    assert result["int32PartId"]["status"] == "BadInvalidArgument"
    assert result["int32PartId"]["inputs"][1] == "BadTypeMismatch"
    assert result["missingArgument"] == "BadArgumentsMissing"
    assert "BadUserAccessDenied" in result["operatorPrepareRecipe"]
