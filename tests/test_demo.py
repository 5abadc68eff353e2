"""`edge-inspect demo`, the embedded default, end to end with the bundled student model."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .stations import free_port

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "models" / "demo-student"


def test_demo_runs_20_s_with_pass_and_fail_and_registers_match_the_log(tmp_path):
    assert (STUDENT / "manifest.json").is_file(), "the bundled student is part of the repository"
    port, web_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edge_inspect.cli", "demo", "--workdir", str(tmp_path),
                             "--port", str(port), "--web-port", str(web_port), "--period", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(20)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the demo prints its summary and exits
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert "inspections:" in out and "trigger→results_valid p50" in out
    printed = [line for line in out.splitlines() if line.startswith("#")]
    con = sqlite3.connect(tmp_path / "inspections.db")
    con.row_factory = sqlite3.Row
    rows = {r["result_id"]: r for r in con.execute("select * from inspections")}
    verdicts = {r["verdict"] for r in rows.values()}
    assert len(rows) >= 10 and {"PASS", "FAIL"} <= verdicts, (len(rows), verdicts)
    # each line is what the simulated PLC read from the result registers
    for line in printed:
        fields = line.split()
        result_id, verdict = int(fields[0][1:]), fields[2]
        defects = int(fields[3].split("=")[1])
        failed = int(fields[4].split("=")[1], 2)
        row = rows[result_id]
        assert (verdict, defects, failed) == (row["verdict"], row["defect_count"], row["failed_checks"]), line
    assert len(printed) >= 10
