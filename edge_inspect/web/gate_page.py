"""The gate report of a version for a QA engineer (``/setup/models/gate/{version}``): the verdict and
every rule that did not hold, the corrected cases, latency and memory, per-check plots and the
per-suite tables, candidate beside production with the deltas. Drawn on the server (gate_svg.py):
the page needs no script."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..modelstore import ModelStoreError
from . import gate_svg
from .context import BadRequest, web_context
from .models import station_store
from .setup import viewer

FIGURE_NAMES = {
    "f1": "F1 (object level)", "count_exact": "count exact", "accuracy": "yes/no accuracy",
    "false_call_rate": "false-call rate per part", "escape_rate": "escape rate per part",
    "good_part_reject_rate": "good parts rejected", "bad_part_pass_rate": "bad parts passed",
    "precision": "precision", "recall": "recall", "hits": "hits", "predictions": "points given",
    "objects": "objects", "parts": "parts", "answers": "answers", "good_parts": "good parts", "bad_parts": "bad parts",
}  # fmt: skip
COUNTS = {"hits", "predictions", "objects", "parts", "answers", "good_parts", "bad_parts"}


def _value(v: Any, figure: str) -> str:
    if v is None:
        return "–"
    return f"{v:.0f}" if figure in COUNTS else f"{v:.3f}"


def _delta(v: Any, figure: str) -> str:
    if v is None:
        return ""
    return f"{v:+.0f}" if figure in COUNTS else f"{v:+.3f}"


def table_rows(suite: dict[str, Any]) -> list[dict[str, str]]:
    """A suite's rows as the page shows them (judged figures first within each check)."""
    out = []
    for row in suite["rows"]:
        figure = row["figure"]
        tolerance = ""
        if "tolerance" in row:
            tolerance = f"{'−' if row['worse_when'] == 'drop' else '+'}{row['tolerance']:g}"
        out.append({
            "check": row["check"], "figure": FIGURE_NAMES.get(figure, figure),
            "production": _value(row["production"], figure), "candidate": _value(row["candidate"], figure),
            "delta": _delta(row["delta"], figure), "tolerance": tolerance,
            "result": {True: "ok", False: "worse", None: "not judged" if "tolerance" in row else ""}[row["ok"]],
            "cls": {True: "ok", False: "fail", None: ""}[row["ok"]],
        })  # fmt: skip
    return out


def view(report: dict[str, Any]) -> dict[str, Any]:
    """What the template needs: the report plus its plots and tables made readable."""
    latency = report.get("latency_ms") or {}
    memory = report.get("memory_mb") or {}
    return {
        "report": report,
        "suites": [
            {**s, "table": table_rows(s), "failed": sum(r["ok"] is False for r in s["rows"])}
            for s in report.get("suites", [])
        ],  # fmt: skip
        "check_plots": gate_svg.check_plots(report),
        "latency_plot": gate_svg.latency_ecdf(
            report.get("latency_samples_ms") or {}, {who: v["p95"] for who, v in latency.items()}
        ),
        "memory_plot": gate_svg.bars(
            "Memory of the model (MB over the process before loading it)",
            {who: memory.get(who, {}).get("model_mb") for who in ("production", "candidate")},
            "MB",
        ),  # fmt: skip
    }


async def gate_page(request: Request) -> Response:
    await viewer(request)
    ctx = web_context(request)
    name = request.path_params["version"]
    try:
        version = await ctx.run(station_store(ctx).find, name)
    except (ModelStoreError, BadRequest) as err:  # a page, as the browser asked for one: the setup layout, 404, why
        why = err.web if isinstance(err, ModelStoreError) else str(err)
        response = ctx.page(request, "setup_gate.html", version=None, asked=name[:64], missing=why, report=None)
        response.status_code = 404
        return response
    report = version.info.get("gate")
    return ctx.page(
        request, "setup_gate.html", version=version, has_file=ctx.station.keeper is not None,
        **(view(report) if isinstance(report, dict) else {"report": None}),
    )  # fmt: skip


def routes() -> list[Route]:
    return [Route("/setup/models/gate/{version}", gate_page)]
