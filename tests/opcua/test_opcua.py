"""The OPC UA server (docs/opcua.md) with an asyncua client: the model, a job and its result
event, security (refused credentials and roles), busy refusal, and Modbus beside it."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
from asyncua import ua
from asyncua.ua.uaerrors import BadSecurityPolicyRejected, BadUserAccessDenied, UaStatusCodeError

from edge_inspect.opcua import OpcUaServer

from ..support.opcua_harness import node, opcua_config, running, session
from ..support.plc_harness import FakeInspector, make_station
from ..support.wait import async_wait_until


class Results:
    """Subscription handler collecting ResultReadyEvents."""

    def __init__(self):
        self.events = []

    def event_notification(self, event):
        self.events.append(event.get_event_props_as_fields_dict())


async def _subscribe(client, events: Results):
    ns = await client.get_namespace_index("urn:edge-inspect:vision")
    system = client.get_node(ua.NodeId("VisionSystem", ns))
    etype = client.get_node(ua.NodeId("Types.VisionResultReadyEventType", ns))
    sub = await client.create_subscription(50, events)
    await sub.subscribe_events(system, etype)
    return sub


def _rows(station) -> list[dict]:
    con = sqlite3.connect(station.store.folder / "inspections.db")
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("select * from inspections order by id")]
    con.close()
    return rows


def test_job_result_event_and_model(tmp_path):
    path = opcua_config(tmp_path)

    async def scenario():
        async with running(path) as station, session(station.config.opcua.endpoint, "op", folder=tmp_path) as c:
            state = await (await node(c, "VisionSystem.VisionStateMachine.CurrentState")).read_value()
            assert state.Text == "Operational"
            events = Results()
            await _subscribe(c, events)
            job = await _start(c, "SN-0001", "")
            await async_wait_until(lambda: events.events, 20, "result event")
            ev = events.events[0]
            assert ev["JobId"].Value.Id == job and ev["PartId"].Value.Id == "SN-0001"
            assert ev["Verdict"].Value == "PASS" and ev["CheckNames"].Value == ["surface"]
            last = {
                name: await (await node(c, f"VisionSystem.ResultManagement.LastResult.{name}")).read_value()
                for name in ("ResultId", "JobId", "PartId", "Verdict", "DefectCount", "LogId", "CheckOutcomes")
            }
            assert last["JobId"] == job and last["Verdict"] == "PASS" and last["CheckOutcomes"] == ["pass"]
            rows = _rows(station)  # logged before published
            assert [r["id"] for r in rows] == [last["LogId"]] and rows[0]["part_id"] == "SN-0001"
            count = await (await node(c, "VisionSystem.Statistics.InspectionCount")).read_value()
            assert count == 1
        return station

    station = asyncio.run(scenario())
    folder = tmp_path / "data" / "opcua"  # generated on first start, the key readable by its owner only
    assert (folder / "server_cert.der").stat().st_size > 500
    assert (folder / "server_key.pem").stat().st_mode & 0o777 == 0o600
    assert station.attached(OpcUaServer).loop is None  # the server's thread ended with the station


def test_port_in_use_is_a_start_error(tmp_path):
    import socket

    from edge_inspect.plc.settings import StartError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        path = opcua_config(tmp_path, port=taken.getsockname()[1])

        async def scenario():
            with pytest.raises(StartError, match="OPC UA: cannot listen on 127.0.0.1"):
                async with running(path):
                    pass

        asyncio.run(scenario())


async def _call(client, path: str, *args):
    parent = await node(client, path.rsplit(".", 1)[0])
    method = await node(client, path)
    return await parent.call_method(method, *args)


START = "VisionSystem.VisionStateMachine.AutomaticModeStateMachine.StartSingleJob"
PREPARE = "VisionSystem.RecipeManagement.PrepareRecipe"
NULL = ua.Variant(None, ua.VariantType.ExtensionObject)  # a null structure (an optional Id left out)


def _start_args(part: str, recipe: str, meas: str = "") -> list:
    """StartSingleJob's arguments: MeasId, PartId, RecipeId (RecipeIdExternalDataType), ProductId, Parameters."""
    return [ua.MeasIdDataType(Id=meas), ua.PartIdDataType(Id=part), ua.RecipeIdExternalDataType(Id=recipe), NULL,
            ua.Variant([], ua.VariantType.Variant, is_array=True)]  # fmt: skip


async def _start(client, part: str, recipe: str, meas: str = "") -> str:
    job_id, error = await _call(client, START, *_start_args(part, recipe, meas))
    assert error == 0
    return job_id.Id


