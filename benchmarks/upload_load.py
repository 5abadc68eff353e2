"""The PLC while the web takes the largest uploads it allows and a 200 MB body:
``python benchmarks/upload_load.py [--seconds 10] [--rounds 4] [--form binary|json] [--json out.json]``.

Starts the station as a separate process (``edge-inspect run``: the demo student, the synthetic
camera, the Modbus server and the web on free loopback ports; an integrator for the uploads), then a
PLC process reads 10 input registers every ``--period-ms`` and times each answer while it drives
handshakes back to back, in two kinds of phase of ``--seconds`` each, alternated ``--rounds`` times
(so a drift of the machine's load hits both kinds alike):

- ``inspecting``: the PLC alone;
- ``uploads``: the same, while 4 clients POST maximum-size *try* uploads (a ~19.7 MB PNG of noise,
  decoded by the station) back to back, one client sends 200 MB bodies with a Content-Length and
  one 200 MB bodies chunked, to the same endpoint. ``--form binary`` (the default, as the setup
  page sends it): the PNG itself is the body, the recipe in the query; ``--form json``: the PNG as
  base64 in JSON (~26 MB bodies). The clients are logged in with a session, as the page is
  (``--basic``: HTTP Basic, a password check on every request).

Prints a table and writes JSON. Targets (docs/security.md, "Measured: the PLC while uploads arrive"): Modbus read p99 ≤ 20 ms and the PLC
cycle time unchanged (p50 within 10 %) while the uploads arrive; every oversize body refused before
it is read.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import multiprocessing as mp
import os
import re
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from plc_latency import Master, _free_port  # noqa: E402
from web_load import _stats, rss_mb, start_station  # noqa: E402
from web_load import write_station as write_web_station  # noqa: E402

from edge_inspect.http.auth import hash_password  # noqa: E402

USER, PASSWORD = "integrator", "bench-integrator"
BIG_BODY = 200 * 1024 * 1024
BIG_EVERY_S = 3.0
RECIPE = {
    "number": 1,
    "name": "plate",
    "checks": [{"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes"}],
}


def write_station(folder: Path, plc_port: int, web_port: int, bundle: str) -> Path:
    import yaml

    path = write_web_station(folder, plc_port, web_port, bundle)
    config = yaml.safe_load(path.read_text())
    config["web"]["users"] = [{"name": USER, "role": "integrator", "password_hash": hash_password(PASSWORD)}]
    config["web"]["max_upload_pixels"] = 8_000_000  # the noise image (6.6 MP) is decoded, not refused
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _drive(port: int, stop: threading.Event, cycles: list) -> None:
    """Handshakes back to back on the default server map; (monotonic end, trigger→ack ms) per cycle."""
    import struct

    m, trigger_id = Master(port), 0
    while not stop.is_set():
        trigger_id = trigger_id % 65535 + 1
        m.wait(1, 1, stop)  # ready
        t0 = time.perf_counter()
        m.call(struct.pack(">BHHB", 16, 0, 2, 4) + struct.pack(">HH", trigger_id, 1))
        m.coil(0, True)
        m.wait(3, 1, stop)  # results_valid
        m.call(struct.pack(">BHH", 4, 0, 5))
        m.coil(0, False)
        m.coil(1, True)
        m.wait(3, 0, stop)
        m.coil(1, False)
        cycles.append((time.monotonic(), (time.perf_counter() - t0) * 1000))


def plc_process(port: int, period_s: float, drive, stop, queue) -> None:
    """Times a 10-register read every period until ``stop``; drives handshakes on a second connection."""
    m, probes, cycles = Master(port), [], []
    halt = threading.Event()
    driver = threading.Thread(target=_drive, args=(port, halt, cycles), daemon=True)
    driver.start()
    while not stop.is_set():
        t0 = time.perf_counter()
        m.call(b"\x04\x00\x00\x00\x0a")
        probes.append((time.monotonic(), (time.perf_counter() - t0) * 1000))
        time.sleep(max(0.0, period_s - (time.perf_counter() - t0)))
    halt.set()
    driver.join(30)
    queue.put({"probes": probes, "cycles_ms": cycles})


def noise_png(side: int = 2560, seed: int = 7) -> bytes:
    """A PNG of random pixels: it does not compress, so its size is its pixels' (~19.7 MB)."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _cookie(resp: http.client.HTTPResponse) -> str:
    return resp.getheader("Set-Cookie", "").split(";", 1)[0]


