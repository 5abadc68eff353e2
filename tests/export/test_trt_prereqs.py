"""tools/export/trt_bench.sh on a machine without what it needs: every prerequisite listed, found or
missing with how to get it (Jetson or x86), exit 2 before anything is built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.export.prereqs import report, requirements

from ..support.jetson import fake_jetson
from ..support.paths import REPO_ROOT


def test_a_jetson_without_the_gpu_pieces_is_told_what_to_install(tmp_path):
    reqs = requirements(fake_jetson(tmp_path))
    lines, ok = report(reqs, on_jetson=True)
    text = "\n".join(lines)
    assert "ok       NVIDIA GPU: Jetson integrated GPU" in text
    if not any(r.name == "TensorRT Python bindings" and r.found for r in reqs):
        assert not ok and "MISSING TensorRT Python bindings: apt install python3-libnvinfer" in text
    if not any(r.name.startswith("onnxruntime") and r.found for r in reqs):
        assert "onnxruntime-gpu for JetPack 6.2 from NVIDIA's Jetson index" in text


@pytest.mark.skipif(
    Path("/dev/nvidia0").exists() or Path("/etc/nv_tegra_release").exists(), reason="this machine has a GPU"
)
def test_trt_bench_lists_what_is_missing_and_stops(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(
        ["bash", "tools/export/trt_bench.sh"], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "MISSING NVIDIA GPU" in out.stdout and "send back its tables" in out.stdout
    assert "Traceback" not in out.stderr and not (REPO_ROOT / "work/trt-bench/ort.json").exists()