async def _prepare(client, recipe: str):
    return await _call(client, PREPARE, ua.RecipeIdExternalDataType(Id=recipe), NULL)


def test_refused_credentials_and_roles(tmp_path):
    path = opcua_config(tmp_path)

    async def scenario():
        async with running(path) as station:
            url = station.config.opcua.endpoint
            for user, password in (("op", "wrong"), ("nobody", "op-secret-1"), (None, None)):
                with pytest.raises(UaStatusCodeError):  # wrong password, unknown user, anonymous (off)
                    async with session(url, user, password, folder=tmp_path):
                        pass
            with pytest.raises(BadSecurityPolicyRejected):  # no session without security, before any token
                async with session(url, "op", folder=tmp_path, mode=ua.MessageSecurityMode.None_):
                    pass
            async with session(url, "qa", folder=tmp_path) as c:  # qa: reads, may not trigger
                assert (await (await node(c, "VisionSystem.RecipeManagement.ActiveRecipeId")).read_value()) == "1"
                with pytest.raises(BadUserAccessDenied):
                    await _start(c, "SN", "")
                with pytest.raises(BadUserAccessDenied):
                    await _prepare(c, "1")
            async with session(url, "op", folder=tmp_path) as c:  # operator: triggers, no recipe change
                with pytest.raises(BadUserAccessDenied):
                    await _prepare(c, "1")
                ids, names = await _call(c, "VisionSystem.RecipeManagement.GetRecipeList")
                assert ids == ["1"] and names == ["plate"]
            async with session(url, "int", folder=tmp_path) as c:  # integrator: recipes
                internal, completed, error = await _prepare(c, "1")
                assert (internal.Id, completed, error) == ("1", True, 0)
                with pytest.raises(UaStatusCodeError, match="BadInvalidArgument"):
                    await _prepare(c, "7")
            assert _rows(station) == []  # no refused call inspected anything

    asyncio.run(scenario())


def test_trigger_while_busy_is_refused_and_counted(tmp_path):
    path = opcua_config(tmp_path)

    async def scenario():
        async with (
            running(path, FakeInspector(delay_s=1.0)) as station,
            session(station.config.opcua.endpoint, "op", folder=tmp_path) as c,
        ):
            first = await _start(c, "SN-1", "1")
            with pytest.raises(UaStatusCodeError, match="BadInvalidState"):
                await _start(c, "SN-2", "1")
            refused = await node(c, "VisionSystem.Statistics.RefusedTriggers")
            assert await refused.read_value() == 1
            job = await node(c, "VisionSystem.ResultManagement.LastResult.JobId")
            await async_wait_until(lambda: job.read_value(), 20, "first job's result", poll_s=0.1)
            assert await job.read_value() == first
            assert [r["part_id"] for r in _rows(station)] == ["SN-1"]

    asyncio.run(scenario())


def test_modbus_and_opcua_together(tmp_path):
    """A PLC trigger and an OPC UA job are one inspection each; an OPC UA job during a PLC cycle is refused."""
    from edge_inspect.plc.simulated import SimulatedPLC

    path = opcua_config(tmp_path)

    async def scenario():
        async with (
            running(path, FakeInspector(delay_s=0.3)) as station,
            session(station.config.opcua.endpoint, "op", folder=tmp_path) as c,
        ):
            events = Results()
            await _subscribe(c, events)
            plc = SimulatedPLC(station.signal_map, port=station.config.plc.port)
            await plc.connect()
            try:
                cycle = asyncio.create_task(plc.cycle(41, 1, "PLC-41"))
                await async_wait_until(lambda: station.inspecting, 10, "PLC inspection running")
                with pytest.raises(UaStatusCodeError, match="BadInvalidState"):
                    await _start(c, "UA-1", "1")
                result = await cycle
                assert result.result_id == 41
                job = await _start(c, "UA-1", "1")
                await async_wait_until(lambda: len(events.events) >= 2, 20, "two result events")
            finally:
                plc.close()
            await asyncio.sleep(0.3)
            assert [(e["Trigger"].Value, e["PartId"].Value.Id, e["JobId"].Value.Id) for e in events.events] == [
                ("plc", "PLC-41", ""),
                ("opcua", "UA-1", job),
            ]
            assert [r["part_id"] for r in _rows(station)] == ["PLC-41", "UA-1"]
            assert station.counters["total"] == 2

    asyncio.run(scenario())


