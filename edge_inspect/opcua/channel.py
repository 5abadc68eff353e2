"""Secure channels: only the configured security policies and modes reach a session.

asyncua keeps a None channel open to every client (GetEndpoints and FindServers need one to
fetch the server certificate), and in 2.1 it also lets that channel create and activate a
session: a client that adds a None copy of an endpoint sends its user name and password in
clear. A policy asyncua does not know raises inside its reader and the client never gets an
answer. Here:

- a channel on a policy or mode that is not configured serves discovery only: CreateSession
  and ActivateSession answer BadSecurityPolicyRejected, before any user token is read;
- an OpenSecureChannel for an unknown or unconfigured policy (or mode) answers an ERR message
  (BadSecurityPolicyRejected, or BadSecurityModeRejected for a configured policy in another
  mode) at once, and the connection closes.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from asyncua import Server, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.security_policies import SecurityPolicyNone
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import struct_from_binary, uatcp_to_binary

log = logging.getLogger(__name__)

_SESSION_REQUESTS = {
    ua.NodeId(ua.ObjectIds.CreateSessionRequest_Encoding_DefaultBinary),
    ua.NodeId(ua.ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary),
}


class _Rejected(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status


class GuardedProcessor(UaProcessor):
    """One connection's processor: sessions on configured channels only, an answer to every open."""

    def set_policies(self, policies: list[Any]) -> None:
        super().set_policies(policies)
        self._configured = list(policies)

    def _channel_allowed(self) -> bool:
        policy = self._connection.security_policy
        return any(f.matches(policy.URI, policy.Mode) for f in self._configured)

    async def process(self, header, body) -> bool:
        opening = header.MessageType == ua.MessageType.SecureOpen and not self._connection.is_open()
        if opening:
            uri = struct_from_binary(ua.AsymmetricAlgorithmHeader, body.copy(header.body_size)).SecurityPolicyURI
            if uri != SecurityPolicyNone.URI and uri not in {f.cls.URI for f in self._configured}:
                return self._reject(ua.StatusCodes.BadSecurityPolicyRejected, f"security policy {uri!r} is not offered")
        try:
            return await super().process(header, body)
        except _Rejected as err:
            return self._reject(err.status, str(err))
        except Exception as err:  # an unreadable certificate or a forged open: an answer, no traceback
            if not opening:
                raise
            return self._reject(
                ua.StatusCodes.BadSecurityChecksFailed, f"cannot open the channel: {type(err).__name__}: {err}"[:200]
            )

    def open_secure_channel(self, algohdr, seqhdr, body) -> None:
        try:
            super().open_secure_channel(algohdr, seqhdr, body)
        except ua.UaError as err:  # asyncua: "No matching policy" (a configured policy in another mode)
            if "No matching policy" not in str(err):
                raise
            raise _Rejected(ua.StatusCodes.BadSecurityModeRejected, str(err)) from None

    async def _process_message(self, typeid, requesthdr, seqhdr, body):
        if typeid in _SESSION_REQUESTS and not self._channel_allowed():
            policy = self._connection.security_policy
            log.warning(
                "OPC UA: session refused on a %s/%s channel (not configured)",
                policy.URI.rsplit("#", 1)[-1],
                ua.MessageSecurityMode(policy.Mode).name,
            )
            raise ua.uaerrors.BadSecurityPolicyRejected()
        return await super()._process_message(typeid, requesthdr, seqhdr, body)

    def _reject(self, status: int, text: str) -> bool:
        log.warning("OPC UA: secure channel refused: %s", text)
        message = ua.ErrorMessage(ua.StatusCode(status), text)
        self._transport.write(uatcp_to_binary(ua.MessageType.Error, message))
        return False  # the connection closes


class _GuardedProtocol(OPCUAProtocol):
    processor: Any  # asyncua's UaProcessor, made by OPCUAProtocol.connection_made

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.processor is not None:  # None: refused (too many connections); the read loop has not run yet
            self.processor = GuardedProcessor(self.iserver, self.transport, self.limits)
            self.processor.set_policies(self.policies)


class _GuardedBinaryServer(BinaryServer):
    def _make_protocol(self) -> OPCUAProtocol:
        return _GuardedProtocol(
            iserver=self.iserver,
            policies=self._policies,
            clients=self.clients,
            closing_tasks=self.closing_tasks,
            limits=self.limits,
        )


class GuardedServer(Server):
    """asyncua's Server with the guarded channels (its start, with the guarded binary server)."""

    async def start(self) -> None:
        if self.iserver.certificate is not None:
            uacrypto.check_certificate(self.iserver.certificate, self._application_uri, socket.gethostname())
        await self._setup_server_nodes()
        await self.iserver.start()
        try:
            host, port = self._get_bind_socket_info()
            self.bserver = _GuardedBinaryServer(self.iserver, host, port, self.limits)
            self.bserver.set_policies(self._policies)
            await self.bserver.start()
        except Exception:
            await self.iserver.stop()
            raise
