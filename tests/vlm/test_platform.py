"""What the model runs on: providers found and why one is not used, TensorRT, the Jetson's L4T /
JetPack and power mode (fabricated files), engine caches keyed by bundle, TensorRT, GPU and L4T —
read at start, in /api/status, /metrics and `edge-inspect doctor`."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from edge_inspect.vlm import load_bundle
from edge_inspect.vlm.backends import provider_options
from edge_inspect.vlm.engines import ENGINE_DIR, METADATA, Environment, compatibility
from edge_inspect.vlm.jetson import read_jetson
from edge_inspect.vlm.platform_info import collect, why_not_used

from ..support.jetson import fake_jetson
from ..support.web import run_api


def test_jetson_release_model_and_power_mode_from_its_files(tmp_path):
    jetson = read_jetson(fake_jetson(tmp_path / "orin"))
    assert jetson.l4t == "36.4.3" and jetson.jetpack == "6.2"
    assert jetson.model == "NVIDIA Jetson Orin NX Engine Module" and jetson.power_mode == "2 (15W)"
    thor = read_jetson(fake_jetson(tmp_path / "thor", "# R38 (release), REVISION: 2.0, GCID: 1\n", pmode=None))
    assert thor.l4t == "38.2.0" and thor.jetpack == "7.0" and thor.power_mode is None
    future = read_jetson(fake_jetson(tmp_path / "future", "# R36 (release), REVISION: 9.1, GCID: 1\n"))
    assert future.l4t == "36.9.1" and future.jetpack == "6.x"
    assert read_jetson(tmp_path / "x86") is None


def test_every_gpu_provider_not_used_has_a_reason(tmp_path):
    cpu, trt, cuda = "CPUExecutionProvider", "TensorrtExecutionProvider", "CUDAExecutionProvider"
    orin = read_jetson(fake_jetson(tmp_path))
    missing = why_not_used("auto", [cpu], [cpu], orin)
    assert missing["tensorrt"] == (
        "TensorRT provider not installed: onnxruntime-gpu for JetPack 6.2 is needed "
        "(NVIDIA's Jetson wheel index, docs/jetson.md)"
    )
    assert "CUDA provider not installed" in missing["cuda"]
    assert "this onnxruntime build runs on the CPU only" in why_not_used("auto", [cpu], [cpu], None)["tensorrt"]
    not_asked = why_not_used("cpu", [trt, cuda, cpu], [cpu], orin)
    assert not_asked["tensorrt"] == "TensorRT provider installed but not asked for (model.providers: cpu)"
    fell_back = why_not_used(["tensorrt", "cpu"], [trt, cuda, cpu], [cpu], orin)
    assert "could not start" in fell_back["tensorrt"] and "not asked for" in fell_back["cuda"]
    assert why_not_used("auto", [trt, cuda, cpu], [trt, cuda, cpu], orin) == {}


def _metadata(**changes) -> dict:
    meta = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7", "l4t": "36.4.3",
            "bundle_manifest_sha256": "b" * 64, "engines": {}}  # fmt: skip
    return {**meta, **changes}


def test_engines_from_another_jetpack_or_bundle_are_never_loaded():
    here = Environment("10.3.0", "Orin", "8.7", "36.4.3")
    assert compatibility(_metadata(), here, "b" * 64) is None
    assert compatibility(_metadata(l4t="36.3.0"), here, "b" * 64) == (
        "engines were built under L4T 36.3.0, this machine runs L4T 36.4.3; rebuild them here"
    )
    no_record = _metadata()
    del no_record["l4t"]  # engines built before the L4T release was recorded
    assert "no L4T release on record" in compatibility(no_record, here, "b" * 64)
    assert "another bundle" in compatibility(_metadata(), here, "c" * 64)
    assert "TensorRT 10.3.0, this machine has TensorRT 10.7.0" in compatibility(
        _metadata(), Environment("10.7.0", "Orin", "8.7", "38.2.0"), "b" * 64
    )


def test_provider_engine_cache_is_keyed_by_bundle_tensorrt_gpu_and_l4t(tmp_path, caplog):
    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    jp62 = Environment("10.3.0", "Orin", "8.7", "36.4.3")
    # no engines for this key yet: the station starts on CUDA at once, one line says how to build them
    rest, missing = provider_options(providers, "b" * 64, tmp_path, jp62)
    assert rest == providers[1:] and "--build-engines" in missing and "L4T 36.4.3" in missing
    assert missing.endswith("running on CUDA meanwhile")
    with caplog.at_level(logging.INFO, logger="edge_inspect.vlm.backends"):
        built, missing = provider_options(providers, "b" * 64, tmp_path, jp62, build=True)
    name, options = built[0]
    folder = Path(options["trt_engine_cache_path"])
    assert missing is None and name == "TensorrtExecutionProvider" and options["trt_engine_cache_enable"] == "True"
    assert folder.parent == tmp_path and built[1:] == providers[1:]
    assert "building engines into" in caplog.text
    (folder / "TensorrtExecutionProvider_cache.engine").write_bytes(b"engine")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge_inspect.vlm.backends"):
        found, missing = provider_options(providers, "b" * 64, tmp_path, jp62)
    assert missing is None and found[0][1]["trt_engine_cache_path"] == str(folder)
    assert "engines from" in caplog.text and "building" not in caplog.text
    others = {  # another bundle, JetPack, TensorRT or GPU: another folder, whose engines are not there
        provider_options(providers, sha, tmp_path, env, build=True)[0][0][1]["trt_engine_cache_path"]
        for sha, env in [
            ("c" * 64, jp62),
            ("b" * 64, Environment("10.3.0", "Orin", "8.7", "36.3.0")),
            ("b" * 64, Environment("10.7.0", "Orin", "8.7", "36.4.3")),
            ("b" * 64, Environment("10.3.0", "Thor", "11.0", "36.4.3")),
        ]
    }
    assert len(others) == 4 and str(folder) not in others
    assert provider_options(["CPUExecutionProvider"], "b" * 64, tmp_path, jp62) == (["CPUExecutionProvider"], None)


def test_what_the_model_runs_on_here(tiny_bundle, tmp_path):
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    (bundle / ENGINE_DIR).mkdir()
    (bundle / ENGINE_DIR / METADATA).write_text(json.dumps(_metadata()))
    model = load_bundle(bundle, providers="auto", backend="auto")
    info = collect(model, "auto")
    assert info.onnxruntime == ort.__version__ and info.available_providers == ort.get_available_providers()
    assert info.backend == "onnxruntime[cpu]" and info.in_use == ["CPUExecutionProvider"]
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        assert info.not_used["tensorrt"].startswith("TensorRT provider not installed: onnxruntime-gpu is needed")
    assert "TensorRT engines refused" in info.not_used["tensorrt-engines"]
    text = "\n".join(info.lines())
    assert f"ONNX Runtime {ort.__version__}" in text and "model runs on: onnxruntime[cpu]" in text


def test_doctor_prints_the_platform_and_the_reasons(tiny_bundle):
    out = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "doctor", "--bundle", str(tiny_bundle), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["onnxruntime"] == ort.__version__ and report["in_use"] == ["CPUExecutionProvider"]
    assert report["python"] == ".".join(map(str, sys.version_info[:3]))
    built = subprocess.run(  # on this machine: nothing to build, every prompt kind still runs once
        [sys.executable, "-m", "edge_inspect.cli", "doctor", "--bundle", str(tiny_bundle), "--build-engines"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0 and "model runs on: onnxruntime[cpu]" in built.stdout, built.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "doctor", "--bundle", "no-such-bundle"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "no-such-bundle" in missing.stderr and "Traceback" not in missing.stderr


def test_status_and_metrics_say_what_the_model_runs_on(tmp_path, tiny_bundle):
    async def scenario(station, client):
        return (await client.get("/api/status")).json(), (await client.get("/metrics")).text

    status, metrics = run_api(tmp_path, tiny_bundle, scenario)
    platform = status["platform"]
    assert platform["onnxruntime"] == ort.__version__ and platform["backend"] == "onnxruntime[cpu]"
    assert platform["in_use"] == ["CPUExecutionProvider"]
    line = next(x for x in metrics.splitlines() if x.startswith("edge_inspect_platform_info{"))
    assert f'onnxruntime="{ort.__version__}"' in line and 'backend="onnxruntime[cpu]"' in line and line.endswith(" 1")


def test_the_station_logs_the_platform_at_start(tmp_path, tiny_bundle, caplog):
    from edge_inspect.config import load_config
    from edge_inspect.daemon import build_station

    from ..support.stations import write_station

    path = write_station(tmp_path, tiny_bundle, plc={"enabled": False})
    config, sha = load_config(path)
    with caplog.at_level(logging.INFO, logger="edge_inspect.daemon"):
        station = build_station(config, sha, tmp_path)
    station.store.close()
    assert f"ONNX Runtime {ort.__version__}" in caplog.text and "model runs on: onnxruntime[cpu]" in caplog.text


@pytest.mark.parametrize(
    ("value", "label"), [('a"b', 'gpu="a\\"b"'), ("a\\b", 'gpu="a\\\\b"'), ("a\nb", 'gpu="a\\nb"')]
)
def test_platform_metric_labels_are_escaped(value, label):
    from edge_inspect.web.metrics import platform_lines

    line = platform_lines({"gpu": value})[-1]
    assert label in line and "\n" not in line
