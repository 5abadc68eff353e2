"""The ``edge-inspect`` command. Thin: parses arguments and calls the modules that do the work.

User mistakes (a bad bundle, a missing image) print one line on stderr and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .commands.console import defect_rate
from .commands.model import add_parsers as add_model_store_parsers
from .errors import UserError

EXIT_USAGE = 2


def _cmd_model_verify(args: argparse.Namespace) -> int:
    from .vlm.bundle import load_bundle_files

    bundle = load_bundle_files(args.bundle)
    files = bundle.manifest["files"]
    print(f"{bundle.path}: ok ({len(files)} files verified, manifest sha256 {bundle.sha256[:16]})")
    return 0


def _read_image(path: Path):
    import cv2

    if not path.is_file():
        raise UserError(f"{path}: no such image file")
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise UserError(f"{path}: not an image OpenCV can read")
    return frame


def _cmd_model_ask(args: argparse.Namespace) -> int:
    from .vlm import load_bundle

    if not (args.point or args.yes_no or args.generate):
        raise UserError("give at least one of --point, --yes-no or --generate")
    model = load_bundle(args.bundle, providers=args.provider)
    frame = _read_image(Path(args.image))
    image = model.encode(frame, order="bgr")
    results = []
    for prompt in args.point or []:
        p = model.point(image, prompt, max_new_tokens=args.max_new_tokens)
        results.append({
            "kind": "point", "prompt": prompt, "text": p.text, "count": p.answer.count,
            "points": [[round(pt.x, 4), round(pt.y, 4)] for pt in p.answer.points],
            "malformed": p.answer.malformed, "timings_ms": p.timings_ms,
        })  # fmt: skip
    for question in args.yes_no or []:
        a = model.ask_yes_no(image, question)
        results.append({
            "kind": "yes_no", "prompt": question, "answer": "yes" if a.answer else "no",
            "p_yes": round(a.p_yes, 4), "margin": round(a.margin, 4), "mass": round(a.mass, 4), "timings_ms": a.timings_ms,
        })  # fmt: skip
    for prompt in args.generate or []:
        g = model.generate(image, prompt, max_new_tokens=args.max_new_tokens)
        results.append({"kind": "generate", "prompt": prompt, "text": g.text, "timings_ms": g.timings_ms})
    print(json.dumps({"image": args.image, "encode_ms": image.timings_ms, "results": results}, indent=2))
    return 0


def _add_model(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="model bundles").add_subparsers(dest="model_command", required=True)
    verify = model.add_parser("verify", help="check a bundle's files against its manifest")
    verify.add_argument("bundle", help="bundle folder (with manifest.json)")
    verify.set_defaults(func=_cmd_model_verify)

    ask = model.add_parser("ask", help="run prompts on one image file")
    ask.add_argument("bundle", help="bundle folder (with manifest.json)")
    ask.add_argument("image", help="image file (PNG, JPEG, …)")
    ask.add_argument("--point", action="append", metavar="PROMPT", help='e.g. "Point to any scratches."')
    ask.add_argument("--yes-no", action="append", metavar="QUESTION", help='e.g. "Is the label present?"')
    ask.add_argument("--generate", action="append", metavar="PROMPT", help="free-text answer")
    ask.add_argument("--provider", default="cpu", help="ONNX Runtime provider: tensorrt, cuda, cpu or auto")
    ask.add_argument("--max-new-tokens", type=int, default=64, help="cap on generated tokens per prompt")
    ask.set_defaults(func=_cmd_model_ask)
    add_model_store_parsers(model)  # list, add, promote, rollback, remove


def _cmd_config_validate(args: argparse.Namespace) -> int:
    from .config import load_config

    config, sha = load_config(args.file)
    checks = sum(len(r.checks) for r in config.recipes)
    print(f"{args.file}: ok ({len(config.recipes)} recipe(s), {checks} check(s), sha256 {sha[:16]})")
    return 0


def _add_config(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="station configs").add_subparsers(dest="config_command", required=True)
    validate = config.add_parser("validate", help="check a station.yaml; every problem as file:line: key: message")
    validate.add_argument("file", help="station.yaml")
    validate.set_defaults(func=_cmd_config_validate)


def _cmd_modbus_map(args: argparse.Namespace) -> int:
    from .plc.signals import build_map, export_map

    if args.config:  # the effective map: the config's mode and overrides
        from .config import load_config

        config, _ = load_config(args.config)
        if args.mode and args.mode != config.plc.mode:
            raise UserError(f"--mode {args.mode} differs from plc.mode {config.plc.mode} in {args.config}")
        signal_map = config.plc.signal_map()
    else:
        signal_map = build_map(mode=args.mode or "server")
    sys.stdout.write(export_map(signal_map, args.format))
    return 0


def _add_modbus(sub: argparse._SubParsersAction) -> None:
    modbus = sub.add_parser("modbus", help="the PLC register map").add_subparsers(dest="modbus_command", required=True)
    mmap = modbus.add_parser("map", help="print the effective Modbus map")
    mmap.add_argument("--config", help="station.yaml whose plc.mode and plc.map apply")
    mmap.add_argument("--mode", choices=["server", "client"], help="default map of this mode (default server)")
    mmap.add_argument("--format", choices=["md", "csv", "json"], default="md", help="markdown table, CSV or JSON")
    mmap.set_defaults(func=_cmd_modbus_map)


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from .config import load_config
    from .daemon import Daemon, build_station

    config, sha = load_config(args.config, bundle=args.bundle)
    if config.plc.enabled:  # a port in use or a missing serial device is reported before the model loads
        from .plc.modbus import preflight

        preflight(config.plc.link_settings())

    from .commands.console import print_event

    async def main() -> None:
        path = Path(args.config).resolve()
        station = build_station(config, sha, path.parent, config_path=path)
        station.events.subscribe(print_event)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        daemon = Daemon(station)
        await daemon.start()  # a web port in use: the PLC sees offline; the error is reported in one line
        if daemon.web is not None:
            scheme = "https" if config.web.tls_cert else "http"
            print(f"HMI on {scheme}://{config.web.host}:{config.web.port}/", flush=True)
        await stop.wait()
        await daemon.stop()

    asyncio.run(main())
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a station (the daemon)")
    run.add_argument("config", help="station.yaml")
    run.add_argument("--bundle", help="model bundle (overrides model.bundle)")
    run.set_defaults(func=_cmd_run)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .commands.doctor import run_doctor
    from .config import load_config

    config = load_config(args.config, bundle=args.bundle)[0] if args.config else None
    return run_doctor(config, args.bundle, args.json, args.build_engines)


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser(
        "doctor", help="what the model runs on here: ONNX Runtime providers, TensorRT, GPU, JetPack, and why not"
    )
    doctor.add_argument(
        "config", nargs="?", help="station.yaml whose model to load (default: the demo student, 'auto')"
    )
    doctor.add_argument("--bundle", help="model bundle instead of the config's")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.add_argument(
        "--build-engines",
        action="store_true",
        help="build the TensorRT provider's engines for this bundle, TensorRT, GPU and JetPack now (minutes)",
    )
    doctor.set_defaults(func=_cmd_doctor)


def _cmd_try(args: argparse.Namespace) -> int:
    from .commands.trial import run_try
    from .config import load_config

    config, _ = load_config(args.config, bundle=args.bundle)
    model = config.model.load()
    return run_try(config, model, [Path(p) for p in args.images], args.recipe or [], Path(args.out))


def _add_try(sub: argparse._SubParsersAction) -> None:
    trial = sub.add_parser("try", help="run a recipe on image files: overlays, a table and JSON (no PLC, no log)")
    trial.add_argument("config", help="station.yaml")
    trial.add_argument("images", nargs="+", help="image files or folders of images")
    trial.add_argument(
        "--recipe", type=int, action="append", help="recipe number (repeatable; default the config's triggers.recipe)"
    )
    trial.add_argument("--out", default="work/try", help="folder for the overlay PNGs and try.json")
    trial.add_argument("--bundle", help="model bundle (overrides model.bundle)")
    trial.set_defaults(func=_cmd_try)


def _cmd_tune(args: argparse.Namespace) -> int:
    from .commands.tune import LabelError, print_report, run_tune
    from .config import load_config

    config, _ = load_config(args.config, bundle=args.bundle)
    model = config.model.load()
    try:
        report = run_tune(config, model, Path(args.labelled), args.recipe or config.triggers.recipe, Path(args.out))
    except LabelError as err:
        raise UserError(str(err)) from None
    print_report(report)
    print(f"JSON and plots in {args.out}")
    return 0


def _add_tune(sub: argparse._SubParsersAction) -> None:
    tune = sub.add_parser(
        "tune", help="false-reject and escape rates per check on labelled images; recommended margins and limits"
    )
    tune.add_argument("config", help="station.yaml")
    tune.add_argument(
        "--labelled",
        required=True,
        help="folder with good/ and bad/ images, or a labels.csv (image, check, expected pass|fail)",
    )
    tune.add_argument("--recipe", type=int, help="recipe number (default the config's triggers.recipe)")
    tune.add_argument("--out", default="work/tune", help="folder for tune.json and the plots")
    tune.add_argument("--bundle", help="model bundle (overrides model.bundle)")
    tune.set_defaults(func=_cmd_tune)


def _cmd_calibrate_camera(args: argparse.Namespace) -> int:
    from .camera.calibration import CalibrationError, calibrate

    try:
        columns, _, rows = args.board.lower().partition("x")
        board = (int(columns), int(rows))
    except ValueError:
        raise UserError(f"--board: {args.board!r} is not COLUMNSxROWS of inner corners, e.g. 9x6") from None
    try:
        result = calibrate(Path(args.images), board, args.square_mm, args.plane)
    except CalibrationError as err:
        raise UserError(str(err)) from None
    result.save(Path(args.out))
    fx, fy = result.focal_px
    print(
        f"{result.images} images, reprojection error {result.rms_px:.3f} px; focal {fx:.1f} / {fy:.1f} px; "
        f"working plane {result.mm_per_px:.4f} mm/px ({result.plane_image}); written to {args.out}"
    )
    return 0


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    calib = sub.add_parser("calibrate", help="calibrate the camera").add_subparsers(
        dest="calibrate_command", required=True
    )
    cam = calib.add_parser("camera", help="intrinsics, distortion and mm per pixel from chessboard images")
    cam.add_argument(
        "--images", required=True, help="folder of chessboard images (different angles, one flat on the working plane)"
    )
    cam.add_argument("--board", default="9x6", help="inner corners, columns x rows")
    cam.add_argument("--square-mm", type=float, required=True, help="side of one square in millimetres")
    cam.add_argument(
        "--plane",
        help="file name of the image with the board on the working plane (default: the "
        "last image, by name, in which the board was found)",
    )
    cam.add_argument("--out", default="calibration/camera.json", help="where the calibration is written")
    cam.set_defaults(func=_cmd_calibrate_camera)


def _cmd_hash_password(args: argparse.Namespace) -> int:
    import getpass

    from .http.auth import hash_password

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
    if len(password) < 4:
        raise UserError("the password must have at least 4 characters")
    print(hash_password(password))
    return 0


def _add_user(sub: argparse._SubParsersAction) -> None:
    user = sub.add_parser("user", help="HMI users").add_subparsers(dest="user_command", required=True)
    hp = user.add_parser("hash-password", help="read a password (stdin or prompt), print its hash for station.yaml")
    hp.set_defaults(func=_cmd_hash_password)


def _broker(args: argparse.Namespace):
    from .fleet.mqtt import BrokerSettings

    password = None
    if args.password_env:
        import os

        password = os.environ.get(args.password_env)
        if password is None:
            raise UserError(f"--password-env: environment variable {args.password_env} is not set")
    elif args.password_file:
        try:
            password = Path(args.password_file).read_text().strip()
        except OSError as err:
            raise UserError(f"--password-file {args.password_file}: {err.strerror or err}") from None
    for name in ("ca", "cert", "key"):
        value = getattr(args, name)
        if value and not Path(value).is_file():
            raise UserError(f"--{name} {value}: no such file")
    return BrokerSettings.from_url(
        args.broker, ca=args.ca, cert=args.cert, key=args.key, username=args.username, password=password
    )


def _cmd_fleet_collect(args: argparse.Namespace) -> int:
    import signal
    import threading

    import psycopg

    from .plant.collector import Collector, load_tokens
    from .plant.images import open_store
    from .plant.pg_schema import SchemaError

    broker = _broker(args)
    collector = Collector(
        broker,
        args.db,
        prefix=args.prefix,
        client_id=args.client_id,
        images=open_store(args.images) if args.images else None,
        tokens=load_tokens(args.station_tokens) if args.station_tokens else None,
    )
    try:
        collector.check_database()
    except (psycopg.Error, SchemaError) as err:
        raise UserError(f"--db: {' '.join(str(err).split())}") from None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: collector.stop())
    print(f"collecting {args.prefix}/+/+/+/… from {broker.where()} into the database", flush=True)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            collector.run()
        except BaseException as err:  # a restart-on-failure unit restarts a collector that ended this way
            failure.append(err)

    runner = threading.Thread(target=run, name="collector")
    runner.start()
    while runner.is_alive():
        runner.join(0.5)
    if failure:
        raise failure[0]
    return 0


def _cmd_fleet_serve(args: argparse.Namespace) -> int:
    from .plant.serve import run_server

    return run_server(args)


def _add_fleet(sub: argparse._SubParsersAction) -> None:
    fleet = sub.add_parser(
        "fleet", help="plant-wide results: MQTT broker to PostgreSQL, cross-station review (docs/fleet.md)"
    ).add_subparsers(dest="fleet_command", required=True)
    collect = fleet.add_parser("collect", help="subscribe to the stations' topics and write PostgreSQL")
    collect.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    collect.add_argument("--db", required=True, help="PostgreSQL URL, e.g. postgresql://qa@dbhost/fleet")
    collect.add_argument("--prefix", default="edge-inspect", help="first topic level (the stations' fleet.prefix)")
    collect.add_argument(
        "--client-id",
        default="edge-inspect-collector",
        help="MQTT client id; the broker keeps this session's messages while the collector is away",
    )
    collect.add_argument("--ca", help="PEM CA bundle of the broker's certificate (implies TLS)")
    collect.add_argument("--cert", help="PEM client certificate (mutual TLS)")
    collect.add_argument("--key", help="PEM private key of --cert")
    collect.add_argument("--username", help="broker user name")
    collect.add_argument("--password-env", help="environment variable holding the broker password")
    collect.add_argument("--password-file", help="file holding the broker password")
    collect.add_argument(
        "--images",
        help="content-addressed image store: a folder or s3://BUCKET/PREFIX (default: images are not fetched)",
    )
    collect.add_argument(
        "--station-tokens",
        help="YAML: site/line/station -> {url: http(s)://HOST:PORT, token: …}: "
        "each station's pinned origin for fetching its images (no other host is ever fetched)",
    )
    collect.set_defaults(func=_cmd_fleet_collect)
    fserve = fleet.add_parser("serve", help="web page of all stations and a cross-station review on PostgreSQL")
    fserve.add_argument("--db", required=True, help="PostgreSQL URL of the collector's database")
    fserve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    fserve.add_argument("--port", type=int, default=8090, help="port to listen on")
    fserve.add_argument("--users", help="YAML list of users (name, role, password_hash) as in station.yaml web.users")
    fserve.add_argument("--open-view", action="store_true", help="pages readable without a login")
    fserve.add_argument("--images", help="the collector's image store (folder or s3://BUCKET/PREFIX)")
    fserve.add_argument("--timezone", help="IANA zone for times and 'today' (default: the OS zone)")
    fserve.add_argument("--title", default="fleet", help="name in the page header")
    fserve.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="ADDRESS",
        help="a reverse proxy whose X-Forwarded-For is believed (repeat for more; none by default)",
    )
    fserve.set_defaults(func=_cmd_fleet_serve)


def _cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    from .commands.demo import run_demo

    asyncio.run(
        run_demo(
            Path(args.workdir),
            duration_s=args.duration,
            bundle=args.bundle,
            port=args.port,
            period_s=args.period,
            web_port=args.web_port,
            defect_rate=args.defect_rate,
        )
    )
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="the whole station on this machine, no hardware")
    demo.add_argument("--workdir", default="work/demo", help="folder for the SQLite log and images")
    demo.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    demo.add_argument("--bundle", help="model bundle instead of the bundled demo student")
    demo.add_argument("--port", type=int, default=5020, help="Modbus TCP port on 127.0.0.1")
    demo.add_argument("--period", type=float, default=0.5, help="seconds between PLC triggers")
    demo.add_argument("--web-port", type=int, default=8080, help="HMI port (0 = no HMI)")
    demo.add_argument(
        "--defect-rate",
        type=defect_rate,
        default=0.1,
        help="share of defective parts, as on a line; 'mix': the part generator's own mix, most parts defective",
    )
    demo.set_defaults(func=_cmd_demo)


def _cmd_bench(args: argparse.Namespace) -> int:
    from .commands.bench import run_bench

    recipe = None
    if args.config:
        from .config import load_config

        config, _ = load_config(args.config)
        chosen = config.recipe(args.recipe)
        if chosen is None:
            raise UserError(f"recipe {args.recipe} is not in {args.config}")
        recipe = chosen.model_dump()
    for bundle in args.bundle:
        from .vlm.bundle import load_bundle_files

        load_bundle_files(bundle)
    return run_bench(
        args.bundle,
        args.provider,
        args.frames,
        args.runs,
        args.warmup,
        args.json,
        recipe,
        verify=args.verify,
        backend=args.backend,
        step_threads=args.step_threads,
        interleave=args.interleave,
        spin=args.spin,
        jump_forward=args.jump_forward,
    )


def _thread_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        counts = []
    if not counts or any(c < 0 or c > 1024 for c in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: thread counts 0-1024 separated by commas, e.g. 2,1")
    return counts


def _spin_settings(text: str) -> list[bool]:
    words = {"on": True, "off": False}
    settings = [words.get(x.strip().lower()) for x in text.split(",")]
    chosen = [s for s in settings if s is not None]
    if not chosen or len(chosen) != len(settings):
        raise argparse.ArgumentTypeError(f"{text!r}: on and/or off separated by commas, e.g. on,off")
    return chosen


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="per-stage latency of bundles side by side")
    bench.add_argument("bundle", nargs="+", help="bundles to compare (e.g. fp32, int8, int4 copies)")
    bench.add_argument("--config", help="station.yaml whose recipe to run (default: the demo recipe)")
    bench.add_argument("--recipe", type=int, default=1, help="recipe number in --config")
    bench.add_argument("--provider", default="cpu", help="ONNX Runtime provider: tensorrt, cuda, cpu or auto")
    bench.add_argument("--frames", type=int, default=8, help="different generated parts to cycle through")
    bench.add_argument("--runs", type=int, default=20, help="timed inspections per bundle")
    bench.add_argument("--warmup", type=int, default=3, help="untimed inspections first")
    bench.add_argument("--json", default="work/bench.json", help="where the figures are written")
    bench.add_argument(
        "--backend",
        choices=["onnxruntime", "tensorrt"],
        default="onnxruntime",
        help="tensorrt: the bundles' engines (python -m tools.export trt on this device)",
    )
    bench.add_argument(
        "--step-threads",
        type=_thread_counts,
        default=None,
        metavar="N[,N...]",
        help="intra-op threads of the decode-step graph, one row per bundle and count side by side "
        "(default: the runtime's, 1; 0 = one per core like the other graphs)",
    )
    bench.add_argument(
        "--spin",
        type=_spin_settings,
        default=None,
        metavar="on|off[,...]",
        help="worker threads busy-wait between kernels during a run (on) or sleep (off), one row per "
        "bundle and setting side by side (default: the runtime's, off)",
    )
    bench.add_argument(
        "--jump-forward",
        type=_spin_settings,
        default=None,
        metavar="on|off[,...]",
        help="decode the tokens a pointing grammar forces without sampling, in one run (on) or one "
        "step each (off); one row per bundle and setting side by side (default: on)",
    )
    bench.add_argument(
        "--interleave",
        action="store_true",
        help="all variants in one process, inspections round-robin: steadier ratios on a busy "
        "machine (peak RSS is then the process's, for all)",
    )
    bench.add_argument(
        "--verify",
        nargs="*",
        default=[],
        help="accuracy-gate reports (`python -m tools.distill verify --json`) of the other bundles "
        "against the first; shown in the table",
    )
    bench.set_defaults(func=_cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="edge-inspect", description="Line-side vision inspection appliance.")
    parser.add_argument("--version", action="version", version=f"edge-inspect {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what reaches stderr (the journal under systemd); unexpected errors come with a traceback",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    for add in (
        _add_model,
        _add_config,
        _add_modbus,
        _add_run,
        _add_doctor,
        _add_try,
        _add_tune,
        _add_calibrate,
        _add_bench,
        _add_user,
        _add_demo,
        _add_fleet,
    ):
        add(sub)
    return show_defaults(parser)


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every option's help, in ``parser`` and all its subcommands, shows its default."""
    for each in _all_parsers(parser):
        each.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    return parser


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += _all_parsers(child)
    return found


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except UserError as err:  # anything else is a bug: its traceback, exit 1
        print(f"edge-inspect: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # the system refused a file, port or device the user named
        print(f"edge-inspect: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
