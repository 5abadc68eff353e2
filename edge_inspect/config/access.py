"""Who reaches the station and how: web (users, TLS, sessions), OPC UA, the station's identity."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .base import FieldError, Strict, base_dir, check_host, in_base

Role = Literal["operator", "qa", "integrator"]


class WebUser(Strict):
    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Role
    password_hash: str = Field(description="from `edge-inspect user hash-password`")

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        from ..http.auth import parse_hash

        parse_hash(value)  # ValueError names what is wrong; a placeholder is refused here
        return value


class WebConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    open_view: bool = Field(default=True, description="HMI and review readable without a login")
    secret_key: str | None = Field(
        default=None,
        min_length=16,
        max_length=1024,
        description="session signing key; default: kept in the data folder",
    )
    shift_starts: list[str] = Field(default_factory=lambda: ["06:00", "14:00", "22:00"], max_length=24)
    users: list[WebUser] = Field(default_factory=list, max_length=1000)
    tls_cert: str | None = Field(
        default=None, max_length=4096, description="PEM certificate: serve HTTPS (Secure cookies, HSTS)"
    )
    tls_key: str | None = Field(default=None, max_length=4096, description="PEM private key of tls_cert")
    session_idle_min: float = Field(default=30.0, gt=0, le=24 * 60, description="log out after this idle time")
    session_max_h: float = Field(default=12.0, gt=0, le=24 * 7, description="log out after this long in all")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="addresses (or networks) of reverse proxies whose X-Forwarded-For is believed; none by default",
    )
    max_upload_pixels: int | None = Field(
        default=None,
        ge=64 * 64,
        le=1_000_000_000,
        description="uploaded images larger than this are refused from their header; default 4 × the camera's",
    )

    @field_validator("users")
    @classmethod
    def _unique_users(cls, users: list[WebUser]) -> list[WebUser]:
        seen = set()
        for u in users:
            if u.name in seen:
                raise ValueError(f"user {u.name!r} is listed twice")
            seen.add(u.name)
        return users

    @model_validator(mode="after")
    def _tls_pair(self):
        if bool(self.tls_cert) != bool(self.tls_key):
            raise FieldError("tls_cert and tls_key go together", ("tls_cert",), ("tls_key",))
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():  # the web server opens them as given
                raise FieldError(f"no such file {path}", (name,))
        return self

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
        return values

    @field_validator("shift_starts")
    @classmethod
    def _times(cls, starts: list[str]) -> list[str]:
        for t in starts:
            hh, _, mm = t.partition(":")
            if not (hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
                raise ValueError(f"shift start {t!r} is not HH:MM")
        return starts


class OpcUaConfig(Strict):
    """The OPC UA server (docs/opcua.md): an address space after OPC 40100-1 (Machine Vision)."""

    enabled: bool = True
    endpoint: str = Field(
        default="opc.tcp://127.0.0.1:4840/edge-inspect",
        max_length=4096,
        description="opc.tcp://HOST:PORT/PATH; HOST is the address to listen on",
    )
    security: list[Literal["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign", "None"]] = Field(
        default_factory=lambda: ["Basic256Sha256_SignAndEncrypt"],  # type: ignore[arg-type]  # a Literal member
        min_length=1,
        max_length=3,
        description="endpoints offered; None sends everything in clear text (test benches only)",
    )
    certificate: str | None = Field(
        default=None,
        max_length=4096,
        description=("server certificate (DER or PEM); default: generated on first start into <storage.dir>/opcua/"),
    )
    private_key: str | None = Field(default=None, max_length=4096, description="PEM private key of certificate")
    trusted_clients: str | None = Field(
        default=None,
        max_length=4096,
        description=("folder of trusted client certificates (DER/PEM); unset: any client certificate, users log in"),
    )
    anonymous: bool = Field(default=False, description="anonymous sessions (browse, read, subscribe; no methods)")
    users: list[WebUser] | None = Field(default=None, max_length=1000, description="default: web.users")
    namespace: str = Field(default="urn:edge-inspect:vision", min_length=1, max_length=1024)

    def host_port(self) -> tuple[str, int]:
        from urllib.parse import urlsplit

        url = urlsplit(self.endpoint)
        return url.hostname or "", url.port or 4840

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        from urllib.parse import urlsplit

        try:
            url = urlsplit(value)
            port = url.port
        except ValueError as err:
            raise ValueError(f"{value!r} is not an opc.tcp:// URL ({err})") from None
        if url.scheme != "opc.tcp" or not url.hostname:
            raise ValueError(f"{value!r} is not an opc.tcp://HOST:PORT/PATH URL")
        if port == 0:
            raise ValueError("the port must be 1..65535")
        check_host(url.hostname)
        return value

    @field_validator("users")
    @classmethod
    def _unique_users(cls, users: list[WebUser] | None) -> list[WebUser] | None:
        return None if users is None else WebConfig._unique_users(users)

    @model_validator(mode="after")
    def _files(self, info: ValidationInfo):
        if bool(self.certificate) != bool(self.private_key):
            raise FieldError("certificate and private_key go together", ("certificate",), ("private_key",))
        base = base_dir(info)
        if base is not None:
            for name in ("certificate", "private_key", "trusted_clients"):
                value = getattr(self, name)
                if value and not in_base(value, base).exists():
                    raise FieldError(f"no such {'folder' if name == 'trusted_clients' else 'file'} {value}", (name,))
        return self


class StationInfo(Strict):
    name: str = Field(default="station", min_length=1, max_length=200)
    language: Literal["en", "ja"] | None = Field(
        default=None,
        description=(
            "pin the HMI language; unset: each browser's Accept-Language (a person's choice on the page wins)"
        ),
    )
    timezone: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "IANA zone for every time shown (pages, filters, charts, CSV), e.g. Asia/Tokyo; default the OS zone"
        ),
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str | None) -> str | None:
        if name:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)") from None
        return name
