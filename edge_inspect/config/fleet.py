"""The ``fleet:`` section: inspections, alarms and status to an MQTT broker (docs/fleet.md).

Secrets are never written in station.yaml: the broker password and the image token come from an
environment variable or a file (``password_env`` / ``password_file``, ``image_token_env`` /
``image_token_file``), read when the station starts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..errors import UserError
from .base import FieldError, Strict, check_host, resolve_files

_TOPIC_PART = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_TOPIC_PART_TEXT = "1–100 of A–Z a–z 0–9 _ . : - (no / + # or spaces: it is one MQTT topic level)"


def topic_part(value: str) -> str:
    if not _TOPIC_PART.match(value):
        raise ValueError(f"{value!r}: {_TOPIC_PART_TEXT}")
    return value


class FleetTLS(Strict):
    ca: str | None = Field(
        default=None,
        max_length=4096,
        description="PEM CA bundle that signed the broker's certificate; unset: the system's CAs",
    )
    cert: str | None = Field(default=None, max_length=4096, description="PEM client certificate (mutual TLS)")
    key: str | None = Field(default=None, max_length=4096, description="PEM private key of cert")

    @model_validator(mode="after")
    def _files(self, info: ValidationInfo):
        if bool(self.cert) != bool(self.key):
            raise FieldError("cert and key go together", ("cert",), ("key",))
        resolve_files(self, ("ca", "cert", "key"), info)
        return self


def _secret(env: str | None, file: str | None, what: str) -> str | None:
    if env:
        value = os.environ.get(env)
        if value is None:
            raise UserError(f"{what}: environment variable {env} is not set")
        return value
    if file:
        return Path(file).read_text().strip()
    return None


class FleetConfig(Strict):
    """Publishing to the plant's broker; the outbox in the log keeps what the broker has not taken."""

    enabled: bool = True
    host: str = Field(description="the MQTT broker's host name or address")
    port: int | None = Field(default=None, ge=1, le=65535, description="default 8883 with tls, else 1883")
    tls: FleetTLS | None = Field(default=None, description="TLS to the broker (ca, cert, key)")
    username: str | None = Field(default=None, min_length=1, max_length=200)
    password_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,100}$",
        description="environment variable holding the broker password",
    )
    password_file: str | None = Field(default=None, max_length=4096, description="file holding the broker password")
    client_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="default edge-inspect-<site>-<line>-<station>"
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    prefix: str = Field(default="edge-inspect", description="first topic level")
    site: str = Field(description="topic level: the plant")
    line: str = Field(description="topic level: the production line")
    image_base_url: str | None = Field(
        default=None,
        max_length=4096,
        description=(
            "how the collector reaches this station's web API, e.g. https://station-07.plant:8080; unset: "
            "inspections name their image path only and the collector fetches no images"
        ),
    )
    image_token_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,100}$",
        description="environment variable holding this station's image token",
    )
    image_token_file: str | None = Field(default=None, max_length=4096, description="file holding the image token")
    outbox_max_mb: float = Field(
        default=256.0,
        gt=0,
        le=1e6,
        description=(
            "disk budget of the outbox (messages not yet confirmed by the collector); beyond it the oldest "
            "are dropped with an alarm and an audit row (the log keeps the inspections)"
        ),
    )
    window: int = Field(
        default=500, ge=1, le=100_000, description="messages sent ahead of the collector's confirmation"
    )
    confirm_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=86400,
        description=(
            "no confirmation from the collector for this long: send again from the oldest unconfirmed message"
        ),
    )
    status_every_s: float = Field(
        default=10.0, gt=0, le=3600, description="retained status republished at least this often"
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("prefix", "site", "line")
    @classmethod
    def _topic(cls, value: str) -> str:
        return topic_part(value)

    @field_validator("image_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _secrets(self, info: ValidationInfo):
        for env, file in (("password_env", "password_file"), ("image_token_env", "image_token_file")):
            if getattr(self, env) and getattr(self, file):
                raise FieldError(f"{env} and {file} exclude each other; give one", (file,), (env,))
        if (self.password_env or self.password_file) and not self.username:
            raise FieldError("a password needs a username", ("username",), ("password_env",), ("password_file",))
        resolve_files(self, ("password_file", "image_token_file"), info)
        return self

    @property
    def broker_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    def password(self) -> str | None:
        return _secret(self.password_env, self.password_file, "fleet.password")

    def image_token(self) -> str | None:
        return _secret(self.image_token_env, self.image_token_file, "fleet.image_token")
