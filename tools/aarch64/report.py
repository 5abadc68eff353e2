"""The report of tools/aarch64/check.sh: every installed distribution with the file pip took for it
(aarch64 wheel, pure-Python wheel, or a source archive built on the spot), the step times and the
demo's output. Reads WORKDIR/pip-report.json (`pip install --report`) and the step outputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from urllib.parse import unquote, urlparse


def kind_of(filename: str) -> str:
    """What pip installed from: a wheel for aarch64, a pure-Python wheel, or a source build."""
    if not filename.endswith(".whl"):
        return "built from source"
    tags = filename[:-4].split("-")[-1]
    if "aarch64" in tags or "arm64" in tags:
        return "aarch64 wheel"
    if tags == "any":
        return "pure-Python wheel"
    return f"wheel ({tags})"


def packages(pip_report: dict) -> list[dict]:
    rows = []
    for item in pip_report.get("install", []):
        url = item.get("download_info", {}).get("url", "")
        filename = unquote(Path(urlparse(url).path).name)
        meta = item.get("metadata", {})
        rows.append(
            {"name": meta.get("name"), "version": meta.get("version"), "file": filename, "kind": kind_of(filename)}
        )
    return sorted(rows, key=lambda r: (r["name"] or "").lower())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--took", default="", help="step=seconds,... as check.sh measured them")
    parser.add_argument("--machine", default="")
    parser.add_argument("--python", default="")
    args = parser.parse_args()
    work: Path = args.workdir
    rows = packages(json.loads((work / "pip-report.json").read_text()))
    took = {k: int(v) for k, v in (p.split("=") for p in args.took.split(",") if p)}
    read = lambda name: (work / name).read_text().strip() if (work / name).is_file() else ""  # noqa: E731
    report = {
        "machine": args.machine,
        "python": args.python,
        "steps_s": took,
        "packages": rows,
        "source_builds": [r["name"] for r in rows if r["kind"] == "built from source"],
        "demo": read("demo.txt"),
        "validate": read("validate.txt"),
        "handshake": read("handshake.txt"),
    }
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# The appliance on {args.machine} ({args.python}, Debian bookworm arm64 under qemu-user)",
        "",
        "| step | seconds |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in took.items()),
        "",
        f"{len(rows)} distributions installed; built from source: {', '.join(report['source_builds']) or 'none'}.",
        "",
        "| distribution | version | kind | file |",
        "|---|---|---|---|",
        *(f"| {r['name']} | {r['version']} | {r['kind']} | {r['file']} |" for r in rows),
        "",
        "## edge-inspect demo --duration 20",
        "```",
        report["demo"],
        "```",
        "## edge-inspect config validate",
        "```",
        report["validate"],
        "```",
        "## Modbus handshake (mbpoll: result_id, verdict, defect_count, failed_checks, error_code)",
        "```",
        report["handshake"],
        "```",
    ]
    (work / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[: 8 + len(took)]))
    return 1 if report["source_builds"] or not report["handshake"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
