"""What the plant web's endpoints share: ``PlantContext`` (stored on the app as ``state.ctx``, read
with ``plant_context``), the templates it renders with, and ``Unauthorized``, which an endpoint
raises when nobody (or too many failed logins) asks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from ..http.accounts import Accounts, LoginRefused, client_address
from ..http.auth import User
from ..http.i18n import LABELS, pick_language
from ..http.layout import page_templates
from ..http.timefmt import display, zone_label, zone_name
from .images import ImageStore
from .queries import Pool

HERE = Path(__file__).parent
WEB = HERE.parent / "web"


class Unauthorized(Exception):
    def __init__(self, status: int = 401, retry_after: int = 0):
        super().__init__(status)
        self.status, self.retry_after = status, retry_after


@dataclass
class PlantContext:
    """What the plant web's endpoints share, stored on the app as ``state.ctx`` (plant_context): the
    database, who may log in, the templates, the image store and the page's time zone."""

    pool: Pool
    accounts: Accounts
    templates: Jinja2Templates
    tz: tzinfo
    open_view: bool = False
    images: ImageStore | None = None
    title: str = "fleet"

    def user_of(self, request: Request) -> User | None:
        session = self.accounts.session(request.session.get("sid"))
        return session.user if session is not None else None

    async def require_view(self, request: Request) -> User | None:
        """A session, or HTTP Basic (scripts: curl -u) under the same login limits as the form."""
        user = self.user_of(request)
        if user is None and not self.open_view:
            try:
                user = await self.accounts.basic_user(request.headers.get("authorization", ""), client_address(request))
            except LoginRefused as err:
                raise Unauthorized(429, err.retry_after) from None
            if user is None:
                raise Unauthorized()
        return user

    def render(self, request: Request, name: str, **context) -> Response:
        lang = pick_language(
            None, request.headers.get("accept-language"), request.query_params.get("lang"), request.cookies.get("lang")
        )
        session = self.accounts.session(request.session.get("sid"))
        return self.templates.TemplateResponse(
            request,
            name,
            {
                "t": LABELS[lang],
                "lang": lang,
                "user": session.user if session else None,
                "tr": lambda s: s,
                "csrf": session.csrf if session else "",
                "station": self.title,
                **context,
            },
        )


def plant_context(request: Request) -> PlantContext:
    """The plant web's shared state, which build_app stores on the app."""
    return cast(PlantContext, request.app.state.ctx)


def templates_for(tz: tzinfo) -> Jinja2Templates:
    """The plant's templates, then the station web's (its login page), then the shared layout, in the page's zone."""
    templates = page_templates(HERE / "templates", WEB / "templates")
    templates.env.filters["localtime"] = lambda value: display(value.timestamp(), tz) if value else ""
    templates.env.globals.update(zone_label=zone_label(tz), zone_name=zone_name(tz))
    return templates
