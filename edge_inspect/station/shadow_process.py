"""The shadow model in a process of its own, at the lowest CPU priority the OS gives (docs/model-lifecycle.md,
"Shadow on the line").

A thread of the station's would share the interpreter and compete with the next production
inspection at the same priority; a process the kernel schedules as SCHED_IDLE (else at nice 19)
gets a core only when production leaves it idle. It is a fresh interpreter
(``python -m edge_inspect.station.shadow_process``: no copy of the station's threads and locks, and
unlike multiprocessing's spawn it never re-runs the station's main module), talking over a socket
pair; it lowers its priority before it loads the model (ONNX Runtime's threads inherit it), then
judges one frame at a time: (frame, recipe) in, the inspection out. The station also stops it
outright (SIGSTOP) while production inspects and lets it go on (SIGCONT) once the result is out;
it dies with the station (PR_SET_PDEATHSIG), stopped or not.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Recipe
from ..inspection.checks import CheckOutcome
from ..verdict import Verdict

if TYPE_CHECKING:
    import numpy as np

START_TIMEOUT_S = 120.0


class ShadowProcessError(Exception):
    """The shadow process did not start, did not load its model, or died."""


@dataclass(frozen=True)
class Judged:
    verdict: str
    error: str
    outcomes: list[CheckOutcome]
    wall_ms: float  # from the frame arriving in the process to its answer
    cpu_ms: float  # the process's CPU time for it (all its threads)


def lower_priority() -> str:
    """This thread (and the threads it starts from now on) to SCHED_IDLE, else nice 19; says which."""
    try:
        os.nice(19)  # also where SCHED_IDLE is refused (a container without the right)
    except OSError:
        pass
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined,unused-ignore]
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        return f"nice {os.nice(0)}"


def die_with_parent() -> None:
    """SIGKILL this process when the station's process ends (Linux), so that a shadow left stopped
    (SIGSTOP) by a station that crashed does not linger."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _serve(conn: Connection, bundle: str, providers: Any, backend: str, threads: int, max_new_tokens: int) -> None:
    """The process's body: lower the priority, load, then judge until told to stop (None) or the pipe closes."""
    die_with_parent()
    scheduling = lower_priority()
    try:
        from ..inspection.inspector import Inspection, Inspector
        from ..vlm import load_bundle

        model = load_bundle(bundle, providers=providers, threads=threads, backend=backend, spin=False)
        inspector = Inspector(model, max_new_tokens)
    except Exception as err:  # noqa: BLE001 - any load failure is reported, one line
        conn.send(("failed", (str(err).splitlines() or [type(err).__name__])[0]))
        return
    conn.send(("ready", model.sha256, scheduling))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        frame, recipe = job
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            inspection = inspector.run(frame, recipe)
        except Exception as err:  # noqa: BLE001 - the station hears of it as an ERROR verdict
            inspection = Inspection(Verdict.ERROR, [], error=f"shadow: {type(err).__name__}: {err}")
        wall, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
        conn.send(("judged", inspection.verdict.name, inspection.error, inspection.outcomes, wall, cpu))


class ShadowProcess:
    """The parent's handle: start (blocking until the model is loaded), judge (blocking), close."""

    def __init__(self, bundle: str, providers: Any, backend: str, threads: int, max_new_tokens: int):
        ours, theirs = socket.socketpair()
        settings = json.dumps([bundle, providers, backend, threads, max_new_tokens])
        root = str(Path(__file__).resolve().parents[2])  # this checkout's edge_inspect, whatever is installed
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno()), settings],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.version = ""
        self.scheduling = ""

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def pause(self) -> bool:
        """Stop the process (SIGSTOP): it takes no CPU, cache or memory bandwidth until resume()."""
        return self._signal(signal.SIGSTOP)

    def resume(self) -> bool:
        return self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> bool:
        if self.process.poll() is not None:
            return False
        try:
            os.kill(self.process.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        if not self.conn.poll(timeout_s):
            self.close()
            raise ShadowProcessError(f"the shadow's model did not load within {timeout_s:.0f} s")
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            self.close()
            raise ShadowProcessError("the shadow process ended before its model was loaded") from None
        if message[0] != "ready":
            self.close()
            raise ShadowProcessError(str(message[1]))
        self.version, self.scheduling = message[1], message[2]

    def judge(self, frame: np.ndarray, recipe: Recipe) -> Judged:
        try:
            self.conn.send((frame, recipe))
            message = self.conn.recv()
        except (EOFError, OSError) as err:
            raise ShadowProcessError(f"the shadow process died ({type(err).__name__})") from None
        _, verdict, error, outcomes, wall_ms, cpu_ms = message
        return Judged(verdict, error, outcomes, wall_ms, cpu_ms)

    def close(self) -> None:
        """Ask the process to end; terminated where it does not within a few seconds."""
        self.resume()
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(5)
        self.conn.close()


def main(argv: list[str]) -> int:
    conn = Connection(int(argv[1]))
    bundle, providers, backend, threads, max_new_tokens = json.loads(argv[2])
    _serve(conn, bundle, providers, backend, threads, max_new_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
