"""Secure channels (docs/opcua.md, Security): only the configured policies and modes reach a
session. A raw peer and asyncua open channels on policies the server does not offer; node-opcua
forces None and unoffered policies through a recording proxy, and no password crosses in clear."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest
from asyncua import Client, ua
from asyncua.common.connection import MessageChunk
from asyncua.crypto.security_policies import SecurityPolicyNone
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary, uatcp_to_binary
from asyncua.ua.uaerrors import BadSecurityPolicyRejected

from ..support.opcua_harness import NODE_MISSING, PASSWORDS, Recorder, node_script, opcua_config, running, session


def _open_with_policy(port: int, uri: str) -> tuple[float, bytes, ua.ErrorMessage | None]:
    """A raw OPC UA TCP peer: Hello, then OpenSecureChannel on ``uri``; seconds to the answer, its
    message type and the ERR message if it is one."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        hello = ua.Hello()
        hello.EndpointUrl = f"opc.tcp://127.0.0.1:{port}/edge-inspect"
        hello.ReceiveBufferSize = hello.SendBufferSize = 65536
        sock.sendall(uatcp_to_binary(ua.MessageType.Hello, hello))
        assert sock.recv(8)[:3] == b"ACK"
        sock.recv(65536)
        policy = SecurityPolicyNone()
        policy.URI = uri
        request = ua.OpenSecureChannelRequest()
        request.Parameters.SecurityMode = ua.MessageSecurityMode.None_
        chunk = MessageChunk.message_to_chunks(
            policy, struct_to_binary(request), 65536, ua.MessageType.SecureOpen, channel_id=0
        )[0]
        chunk.SequenceHeader.SequenceNumber = 1
        t0 = time.monotonic()
        sock.sendall(chunk.to_binary())
        head = sock.recv(8)
        took = time.monotonic() - t0
        kind, _, size = struct.unpack("<3scI", head)
        body = b""
        while len(body) < size - 8:
            body += sock.recv(size - 8 - len(body))
        error = struct_from_binary(ua.ErrorMessage, ua.utils.Buffer(body)) if kind == b"ERR" else None
        return took, kind, error


