"""``edge-inspect fleet collect | serve | dataset export``: the plant's side of fleet publishing
(docs/fleet.md): the collector (the stations' MQTT topics into PostgreSQL), the plant web (all stations,
the cross-station review) and the training records of every station's reviewed inspections
(commands/fleet_dataset.py). The MQTT client, PostgreSQL driver and web server are imported by the handlers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..fleet.mqtt import BrokerSettings


def _broker(args: argparse.Namespace) -> BrokerSettings:
    from ..fleet.mqtt import BrokerSettings

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


def cmd_collect(args: argparse.Namespace) -> int:
    import signal
    import threading

    import psycopg

    from ..plant.collector import Collector, load_tokens
    from ..plant.images import open_store
    from ..plant.pg_schema import SchemaError

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


def cmd_dataset_export(args: argparse.Namespace) -> int:
    from .fleet_dataset import export

    report = export(args.db, args.images, Path(args.out), args.station or None)
    print(report.summary(args.out))
    if report.missing_images:
        print(
            f"{report.missing_images} reviewed inspections left out: their frame is not in {args.images} "
            "(not fetched yet, fetching failed, or deleted: the inspections' image_state and image_error say which)"
        )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ..plant.app import run_server

    return run_server(args)


def register(sub: argparse._SubParsersAction) -> None:
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
    collect.set_defaults(func=cmd_collect)
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
    fserve.set_defaults(func=cmd_serve)
    dataset = fleet.add_parser("dataset", help="training data from the stations' reviewed inspections").add_subparsers(
        dest="fleet_dataset_command", required=True
    )
    export = dataset.add_parser(
        "export",
        help="every station's reviewed inspections as distillation JSONL (train.jsonl, holdout.jsonl, images/), "
        "as `edge-inspect dataset export` writes one station's",
    )
    export.add_argument("out", help="folder to write (made if missing; images already there are kept)")
    export.add_argument("--db", required=True, help="PostgreSQL URL of the collector's database")
    export.add_argument("--images", required=True, help="the collector's image store (folder or s3://BUCKET/PREFIX)")
    export.add_argument(
        "--station",
        action="append",
        metavar="SITE/LINE/STATION",
        help="only this station's inspections (repeat for more; default: every station)",
    )
    export.set_defaults(func=cmd_dataset_export)
