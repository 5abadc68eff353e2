"""Plant web endpoints one at a time: each on a Starlette app of its own route with the plant web's
exception handlers and a PlantContext on ``app.state.ctx`` whose database is never reached."""

from datetime import timezone

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Route
from starlette.testclient import TestClient

from edge_inspect.http.accounts import Accounts
from edge_inspect.plant import context, pages, queries
from edge_inspect.plant.api import image
from edge_inspect.plant.app import exception_handlers


class Images:
    def __init__(self, kept: dict[str, bytes]):
        self.kept = kept

    def get(self, sha: str) -> bytes | None:
        return self.kept.get(sha)


def client(path: str, endpoint, open_view=True, images=None) -> TestClient:
    app = Starlette(
        routes=[Route(path, endpoint)],
        exception_handlers=exception_handlers(),
        middleware=[Middleware(SessionMiddleware, secret_key="test")],
    )
    templates = context.templates_for(timezone.utc)
    accounts = Accounts(lambda: {})  # nobody may log in
    app.state.ctx = context.PlantContext(
        queries.Pool("postgresql://nowhere"), accounts, templates, timezone.utc, open_view, images
    )
    return TestClient(app)


def test_an_image_kept_and_one_not():
    c = client("/images/{sha}", image, images=Images({"ab12": b"\xff\xd8jpeg"}))
    kept = c.get("/images/ab12")
    assert kept.status_code == 200 and kept.content == b"\xff\xd8jpeg"
    assert kept.headers["cache-control"] == "private, max-age=31536000, immutable"
    gone = c.get("/images/cd34")
    assert gone.status_code == 404 and gone.json() == {"error": "not found"}
    assert client("/images/{sha}", image).get("/images/ab12").status_code == 404  # no image store


def test_an_inspection_id_that_is_no_uuid_is_not_looked_up():
    answer = client("/review/{msg_id}", pages.one).get("/review/not-a-uuid")
    assert answer.status_code == 404 and answer.text == "no such inspection"


def test_without_a_login_a_page_redirects_and_the_api_answers_401():
    page = client("/review/{msg_id}", pages.one, open_view=False).get("/review/x", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Freview%2Fx"
    api = client("/images/{sha}", image, open_view=False).get("/images/ab12")
    assert api.status_code == 401 and api.json() == {"error": "log in to view (session or HTTP Basic)"}


def test_the_login_page_renders_with_the_station_webs_template():
    page = client("/login", pages.login_page).get("/login?next=/review")
    assert page.status_code == 200 and 'name="next"' in page.text and "/review" in page.text