def _open_with_garbage_certificate(port: int) -> tuple[float, bytes, ua.ErrorMessage | None]:
    """OpenSecureChannel on the offered policy with a sender certificate that is not one."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        hello = ua.Hello()
        hello.EndpointUrl = f"opc.tcp://127.0.0.1:{port}/edge-inspect"
        hello.ReceiveBufferSize = hello.SendBufferSize = 65536
        sock.sendall(uatcp_to_binary(ua.MessageType.Hello, hello))
        assert sock.recv(8)[:3] == b"ACK"
        sock.recv(65536)
        header = ua.AsymmetricAlgorithmHeader()
        header.SecurityPolicyURI = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
        header.SenderCertificate = b"\x30\x82garbage"
        header.ReceiverCertificateThumbPrint = b"x" * 20
        payload = struct.pack("<I", 0) + struct_to_binary(header) + struct.pack("<II", 1, 1) + b"\x00" * 256
        t0 = time.monotonic()
        sock.sendall(b"OPNF" + struct.pack("<I", 8 + len(payload)) + payload)
        sock.settimeout(5)
        head = sock.recv(8)
        took = time.monotonic() - t0
        kind, _, size = struct.unpack("<3scI", head)
        body = b""
        while len(body) < size - 8:
            body += sock.recv(size - 8 - len(body))
        error = struct_from_binary(ua.ErrorMessage, ua.utils.Buffer(body)) if kind == b"ERR" else None
        return took, kind, error


def test_an_unreadable_client_certificate_gets_an_answer_not_a_traceback(tmp_path, caplog):
    path = opcua_config(tmp_path)

    async def scenario():
        async with running(path) as station:
            port = int(station.config.opcua.endpoint.rsplit(":", 1)[1].split("/")[0])
            return await asyncio.to_thread(_open_with_garbage_certificate, port)

    took, kind, error = asyncio.run(scenario())
    assert kind == b"ERR" and error.Error.value == ua.StatusCodes.BadSecurityChecksFailed and took < 1.0
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


def test_unoffered_policies_are_refused_at_once(tmp_path):
    path = opcua_config(tmp_path)

    async def scenario():
        async with running(path) as station:
            url = station.config.opcua.endpoint
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            for uri in (
                "http://example.com/UA/SecurityPolicy#Rot13",  # unknown to any stack
                "http://opcfoundation.org/UA/SecurityPolicy#Basic256",  # known to asyncua, not offered
            ):
                took, kind, error = await asyncio.to_thread(_open_with_policy, port, uri)
                assert kind == b"ERR" and error.Error.value == ua.StatusCodes.BadSecurityPolicyRejected, (uri, kind)
                assert took < 1.0, (uri, took)

            client = Client(url, timeout=10)  # discovery still works on a None channel ...
            endpoints = await client.connect_and_get_server_endpoints()
            assert [(e.SecurityPolicyUri.rsplit("#", 1)[1], e.SecurityMode) for e in endpoints] == [
                ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt)
            ]
            t0 = time.monotonic()  # ... but no session opens on it: refused at CreateSession, before any token
            with pytest.raises(BadSecurityPolicyRejected):
                async with session(url, "op", folder=tmp_path, mode=ua.MessageSecurityMode.None_):
                    pass
            assert time.monotonic() - t0 < 2.0

    asyncio.run(scenario())


@pytest.mark.skipif(bool(NODE_MISSING), reason=NODE_MISSING or "-")
def test_node_opcua_forcing_policies_gets_no_session_and_no_clear_password(tmp_path):
    path = opcua_config(tmp_path)

    async def scenario():
        async with running(path) as station:
            host, port = station.config.opcua.host_port()
            results = []
            cert = tmp_path / "data" / "opcua" / "server_cert.der"
            async with Recorder((host, port)) as proxy:
                url = f"opc.tcp://127.0.0.1:{proxy.port}/edge-inspect"
                for policy, mode in (
                    ("None", "None"),
                    ("Basic256", "SignAndEncrypt"),
                    ("Aes128_Sha256_RsaOaep", "SignAndEncrypt"),
                    ("Basic256Sha256", "Sign"),
                    ("Basic256Sha256", "SignAndEncrypt"),  # the configured one: the session opens
                ):
                    _, result, err = await node_script(
                        "policy.mjs", url, "op", PASSWORDS["op"], policy, mode, str(tmp_path / "pki"), str(cert)
                    )
                    results.append(result)
            return results, bytes(proxy.captured), bytes(proxy.from_server)

    results, captured, from_server = asyncio.run(scenario())
    (none, basic256, aes128, sign_only, accepted) = results
    assert b"HEL" in captured and b"edge-inspect" in captured  # the proxy saw the clear parts of the traffic
    for pw in PASSWORDS.values():
        assert pw.encode() not in captured and pw.encode("utf-16-le") not in captured
    assert accepted.get("sessionOpened") is True, accepted
    for r in results[:-1]:
        assert not r.get("sessionOpened") and r["ms"] < 2000, r  # refused, and at once
    # None: the client added a None copy of the endpoint; the channel opens (discovery), the session does not
    assert none["stage"] == "session" and "BadSecurityPolicyRejected" in none["error"], none
    # the others: the OpenSecureChannel gets an ERR message (node-opcua reports only the disconnect)
    for r in (basic256, aes128, sign_only):
        assert r["stage"] == "connect", r
    errors = [
        struct.unpack("<I", from_server[i + 8 : i + 12])[0]
        for i in range(len(from_server))
        if from_server.startswith(b"ERRF", i)
    ]
    assert errors == [ua.StatusCodes.BadSecurityPolicyRejected] * 2 + [ua.StatusCodes.BadSecurityModeRejected], errors