def test_config_errors_name_the_key(tmp_path):
    from edge_inspect.config import ConfigError, load_config

    from ..support.plc_harness import fake_station_config

    cases = [
        ({"endpoint": "opc.tcp://127.0.0.1:4840/x"}, ": opcua: no user could log in"),
        (
            {"endpoint": "http://127.0.0.1:4840/x", "anonymous": True},
            "opcua.endpoint: 'http://127.0.0.1:4840/x' is not",
        ),
        (
            {"endpoint": "opc.tcp://127.0.0.1:5020/x", "anonymous": True},
            "opcua.endpoint: port 5020 is both OPC UA's and the plc",
        ),
        ({"anonymous": True, "security": ["Basic128"]}, "opcua.security.0:"),
        ({"anonymous": True, "certificate": "cert.der"}, "opcua.certificate: certificate and private_key go together"),
        ({"anonymous": True, "trusted_clients": "nowhere"}, "opcua.trusted_clients: no such folder nowhere"),
    ]
    for section, expected in cases:
        path = fake_station_config(tmp_path, opcua=section, plc={"port": 5020})
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert expected in str(err.value), (section, str(err.value))
        assert str(err.value).startswith(f"{path}:")


class Alarms(Results):
    pass


def test_alarm_events_and_error_state(tmp_path):
    path = opcua_config(tmp_path)

    async def scenario():
        async with running(path) as station, session(station.config.opcua.endpoint, "qa", folder=tmp_path) as c:
            ns = await c.get_namespace_index("urn:edge-inspect:vision")
            alarms = Alarms()
            sub = await c.create_subscription(50, alarms)
            await sub.subscribe_events(
                c.get_node(ua.ObjectIds.Server), c.get_node(ua.NodeId("Types.VisionAlarmEventType", ns))
            )
            state = await node(c, "VisionSystem.VisionStateMachine.CurrentState")
            reason = await node(c, "VisionSystem.VisionStateMachine.ErrorReason")
            active = await node(c, "VisionSystem.ActiveAlarms")
            station.raise_alarm("camera_lost", "no frame for 1.5 s")
            mine = lambda: [e for e in alarms.events if e["AlarmCode"].Value == "camera_lost"]  # noqa: E731  (not plc_absent)
            await async_wait_until(mine, 10, "alarm event")
            assert (await state.read_value()).Text == "Error"
            assert await reason.read_value() == "camera_lost: no frame for 1.5 s"
            assert "camera_lost" in await active.read_value()
            station.acknowledge_alarm("camera_lost", "qa")
            station.clear_alarm("camera_lost")
            await async_wait_until(lambda: len(mine()) >= 3, 10, "three alarm events")
            assert [(e["AlarmCode"].Value, e["AlarmState"].Value, e["User"].Value) for e in mine()] == [
                ("camera_lost", "raised", ""),
                ("camera_lost", "acknowledged", "qa"),
                ("camera_lost", "cleared", ""),
            ]
            assert (await state.read_value()).Text == "Operational"
            assert "camera_lost" not in await active.read_value()

    asyncio.run(scenario())


async def _raw_call(client, path: str, *args: ua.Variant) -> ua.CallMethodResult:
    """Call without the client's own checks: the server's status and its per-argument results."""
    req = ua.CallMethodRequest()
    req.ObjectId = (await node(client, path.rsplit(".", 1)[0])).nodeid
    req.MethodId = (await node(client, path)).nodeid
    req.InputArguments = list(args)
    return (await client.uaclient.call([req]))[0]


def test_arguments_checked_by_type_and_presence(tmp_path):
    path = opcua_config(tmp_path)
    S, I32 = ua.VariantType.String, ua.VariantType.Int32
    codes = ua.StatusCodes

    async def scenario():
        async with running(path) as station, session(station.config.opcua.endpoint, "op", folder=tmp_path) as c:
            v = [ua.Variant(a) if not isinstance(a, ua.Variant) else a for a in _start_args("SN", "")]
            good, gg = codes.Good, [codes.Good] * 5
            at = lambda i, code: gg[:i] + [code] + gg[i + 1 :]  # noqa: E731
            cases = [  # (arguments, the call's status, each argument's result)
                ([v[0], ua.Variant(7, I32), *v[2:]], codes.BadInvalidArgument, at(1, codes.BadTypeMismatch)),  # Int32 PartId
                ([v[0], ua.Variant("SN", S), *v[2:]], codes.BadInvalidArgument, at(1, codes.BadTypeMismatch)),  # String
                ([v[0], v[1], ua.Variant(ua.PartIdDataType(Id="1")), *v[3:]], codes.BadInvalidArgument,
                 at(2, codes.BadTypeMismatch)),  # another structure
                ([*v[:4], ua.Variant("x", S)], codes.BadInvalidArgument, at(4, codes.BadTypeMismatch)),  # scalar for array
                (v[:4], codes.BadArgumentsMissing, None),
                ([], codes.BadArgumentsMissing, None),
                ([*v, ua.Variant("", S)], codes.BadTooManyArguments, None),
                ([v[0], ua.Variant(ua.PartIdDataType(Id="X" * 21)), *v[2:]], codes.BadInvalidArgument,
                 at(1, codes.BadOutOfRange)),
                ([*v[:2], ua.Variant(ua.RecipeIdExternalDataType(Id="9")), *v[3:]], codes.BadInvalidArgument,
                 at(2, codes.BadInvalidArgument)),  # no such recipe
            ]  # fmt: skip
            assert good == 0
            for args, status, per_argument in cases:
                res = await _raw_call(c, START, *args)
                assert res.StatusCode.value == status, (args, res.StatusCode)
                if per_argument is not None:
                    assert [r.value for r in res.InputArgumentResults] == per_argument, (args, res)
            assert _rows(station) == []  # nothing refused ran
            res = await _raw_call(c, START, *v)
            assert res.StatusCode.is_good() and res.OutputArguments[0].Value.Id

    asyncio.run(scenario())


