"""The templates a web renders with: its own folders first, then what both webs share, the page
layout that each web's base.html extends (templates/layout.html)."""

from __future__ import annotations

from pathlib import Path

from starlette.templating import Jinja2Templates

SHARED = Path(__file__).parent / "templates"


def page_templates(*folders: Path) -> Jinja2Templates:
    """Templates looked up in ``folders`` in order (the first that has a name wins), then the shared ones."""
    return Jinja2Templates(directory=[str(folder) for folder in (*folders, SHARED)])
