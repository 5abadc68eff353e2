"""Real services for the fleet tests: Mosquitto and a PostgreSQL cluster from Debian, started in
temporary folders by the tests and stopped by them (tests skip, saying why, where they are missing)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from .stations import free_port
from .wait import wait_for


class Mosquitto:
    def __init__(self, folder: Path, port: int | None = None, extra: str = ""):
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").is_file():
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.folder, self.port = folder, port or free_port()
        self.conf = folder / "mosquitto.conf"
        # No persistence: a kill -9 loses whatever the broker held in memory (the worst case).
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_inflight_messages 100\n"
            f"log_dest file {folder / 'mosquitto.log'}\n"
            + ("user root\n" if os.getuid() == 0 else "")  # root: do not switch users
            + extra
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        import socket

        def listening():
            assert self.proc.poll() is None, (self.folder / "mosquitto.log").read_text() \
                if (self.folder / "mosquitto.log").exists() else "mosquitto exited"  # fmt: skip
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, "mosquitto to listen")
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class Postgres:
    """A throwaway cluster (trust auth on 127.0.0.1, fsync off: PostgreSQL's own durability is not
    under test). As root it runs as the 'postgres' user (PostgreSQL refuses root)."""

    def __init__(self, fsync: bool = False):
        self.fsync = fsync
        self.bin = _pg_bin()
        if self.bin is None:
            pytest.skip("PostgreSQL server binaries are missing (apt-get install postgresql)")
        self.folder = Path(tempfile.mkdtemp(prefix="edge-fleet-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.getuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
            os.chmod(self.folder, 0o755)
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self.as_user, *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {result.stdout}{result.stderr}")

    def start(self) -> Postgres:
        data = self.folder / "data"
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-t",
            "120",
            "-l",
            str(self.folder / "log"),
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=50",
            "start",
        )
        return self

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
