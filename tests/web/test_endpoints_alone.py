"""Station web endpoints one at a time: each on a Starlette app of its own route, with the station
web's exception handlers and a small stand-in for the WebContext on ``app.state.ctx`` — no station,
no model, no log."""

from types import SimpleNamespace

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from edge_inspect.config import ConfigError
from edge_inspect.station.config_keeper import ConflictError, SaveError
from edge_inspect.web import api, pages, setup
from edge_inspect.web.app import exception_handlers
from edge_inspect.web.context import Unauthorized


class FakeContext:
    """The parts of WebContext these endpoints use: who asks, and a station."""

    def __init__(self, station=None, user=None, refuse: Unauthorized | None = None):
        self.station = station or SimpleNamespace()
        self._user, self.refuse = user, refuse

    def session(self, request):
        return None

    async def user(self, request):
        return self._user

    def basic_csrf(self, name):
        return f"token-of-{name}"

    async def require_view(self, request):
        if self.refuse:
            raise self.refuse
        return self._user

    async def require(self, request, action, form=None):
        if self.refuse:
            raise self.refuse
        return self._user


def client(path: str, endpoint, ctx, methods=None) -> TestClient:
    app = Starlette(routes=[Route(path, endpoint, methods=methods)], exception_handlers=exception_handlers())
    app.state.ctx = ctx
    return TestClient(app, raise_server_exceptions=False)


def test_session_names_the_user_and_their_csrf_token():
    alice = SimpleNamespace(name="alice", role="qa")
    assert client("/api/session", api.api_session, FakeContext(user=alice)).get("/api/session").json() == {
        "user": "alice",
        "role": "qa",
        "csrf": "token-of-alice",
    }
    nobody = client("/api/session", api.api_session, FakeContext()).get("/api/session").json()
    assert nobody == {"user": None, "role": None, "csrf": None}


def test_live_overlay_before_and_after_the_first_frame():
    station = SimpleNamespace(last_overlay_jpeg=None)
    c = client("/api/live/overlay.jpg", api.api_live_overlay, FakeContext(station))
    first = c.get("/api/live/overlay.jpg")
    assert first.status_code == 404 and first.json() == {"error": "no frame yet"}
    station.last_overlay_jpeg = b"\xff\xd8jpeg"
    second = c.get("/api/live/overlay.jpg")
    assert second.status_code == 200 and second.content == b"\xff\xd8jpeg"
    assert second.headers["content-type"] == "image/jpeg" and second.headers["cache-control"] == "no-store"


def test_a_refused_view_goes_through_the_exception_handlers():
    ctx = FakeContext(refuse=Unauthorized(401, "log in to view"))
    page = client("/", pages.hmi, ctx).get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
    ctx.refuse = Unauthorized(429, "too many attempts", retry_after=30)
    answer = client("/api/status", api.api_status, ctx).get("/api/status")
    assert answer.status_code == 429 and answer.headers["retry-after"] == "30"
    assert answer.json() == {"error": "too many attempts"}


def test_the_keepers_refusals_of_a_rollback_are_one_exception_and_one_handler():
    def rollback_client(error: Exception) -> TestClient:
        async def rollback(version_id, author):
            raise error

        station = SimpleNamespace(keeper=SimpleNamespace(rollback=rollback))
        ctx = FakeContext(station, user=SimpleNamespace(name="ian", role="integrator"))
        return client("/api/setup/versions/{id:int}/rollback", setup.rollback, ctx, methods=["POST"])

    def post(error: Exception):
        return rollback_client(error).post("/api/setup/versions/3/rollback")

    gone = post(LookupError("no config version 3"))
    assert gone.status_code == 404 and gone.json() == {"error": "no config version 3"}
    invalid = post(ConfigError(["station.yaml:4: recipes.0.checks: bundle not found"]))
    assert invalid.status_code == 422
    assert invalid.json() == {
        "error": "that version no longer validates; nothing was changed",
        "problems": ["station.yaml:4: recipes.0.checks: bundle not found"],
    }
    conflict = post(ConflictError("the file changed on disk"))
    assert conflict.status_code == 409 and conflict.json() == {"error": "the file changed on disk"}
    unwritable = post(SaveError("station.yaml: permission denied"))
    assert unwritable.status_code == 500 and unwritable.json() == {"error": "station.yaml: permission denied"}


def test_setup_refuses_a_station_without_a_config_file():
    ctx = FakeContext(SimpleNamespace(keeper=None), user=SimpleNamespace(name="ian", role="integrator"))
    answer = client("/api/setup/disk", setup.disk, ctx, methods=["POST"]).post(
        "/api/setup/disk", json={"action": "apply"}
    )
    assert answer.status_code == 400
    assert answer.json() == {"error": "this station was started without a config file; nothing to edit"}


def test_metrics_count_the_cycles_the_context_observed():
    from edge_inspect.web import metrics
    from edge_inspect.web.feeds import CycleHistogram

    status = {"counters": {"PASS": 3, "FAIL": 1}, "camera": "ok", "plc": "lost"}
    ctx = FakeContext(SimpleNamespace(status=lambda: status))
    ctx.cycles = CycleHistogram()
    for ms in (40, 120, 20000):
        ctx.cycles.observe(ms)
    text = client("/metrics", metrics.metrics, ctx).get("/metrics").text
    assert 'edge_inspect_inspections_total{verdict="PASS"} 3' in text
    assert 'edge_inspect_cycle_ms_bucket{le="50"} 1' in text and 'edge_inspect_cycle_ms_bucket{le="+Inf"} 3' in text
    assert "edge_inspect_camera_up 1" in text and "edge_inspect_plc_up 0" in text
