"""paho-mqtt clients as the station and the collector use them: TLS, username/password, last will."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ..errors import UserError


@dataclass(frozen=True)
class BrokerSettings:
    host: str
    port: int = 1883
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30

    @classmethod
    def from_url(cls, url: str, **kw) -> BrokerSettings:
        """``mqtt://[user@]host[:port]`` or ``mqtts://…`` (TLS, default port 8883)."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise UserError(f"--broker {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        try:
            port = parts.port
        except ValueError:
            raise UserError(f"--broker {url!r}: the port must be a number 1..65535") from None
        tls = parts.scheme == "mqtts" or bool(kw.get("ca") or kw.get("cert"))
        if parts.username and not kw.get("username"):
            kw["username"] = unquote(parts.username)
        if parts.password and not kw.get("password"):
            kw["password"] = unquote(parts.password)
        return cls(host=parts.hostname, port=port or (8883 if tls else 1883), tls=tls, **kw)

    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def make_client(
    settings: BrokerSettings,
    client_id: str,
    clean_session: bool = True,
    will: tuple[str, str] | None = None,
    manual_ack: bool = False,
) -> paho.Client:
    """A client not yet connected (MQTT 3.1.1). ``will``: (topic, payload), retained, QoS 1."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=paho.MQTTv311,
        manual_ack=manual_ack,
    )
    if settings.tls:
        client.tls_set(
            ca_certs=settings.ca,
            certfile=settings.cert,
            keyfile=settings.key,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    client.connect_timeout = 5.0
    return client