def _auth(port: int, content_type: str, basic: bool = False) -> dict[str, str]:
    """Headers of a logged-in integrator with the CSRF token: a session cookie from the login form, as
    the setup page has; or (``basic``) HTTP Basic, whose password check (scrypt, ~50 ms of CPU) the
    station then makes on every request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    if basic:
        auth = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    else:
        conn.request("GET", "/login")
        resp = conn.getresponse()
        token = re.search(r'name="login_token" value="([^"]+)"', resp.read().decode()).group(1)
        form = urllib.parse.urlencode({"user": USER, "password": PASSWORD, "login_token": token, "next": "/"})
        conn.request("POST", "/login", body=form, headers={"Cookie": _cookie(resp),
                     "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 303, resp.status
        auth = {"Cookie": _cookie(resp)}
    conn.request("GET", "/api/session", headers=auth)
    csrf = json.loads(conn.getresponse().read())["csrf"]
    conn.close()
    return {**auth, "X-CSRF-Token": csrf, "Content-Type": content_type}


def try_request(form: str, png: bytes) -> tuple[str, str, bytes]:
    """(path, content type, body) of a *try* on ``png`` in ``form``."""
    if form == "binary":
        query = urllib.parse.urlencode({"recipe": json.dumps(RECIPE)})
        return f"/api/setup/try?{query}", "image/png", png
    body = json.dumps({"recipe": RECIPE, "image": "data:image/png;base64," + base64.b64encode(png).decode()})
    return "/api/setup/try", "application/json", body.encode()


class Uploader(threading.Thread):
    """POSTs one body again and again; records (status, seconds) per request."""

    def __init__(
        self, port: int, stop: threading.Event, request: tuple[str, str, bytes], big: str = "", basic: bool = False
    ):
        super().__init__(daemon=True)
        self.port, self.stop, self.big = port, stop, big
        self.path, content_type, self.body = request
        self.results: list[tuple[int | str, float]] = []
        self.errors: dict[int, str] = {}  # the first answer of each unexpected status
        self.headers = _auth(port, content_type, basic)

    def run(self) -> None:
        while not self.stop.is_set():
            if self.big and self.results:
                self.stop.wait(BIG_EVERY_S)  # one 200 MB body every few seconds, not a flood
                if self.stop.is_set():
                    return
            t0 = time.perf_counter()
            try:
                status = self._send_big() if self.big else self._send()
            except (OSError, http.client.HTTPException) as err:
                status = type(err).__name__
            self.results.append((status, time.perf_counter() - t0))

    def _send(self) -> int:
        """One upload; a 429 is waited out as its Retry-After says (a browser's setup page does)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            try:
                conn.request("POST", self.path, body=self.body, headers=self.headers)
            except OSError:
                pass  # the server answered early and closed: read its answer
            resp = conn.getresponse()
            answer = resp.read()
            if resp.status not in (200, 429):
                self.errors.setdefault(resp.status, answer[:300].decode(errors="replace"))
            if resp.status == 429:
                self.stop.wait(float(resp.getheader("Retry-After", "1")))
            return resp.status
        finally:
            conn.close()

    def _send_big(self) -> int:
        """200 MB of body in 1 MiB pieces, announced (Content-Length) or chunked; the answer as soon as
        the server gives one (it should, before reading the body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            conn.putrequest("POST", self.path)
            for k, v in self.headers.items():
                conn.putheader(k, v)
            chunked = self.big == "chunked"
            conn.putheader(
                "Transfer-Encoding" if chunked else "Content-Length", "chunked" if chunked else str(BIG_BODY)
            )
            conn.endheaders()
            piece = b"x" * (1 << 20)
            conn.sock.settimeout(0.5)
            sent = 0
            try:
                while sent < BIG_BODY and not self.stop.is_set():
                    conn.sock.sendall(b"100000\r\n" + piece + b"\r\n" if chunked else piece)
                    sent += len(piece)
            except OSError:
                pass  # the server answered and closed: what it should do
            conn.sock.settimeout(30)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()


def run(args) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="upload-load-"))
    (folder / "data").mkdir()
    plc_port, web_port = _free_port(), _free_port()
    station, start_s = start_station(write_station(folder, plc_port, web_port, args.bundle))
    png = noise_png(args.side)
    request = try_request(args.form, png)
    report: dict = {"form": args.form, "side": args.side, "basic": args.basic, "control": args.control, "station_start_s": round(start_s, 1), "upload_png_bytes": len(png),
                    "upload_body_bytes": len(request[2]), "seconds_per_phase": args.seconds, "rounds": args.rounds,
                    "period_ms": args.period_ms, "load_before": os.getloadavg()}  # fmt: skip
    ctx = mp.get_context("spawn")
    drive, stop, queue = ctx.Event(), ctx.Event(), ctx.Queue()
    plc = ctx.Process(target=plc_process, args=(plc_port, args.period_ms / 1000, drive, stop, queue))
    rss = [rss_mb(station.pid)]
    windows: dict[str, list[tuple[float, float]]] = {"inspecting": [], "uploads": []}
    clients: list[Uploader] = []
    try:
        plc.start()
        drive.set()
        time.sleep(3.0)  # the inspections get going
        for _ in range(args.rounds):  # alternating phases: a slow drift of the machine hits both alike
            lo = time.monotonic()
            time.sleep(args.seconds)
            windows["inspecting"].append((lo, time.monotonic()))
            halt = threading.Event()
            group = [] if args.control else [Uploader(web_port, halt, request, basic=args.basic) for _ in range(4)]
            if not args.control:
                group += [
                    Uploader(web_port, halt, request, big="length"),
                    Uploader(web_port, halt, request, big="chunked"),
                ]
            for c in group:
                c.start()
            time.sleep(1.0)
            lo, deadline = time.monotonic(), time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                rss.append(rss_mb(station.pid))
                time.sleep(0.2)
            windows["uploads"].append((lo, time.monotonic()))
            halt.set()
            for c in group:
                c.join(60)
            clients += group
        stop.set()
        result = queue.get(timeout=120)
        plc.join(30)
    finally:
        station.terminate()
        station.wait(30)
    probes, cycles = result["probes"], result["cycles_ms"]
    for name, spans in windows.items():
        report[name] = {
            "modbus": _stats([ms for at, ms in probes if any(lo <= at <= hi for lo, hi in spans)]),
            "cycle": _stats([ms for at, ms in cycles if any(lo <= at <= hi for lo, hi in spans)]),
        }
    report["cycle_p50_by_round"] = [
        [_stats([ms for at, ms in cycles if lo <= at <= hi])["p50_ms"] for lo, hi in spans]
        for spans in (windows["inspecting"], windows["uploads"])
    ]

    def summary(group: list[Uploader]) -> dict:
        results = [r for c in group for r in c.results]
        statuses: dict[str, int] = {}
        for status, _ in results:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        errors = {str(k): v for c in group for k, v in c.errors.items()}
        return {"n": len(results), "statuses": statuses, **_stats([s * 1000 for _, s in results]), "errors": errors}

    report["uploads_max_size"] = summary([c for c in clients if not c.big])
    report["body_200mb_content_length"] = summary([c for c in clients if c.big == "length"])
    report["body_200mb_chunked"] = summary([c for c in clients if c.big == "chunked"])
    report["station_rss_mb"] = {"before": round(rss[0], 1), "max": round(max(rss), 1)}
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument(
        "--rounds", type=int, default=4, help="inspecting and uploads phases, alternated this many times"
    )
    parser.add_argument("--period-ms", type=float, default=10.0, help="the PLC's read period")
    parser.add_argument(
        "--form", choices=("binary", "json"), default="binary", help="the image as the body, or as base64 in JSON"
    )
    parser.add_argument("--bundle", default=str(ROOT / "models" / "demo-student"))
    parser.add_argument(
        "--basic", action="store_true", help="the uploads log in with HTTP Basic on every request, not a session"
    )
    parser.add_argument(
        "--side", type=int, default=2560, help="the noise image's side in pixels (2560: ~19.7 MB, the largest)"
    )
    parser.add_argument(
        "--control", action="store_true", help="no uploads in the second phase: the noise between two phases"
    )
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args()
    report = run(args)
    print(f"{'phase':<12} {'modbus p50':>10} {'p99':>7} {'max':>7} {'cycles':>7} {'cycle p50':>10} {'p95':>7}")
    for name in ("inspecting", "uploads"):
        m, c = report[name]["modbus"], report[name]["cycle"]
        print(
            f"{name:<12} {m['p50_ms']:>10} {m['p99_ms']:>7} {m['max_ms']:>7} {c['n']:>7} {c['p50_ms']:>10} {c['p95_ms']:>7}"
        )
    for key in ("uploads_max_size", "body_200mb_content_length", "body_200mb_chunked"):
        r = report[key]
        print(f"{key:<26} n={r['n']:<4} statuses={r['statuses']} p50 {r.get('p50_ms')} ms, max {r.get('max_ms')} ms")
    print(f"station RSS {report['station_rss_mb']['before']} MB before, {report['station_rss_mb']['max']} MB at most")
    ratio = report["uploads"]["cycle"]["p50_ms"] / report["inspecting"]["cycle"]["p50_ms"]
    print(
        f"cycle p50 ratio uploads/inspecting: {ratio:.2f}×; Modbus p99 under uploads {report['uploads']['modbus']['p99_ms']} ms"
    )
    report["cycle_p50_ratio"] = round(ratio, 3)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
