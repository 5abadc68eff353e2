"""The model store on the web (docs/model-lifecycle.md): the versions, the aliases and the follower's
state for an integrator, and promote / rollback — the same store changes as ``edge-inspect model``,
which the running station then follows (station/model_follower.py)."""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..modelstore import ALIASES, ModelStore, ModelStoreError, Version
from .api import json_object
from .bodies import Body, parse
from .context import BadRequest, WebContext, web_context
from .setup import viewer


class PromoteBody(Body):
    version: str = Field(min_length=1, max_length=64)
    to: str = Field(default="production", max_length=20)


def _store(ctx: WebContext) -> ModelStore:
    follower = ctx.station.models
    if follower is None:
        raise BadRequest("this station's model.bundle names no alias of the model store (production, candidate)")
    return follower.store


def _version(v: Version, aliases: dict[str, str]) -> dict:
    return {
        "id": v.id,
        "short": v.short,
        "aliases": sorted(a for a, target in aliases.items() if target == v.id),
        "added_at": v.info.get("added_at"),
        "added_by": v.info.get("added_by"),
        "parent": v.info.get("parent"),
        "bytes": v.size,
    }


def _listing(store: ModelStore) -> dict:
    state = store.state()
    aliases = {k: v for k, v in state["aliases"].items() if k in ALIASES}
    return {
        "aliases": aliases,
        "versions": [_version(v, aliases) for v in store.versions()],
        "history": state["history"][-50:],
    }


async def models(request: Request) -> Response:
    await viewer(request)
    ctx = web_context(request)
    store = _store(ctx)
    listing = await ctx.run(_listing, store)
    follow = ctx.station.models.status()["model_follow"] if ctx.station.models is not None else None
    return JSONResponse({"running": ctx.station.model_sha256, "follow": follow, **listing})


async def promote(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "setup")
    body = parse(PromoteBody, await json_object(request))
    store = _store(ctx)
    try:
        version, previous = await ctx.run(lambda: store.promote(body.version, user.name, to=body.to))
    except ModelStoreError as err:
        return JSONResponse({"error": str(err)}, 409 if "not an alias" not in str(err) else 400)
    return JSONResponse({"alias": body.to, "version": version.id, "previous": previous})


async def rollback(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "setup")
    await json_object(request)  # a JSON body ({}), as every change: no form post from another site
    store = _store(ctx)
    try:
        version, replaced = await ctx.run(store.rollback, user.name)
    except ModelStoreError as err:
        return JSONResponse({"error": str(err)}, 409)
    return JSONResponse({"alias": "production", "version": version.id, "previous": replaced})


def routes() -> list[Route]:
    return [
        Route("/api/models", models),
        Route("/api/models/promote", promote, methods=["POST"]),
        Route("/api/models/rollback", rollback, methods=["POST"]),
    ]
