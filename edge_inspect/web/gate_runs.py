"""A model gate started from the setup page: ``edge-inspect model gate`` in a process of its own at
the lowest priority (``--nice 19``, one ONNX Runtime thread), so the station's loop and inspections
keep their pace while it runs. One gate at a time per store; the child writes where it is to
``<store>/gate-run.json`` (commands/gate.py, Progress) and its output to ``gate-run.log``, and keeps
its report in the version's record, which the page then shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROGRESS = "gate-run.json"
LOG = "gate-run.log"
NICE = 19
THREADS = 1


class GateBusy(RuntimeError):
    """A gate is running already."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class GateRuns:
    """The gate this web started (if any) and what the progress file says."""

    children: dict[str, subprocess.Popen] = field(default_factory=dict)  # store folder → its gate process

    def status(self, store_folder: Path) -> dict[str, Any] | None:
        """The newest gate's state (running, done, failed) as the progress file says; None: no gate yet."""
        child = self.children.get(str(store_folder))
        if child is not None and child.poll() is not None:  # reap it; the file says how it ended
            del self.children[str(store_folder)]
        try:
            state = json.loads((store_folder / PROGRESS).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(state, dict):
            return None
        if state.get("state") == "running" and not _alive(int(state.get("pid") or 0)):
            state["state"] = "failed"
            state["error"] = f"the gate process ended without a result: {self.last_line(store_folder)}"
        return state

    @staticmethod
    def last_line(store_folder: Path) -> str:
        try:
            lines = (store_folder / LOG).read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no output"

    def start(self, store_folder: Path, config: Path, version: str, user: str) -> None:
        """Start ``edge-inspect model gate`` for ``version`` against production (blocking: a worker
        thread's job). GateBusy while another gate runs on this store."""
        state = self.status(store_folder)
        if state is not None and state.get("state") == "running":
            raise GateBusy(f"a gate of {str(state.get('version'))[:12]} is running ({state.get('phase')})")
        progress = store_folder / PROGRESS
        (store_folder / LOG).unlink(missing_ok=True)
        progress.write_text(json.dumps({"state": "running", "phase": "starting", "version": version, "by": user,
                                        "done": 0, "total": 1, "pid": 0}) + "\n", encoding="utf-8")  # fmt: skip
        with open(store_folder / LOG, "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "edge_inspect.cli", "model", "gate", version, "--against", "production",
                 "--config", str(config), "--user", user, "--threads", str(THREADS), "--nice", str(NICE),
                 "--progress", str(progress)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        state = json.loads(progress.read_text(encoding="utf-8"))
        if not state.get("pid"):  # the child has not written yet: name it, so a crash before that is seen
            state["pid"] = child.pid
            tmp = progress.with_name(PROGRESS + ".web")
            tmp.write_text(json.dumps(state) + "\n", encoding="utf-8")
            os.replace(tmp, progress)
        self.children[str(store_folder)] = child
