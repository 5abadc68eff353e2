"""The model store on the web (docs/model-lifecycle.md): the versions, the aliases and the follower's
state for an integrator, promote / rollback — the same store changes as ``edge-inspect model``,
which the running station then follows (station/model_follower.py) — the gate of a version against
production, run in a low-priority process of its own (gate_runs.py; its report: gate_page.py), and the
shadow's runs, started and stopped as ``edge-inspect model shadow`` does (station/shadow.py)."""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..logbook import shadow as shadow_log
from ..modelstore import ALIASES, GateRequired, ModelStore, ModelStoreError, Version, request_start, request_stop
from .api import json_object
from .bodies import Body, parse
from .context import BadRequest, WebContext, web_context
from .gate_runs import GateBusy
from .setup import viewer


class PromoteBody(Body):
    version: str = Field(min_length=1, max_length=64)
    to: str = Field(default="production", max_length=20)
    force: bool = False  # production without a passing gate: the person confirmed it; the history says so


class GateBody(Body):
    version: str = Field(min_length=1, max_length=64)


class ShadowBody(Body):
    """What the body leaves out is the station's ``model.shadow`` (version, parts, hours)."""

    version: str | None = Field(default=None, min_length=1, max_length=64)
    parts: int | None = Field(default=None, ge=0, le=10_000_000)
    hours: float | None = Field(default=None, ge=0.0, le=24 * 365)


def station_store(ctx: WebContext) -> ModelStore:
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
        "gate": _gate_summary(v.info.get("gate")),
    }


def _gate_summary(gate: object) -> dict | None:
    if not isinstance(gate, dict):
        return None
    return {k: gate.get(k) for k in ("passed", "against", "at", "by", "seconds")} | {
        "problems": len(gate.get("problems") or [])
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
    store = station_store(ctx)
    listing = await ctx.run(_listing, store)
    follow = ctx.station.models.status()["model_follow"] if ctx.station.models is not None else None
    running = ctx.station.model_sha256
    in_store = any(v["id"] == running for v in listing["versions"])  # removed while it runs: the page says so
    return JSONResponse({"running": running, "running_in_store": in_store, "follow": follow, **listing})


async def promote(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "setup")
    body = parse(PromoteBody, await json_object(request))
    store = station_store(ctx)
    try:
        version, previous = await ctx.run(
            lambda: store.promote(body.version, user.name, to=body.to, require_gate=True, force=body.force)
        )
    except GateRequired as err:
        return JSONResponse({"error": err.web, "gate_required": True}, 409)
    except ModelStoreError as err:
        return JSONResponse({"error": err.web}, 409 if "not an alias" not in str(err) else 400)
    unchanged = previous == version.id  # already that alias: nothing changed, nothing recorded
    return JSONResponse(
        {"alias": body.to, "version": version.id, "previous": previous, "forced": body.force and not unchanged}
        | ({"unchanged": True} if unchanged else {})
    )


async def gate_status(request: Request) -> Response:
    await viewer(request)
    ctx = web_context(request)
    store = station_store(ctx)
    return JSONResponse({"run": await ctx.run(ctx.gates.status, store.folder)})


async def gate_start(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "setup")
    body = parse(GateBody, await json_object(request))
    store = station_store(ctx)
    if ctx.station.keeper is None:
        raise BadRequest("this station was started without a config file: run edge-inspect model gate on the appliance")
    try:
        version = await ctx.run(store.find, body.version)
        await ctx.run(store.find, "production")
        await ctx.run(ctx.gates.start, store.folder, ctx.station.keeper.path, version.id, user.name)
    except GateBusy as err:
        return JSONResponse({"error": str(err)}, 409)
    except ModelStoreError as err:
        return JSONResponse({"error": err.web}, 409)
    return JSONResponse({"started": version.id}, 202)


async def rollback(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "setup")
    await json_object(request)  # a JSON body ({}), as every change: no form post from another site
    store = station_store(ctx)
    try:
        version, replaced = await ctx.run(store.rollback, user.name)
    except ModelStoreError as err:
        return JSONResponse({"error": err.web}, 409)
    return JSONResponse({"alias": "production", "version": version.id, "previous": replaced})


def _shadow(ctx: WebContext):
    if ctx.station.shadow is None:
        raise BadRequest("this station has no shadow")
    return ctx.station.shadow


def _shadow_report(store) -> dict:
    latest = shadow_log.latest_run(store)
    return {"run": shadow_log.summary(store, latest["id"]) if latest is not None else None}


async def shadow_status(request: Request) -> Response:
    """The shadow's state now, and the newest run from the log: agreement per check, disagreements, cost."""
    await viewer(request)
    ctx = web_context(request)
    shadow = _shadow(ctx)
    report = await ctx.query(_shadow_report)
    return JSONResponse({"now": shadow.status()["shadow"], **report})


async def shadow_start(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "setup")
    body = parse(ShadowBody, await json_object(request))
    shadow = _shadow(ctx)
    s = ctx.config.model.shadow
    version = body.version if body.version is not None else s.version
    parts = body.parts if body.parts is not None else s.parts
    hours = body.hours if body.hours is not None else s.hours
    try:
        asked = await ctx.run(lambda: request_start(shadow.models, version, user.name, parts, hours))
    except ModelStoreError as err:
        return JSONResponse({"error": err.web}, 409)
    await shadow.check()  # at once, not at the next check: the answer says whether it runs
    return JSONResponse({"request": asked, "now": shadow.status()["shadow"]})


async def shadow_stop(request: Request) -> Response:
    ctx = web_context(request)
    user = await ctx.require(request, "setup")
    await json_object(request)
    shadow = _shadow(ctx)
    if shadow.run is None and shadow.state != "starting":  # nothing to stop: nothing recorded
        return JSONResponse({"request": None, "now": shadow.status()["shadow"], "nothing": "no shadow run is going"})
    asked = await ctx.run(lambda: request_stop(shadow.models, user.name))
    await shadow.check()
    return JSONResponse({"request": asked, "now": shadow.status()["shadow"]})


def routes() -> list[Route]:
    return [
        Route("/api/models", models),
        Route("/api/models/promote", promote, methods=["POST"]),
        Route("/api/models/rollback", rollback, methods=["POST"]),
        Route("/api/models/shadow", shadow_status),
        Route("/api/models/shadow/start", shadow_start, methods=["POST"]),
        Route("/api/models/shadow/stop", shadow_stop, methods=["POST"]),
        Route("/api/models/gate", gate_status),
        Route("/api/models/gate", gate_start, methods=["POST"]),
    ]
