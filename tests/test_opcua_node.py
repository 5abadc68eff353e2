"""node-opcua, an independent OPC UA stack, against the station's server: browse the model,
subscribe to result events, call StartSingleJob, read the result; an operator's PrepareRecipe is refused.

tests/node holds the client (client.mjs) and its locked dependencies; .ci/run installs them with
`npm ci`."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from .opcua_harness import NAMESPACE, PASSWORDS, opcua_config, running

NODE_DIR = Path(__file__).resolve().parent / "node"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (Debian nodejs)"),
    pytest.mark.skipif(
        not (NODE_DIR / "node_modules" / "node-opcua").is_dir(),
        reason="node-opcua is not installed: run `npm ci` in tests/node (.ci/run does)",
    ),
]


def test_node_opcua_client(tmp_path):
    path = opcua_config(tmp_path)

    async def scenario():
        async with running(path) as station:
            proc = await asyncio.create_subprocess_exec(
                "node",
                str(NODE_DIR / "client.mjs"),
                station.config.opcua.endpoint,
                "op",
                PASSWORDS["op"],
                NAMESPACE,
                str(tmp_path / "pki"),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=NODE_DIR,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 90)
            return proc.returncode, out.decode(), err.decode()

    code, out, err = asyncio.run(scenario())
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, out + err
    result = json.loads(lines[-1])
    assert code == 0 and "error" not in result, (result, err[-2000:])
    assert {"VisionSystemStateMachine", "RecipeManagement", "ResultManagement", "Statistics"} <= set(result["system"])
    assert "StartSingleJob" in result["stateMachine"]
    assert {"ResultId", "PartId", "Verdict", "CheckOutcomes", "DefectCount", "CreationTime"} <= set(
        result["lastResult"]
    )
    assert result["state"] == "Operational" and result["callStatus"] == "Good"
    assert result["event"]["JobId"] == result["jobId"] and result["event"]["PartId"] == "NODE-1"
    assert result["event"]["Verdict"] == result["verdict"] == "PASS" and result["partId"] == "NODE-1"
    assert "BadUserAccessDenied" in result["prepareRecipe"]