class States:
    def __init__(self):
        self.seen: list[tuple[float, str]] = []

    def datachange_notification(self, node, value, data):
        self.seen.append((time.monotonic(), value.Text))


def test_stop_passes_through_halted_before_the_session_closes(tmp_path):
    path = opcua_config(tmp_path)

    async def scenario():
        station = make_station(path, None)
        await station.start()
        async with session(station.config.opcua.endpoint, "qa", folder=tmp_path) as c:
            states = States()
            sub = await c.create_subscription(100, states)
            await sub.subscribe_data_change(await node(c, "VisionSystem.VisionStateMachine.CurrentState"))
            await async_wait_until(lambda: states.seen and states.seen[-1][1] == "Operational", 10, "Operational")
            t0 = time.monotonic()
            await station.stop()  # what SIGTERM does (cli → daemon → station.stop)
            stopped = time.monotonic()
        return states.seen, t0, stopped

    seen, t0, stopped = asyncio.run(scenario())
    halted = [t for t, state in seen if state == "Halted"]
    assert halted, seen
    assert t0 <= halted[0] <= stopped, (seen, t0, stopped)  # seen before the server closed the session
    assert stopped - t0 < 1.5
    print(f"Halted seen {1000 * (halted[0] - t0):.0f} ms after stop, server closed at {1000 * (stopped - t0):.0f} ms")


def test_configuration_management_lists_the_kept_versions(tmp_path):
    """ConfigurationManagement offers every kept version of station.yaml (InternalId the sha256,
    ExternalId the version number); only the running one may be 'activated' — another version is the
    integrator's to roll back to on the setup page."""
    from edge_inspect.logbook import config_versions

    path = opcua_config(tmp_path)
    base = "VisionSystem.ConfigurationManagement."
    codes = ua.StatusCodes

    async def scenario():
        async with running(path) as station, session(station.config.opcua.endpoint, "int", folder=tmp_path) as c:
            old = config_versions.record(station.store, "station: {name: old}\n", "a" * 64, "int", "web")
            now = config_versions.record(station.store, path.read_text(), station.config_sha256, "int", "boot")
            complete, total, _, listed, *_ = await _call(
                c, base + "GetConfigurationList", ua.UInt32(10), ua.UInt32(0), ua.Int32(0)
            )
            one = await _call(c, base + "GetConfigurationById", ua.ConfigurationIdDataType(Id="a" * 64), ua.Int32(0))
            calls = {}
            for name, ident in (("running", station.config_sha256), ("old", "a" * 64), ("unknown", "b" * 64)):
                result = await _raw_call(
                    c, base + "ActivateConfiguration", ua.Variant(ua.ConfigurationIdDataType(Id=ident))
                )
                calls[name] = (result.StatusCode.value, [r.value for r in result.InputArgumentResults or []])
            return old, now, complete, total, listed, one, calls

    old, now, complete, total, listed, one, calls = asyncio.run(scenario())
    assert complete and total == 2
    ids = [(x.InternalId.Id, x.ExternalId.Id) for x in listed]
    assert ids[0][1] == str(now) and ids[1] == ("a" * 64, str(old))
    assert one[1].InternalId.Id == "a" * 64 and one[1].ExternalId.Id == str(old)
    assert calls["running"][0] == codes.Good
    assert calls["old"] == (codes.BadInvalidArgument, [codes.BadNotSupported])  # the argument's own result says why
    assert calls["unknown"] == (codes.BadInvalidArgument, [codes.BadNotFound])
