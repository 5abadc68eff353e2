"""OPC UA security: the server certificate, users mapped to the station's roles, and which roles
may call which methods.

Every call here runs on the OPC UA server's own thread and loop (edge_inspect/opcua/server.py):
a password check (scrypt, about 50 ms) never stalls the loop that serves the PLC.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from asyncua import ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import SimpleRoleRuleset, User, UserRole
from asyncua.ua.ua_binary import struct_from_binary
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..config import WebUser
from ..http.auth import PERMISSIONS, LoginLimiter, check_login

log = logging.getLogger(__name__)

# Station roles allowed to call each method (by the method's browse name).
_TRIGGER = frozenset(PERMISSIONS["trigger"])  # operator, integrator
_READ = frozenset({"operator", "qa", "integrator"})
_INTEGRATOR = frozenset({"integrator"})
METHOD_ROLES: dict[str, frozenset[str]] = {
    "Halt": _TRIGGER, "Reset": _TRIGGER, "SelectModeAutomatic": _TRIGGER,
    "StartSingleJob": _TRIGGER, "StartContinuous": _TRIGGER, "Stop": _TRIGGER, "Abort": _TRIGGER,
    "PrepareRecipe": _INTEGRATOR, "UnprepareRecipe": _INTEGRATOR, "ActivateConfiguration": _INTEGRATOR,
    "GetRecipeListFiltered": _READ, "GetRecipeList": _READ,
    "GetResultById": _READ, "GetResultComponentsById": _READ, "GetResultListFiltered": _READ,
    "GetConfigurationById": _READ, "GetConfigurationList": _READ,
}  # fmt: skip

_CALL = ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary)


class StationUsers:
    """asyncua user manager: user names and scrypt hashes from station.yaml; a station role per user.

    At most 5 failed logins per user name a minute (then that name is refused for the rest of the
    minute, the right password included), as for the web login."""

    def __init__(self, users: list[WebUser], anonymous: bool):
        self.users = {u.name: u for u in users}
        self.anonymous = anonymous
        self.limiter = LoginLimiter()

    def role(self, user: User | None) -> str | None:
        """The station role of a session's user; None for anonymous sessions."""
        found = self.users.get(user.name) if user is not None and user.name else None
        return found.role if found is not None else None

    def get_user(
        self, iserver, username: str | None = None, password: str | None = None, certificate=None
    ) -> User | None:
        if username is None:  # anonymous token (refused earlier unless enabled; checked here again)
            return User(role=UserRole.User, name=None) if self.anonymous else None
        wait, token = self.limiter.reserve(username)  # counted as failed until the check succeeds
        if wait:
            log.warning("OPC UA login refused for %r: too many failed attempts", username)
            return None
        stored = self.users.get(username)
        if not check_login(password or "", stored.password_hash if stored else None):
            log.warning("OPC UA login failed for %r", username)
            return None
        self.limiter.succeeded(username, None, token)
        return User(role=UserRole.User, name=username)


class RolePermissions(SimpleRoleRuleset):
    """asyncua's user ruleset (no address-space changes by clients) plus the station's roles for
    method calls: a Call request naming a method the session's role may not call is refused
    with BadUserAccessDenied."""

    def __init__(self, users: StationUsers):
        super().__init__()
        self.users = users
        self.method_roles: dict[ua.NodeId, frozenset[str]] = {}  # filled in when the methods exist

    def check_validity(self, user, action_type_id, body) -> bool:
        if not super().check_validity(user, action_type_id, body):
            return False
        if action_type_id != _CALL or body is None:
            return True
        params = struct_from_binary(ua.CallParameters, body.copy())  # the request is decoded again after this
        role = self.users.role(user)
        for call in params.MethodsToCall:
            allowed = self.method_roles.get(call.MethodId)
            if allowed is not None and role not in allowed:
                log.warning(
                    "OPC UA call refused: %s (role %s) may not call %s",
                    getattr(user, "name", None),
                    role,
                    call.MethodId.to_string(),
                )
                return False
        return True


async def ensure_certificate(folder: Path, app_uri: str) -> tuple[Path, Path]:
    """The server certificate (DER) and key (PEM) in ``folder``, generated on first start (RSA
    2048, one year; renewed when expired or made for another application URI or host)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    cert, key = folder / "server_cert.der", folder / "server_key.pem"
    host = socket.gethostname()
    await setup_self_signed_certificate(
        key,
        cert,
        app_uri,
        host,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": f"edge-inspect@{host}", "organizationName": "edge-inspect"},
    )
    os.chmod(key, 0o600)
    return cert, key
