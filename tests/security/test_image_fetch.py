"""Image fetches go only to the origin pinned for the station in the collector's config: never a
``file://`` URL, another station's origin or a redirect off it; a token only to its own station; no
wildcard; size limited; a body cut short is retried, never stored."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edge_inspect.errors import UserError
from edge_inspect.fleet.mqtt import BrokerSettings
from edge_inspect.plant.collector import Collector, _Batch, load_tokens
from edge_inspect.plant.images import FetchError, fetch

JPEG = b"\xff\xd8" + b"x" * 1000 + b"\xff\xd9"


class _Server:
    def __init__(self, routes: dict[str, tuple[int, dict, bytes]]):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, self.headers.get("Authorization")))
                status, headers, body = routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    other = _Server({"/steal": (200, {}, JPEG)})
    station = _Server(
        {
            "/api/inspections/1/image": (200, {}, JPEG),
            "/api/inspections/2/image": (302, {"Location": other.url + "/steal"}, b""),
            "/api/inspections/3/image": (200, {}, b"x" * 5000),
            "/api/inspections/4/image": (200, {"Content-Length": "5000"}, b"x" * 10),
        }
    )
    yield station, other
    station.close()
    other.close()


def test_only_the_pinned_origin_is_fetched_and_sent_the_token(servers, tmp_path):
    station, other = servers
    assert fetch(station.url + "/api/inspections/1/image", "tok", station.url) == JPEG
    for url in (
        "file:///etc/passwd",
        other.url + "/steal",
        "ftp://127.0.0.1/x",
        "http://user:pw@127.0.0.1/x",
        station.url.replace("127.0.0.1", "localhost") + "/api/inspections/1/image",
    ):
        with pytest.raises(FetchError, match="pinned origin") as err:
            fetch(url, "tok", station.url)
        assert err.value.permanent
    with pytest.raises(FetchError, match="redirect"):
        fetch(station.url + "/api/inspections/2/image", "tok", station.url)
    assert other.seen == []  # the redirect was not followed: the other host got no request and no token
    with pytest.raises(FetchError, match="larger than"):
        fetch(station.url + "/api/inspections/3/image", "tok", station.url, max_bytes=1000)
    with pytest.raises(FetchError, match="ended after 10 of 5000") as short:
        fetch(station.url + "/api/inspections/4/image", "tok", station.url)
    assert not short.value.permanent  # retried later
    assert {auth for _, auth in station.seen} == {"Bearer tok"}


def test_urls_in_a_message_are_never_fetched(servers):
    station, _ = servers
    collector = Collector(
        BrokerSettings("127.0.0.1"),
        "postgresql://unused",
        images=object(),
        tokens={"plant/l1/st1": load_tokens_entry(station.url)},
    )
    b = _Batch()
    message = {
        "id": "x",
        "inspection_id": 7,
        "ts_unix": 1.7e9,
        "verdict": "FAIL",
        "image": {
            "path": "images/a.jpg",
            "overlay_path": "images/a_overlay.jpg",
            "url": "file:///etc/passwd",
            "overlay_url": "http://evil.example/x",
        },
    }
    collector._inspection(b, "plant/l1/st1", message)
    collector._inspection(b, "plant/l1/unknown", {**message, "inspection_id": 8})
    (pinned, unknown) = b.inspections
    assert pinned[19:21] == (f"{station.url}/api/inspections/7/image", f"{station.url}/api/inspections/7/overlay")
    assert unknown[19:22] == (None, None, "none")  # no pinned origin: nothing fetched, no token sent


def load_tokens_entry(url):
    from edge_inspect.plant.collector import StationAccess

    return StationAccess(url, "tok")


@pytest.mark.parametrize(
    "text, message",
    [
        ('"*": {url: "http://127.0.0.1:8080", token: t}', "name one station"),
        ("plant/l1/st1: just-a-token", r"expected \{url"),
        ('plant/l1/st1: {url: "file:///etc", token: t}', "is not http"),
        ('plant/l1/st1: {url: "http://127.0.0.1:8080/api", token: t}', "no path"),
        ('plant/l1/st1: {url: "http://127.0.0.1:8080", token: 5}', "token: expected a string"),
    ],
)
def test_the_tokens_file_pins_one_origin_per_station(tmp_path, text, message):
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_tokens(path)


def test_a_valid_tokens_file(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text('plant/l1/st1: {url: "https://10.0.0.5:8443/", token: abc}\n')
    access = load_tokens(path)["plant/l1/st1"]
    assert (access.url, access.token) == ("https://10.0.0.5:8443", "abc")
