"""OPC UA test helpers: a station (fast fake model, real camera, log, Modbus) with an OPC UA
section, users of each role, and an asyncua client session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from edge_inspect.http.auth import hash_password

from .paths import TESTS
from .plc_harness import FakeInspector, fake_station_config, make_station
from .stations import free_port

NAMESPACE = "urn:edge-inspect:vision"
PASSWORDS = {"op": "op-secret-1", "qa": "qa-secret-1", "int": "int-secret-1"}
ROLES = {"op": "operator", "qa": "qa", "int": "integrator"}
_HASHES: dict[str, str] = {}


def users() -> list[dict]:
    if not _HASHES:
        _HASHES.update({name: hash_password(pw) for name, pw in PASSWORDS.items()})
    return [{"name": n, "role": ROLES[n], "password_hash": _HASHES[n]} for n in PASSWORDS]


def opcua_config(tmp_path: Path, port: int | None = None, **opcua) -> Path:
    port = port or free_port()
    section = {"endpoint": f"opc.tcp://127.0.0.1:{port}/edge-inspect", "users": users(), **opcua}
    return fake_station_config(tmp_path, opcua=section)


def endpoint(station) -> str:
    return station.config.opcua.endpoint


@contextlib.asynccontextmanager
async def running(path: Path, inspector: FakeInspector | None = None):
    station = make_station(path, inspector)
    await station.start()
    try:
        yield station
    finally:
        await station.stop()


def client_certificate(folder: Path) -> tuple[Path, Path]:
    """A client certificate and key for the asyncua client (made once per folder)."""
    from asyncua.crypto.cert_gen import (
        dump_private_key_as_pem,
        generate_private_key,
        generate_self_signed_app_certificate,
    )
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "client_cert.der", folder / "client_key.pem"
    if not cert.exists():
        pk = generate_private_key()
        c = generate_self_signed_app_certificate(
            pk,
            "urn:edge-inspect:test-client",
            {"commonName": "test-client"},
            [x509.UniformResourceIdentifier("urn:edge-inspect:test-client")],
            extended=[ExtendedKeyUsageOID.CLIENT_AUTH],
            days=30,
        )
        cert.write_bytes(c.public_bytes(Encoding.DER))
        key.write_bytes(dump_private_key_as_pem(pk))
    return cert, key


@contextlib.asynccontextmanager
async def session(
    url: str,
    user: str | None,
    password: str | None = None,
    folder: Path | None = None,
    mode: ua.MessageSecurityMode = ua.MessageSecurityMode.SignAndEncrypt,
):
    client = Client(url, timeout=10)
    client.application_uri = "urn:edge-inspect:test-client"
    if user is not None:
        client.set_user(user)
        client.set_password(password if password is not None else PASSWORDS[user])
    if mode != ua.MessageSecurityMode.None_:
        cert, key = client_certificate(folder or Path(f"/tmp/edge-inspect-test-client-{os.getpid()}"))  # the run's own
        await client.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key), mode=mode)
    await client.connect()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)


async def node(client: Client, path: str):
    ns = await client.get_namespace_index(NAMESPACE)
    return client.get_node(ua.NodeId(path, ns))


# -- node-opcua (tests/node) ----------------------------------------------------------------------
NODE_DIR = TESTS / "node"
NODE_MISSING = (
    "node is not installed (Debian nodejs)"
    if shutil.which("node") is None
    else "node-opcua is not installed: run `npm ci` in tests/node (.ci/run does)"
    if not (NODE_DIR / "node_modules" / "node-opcua").is_dir()
    else ""
)


async def node_script(script: str, *args: str, timeout: float = 90) -> tuple[int, dict, str]:
    """Run tests/node/<script> with ``args``; its exit code, its last JSON line and its stderr."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=NODE_DIR,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, out.decode() + err.decode()
    return proc.returncode, json.loads(lines[-1]), err.decode()


class Recorder:
    """A TCP proxy in front of the server that keeps every byte either way (what a `socat -x` sees)."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.captured = bytearray()  # both ways
        self.from_server = bytearray()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def __aenter__(self) -> Recorder:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    self.captured += data
                    if down:
                        self.from_server += data
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True), return_exceptions=True)
