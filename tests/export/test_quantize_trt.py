"""Quantization, the accuracy gate, TensorRT graph checks and engine refusal, the bench command."""

import json
import logging
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_inspect.vlm import load_bundle, step_decode
from edge_inspect.vlm.engines import ENGINE_DIR, METADATA, Environment, compatibility

from ..support.paths import REPO_ROOT

pytest.importorskip("torch", reason="the export toolchain needs the 'export' extra")

from tools.export.quantize import quantize_bundle  # noqa: E402
from tools.export.trt import check_graph, trtexec_commands  # noqa: E402

CALIBRATION = REPO_ROOT / "calibration" / "parts"


@pytest.fixture(scope="module")
def int8_bundle(tiny_bundle, tmp_path_factory):
    return quantize_bundle(
        tiny_bundle, tmp_path_factory.mktemp("q") / "int8", vision="int8", decoder="int8", calibration=CALIBRATION
    )


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_int8_bundle_records_precision_and_calibration(int8_bundle, tiny_bundle):
    manifest = json.loads((int8_bundle / "manifest.json").read_text())
    assert manifest["graphs"]["vision"]["precision"] == "int8"
    assert manifest["graphs"]["decoder"]["precision"] == "int8"
    assert manifest["quantization"]["calibration"]["images"] == len(list(CALIBRATION.iterdir()))
    assert len(manifest["quantization"]["calibration"]["sha256"]) == 64
    assert "QuantizeLinear" in _ops(int8_bundle / "vision.onnx")  # QDQ, as TensorRT's explicit INT8 wants
    # each decoder graph in its fastest int8 form: per-channel rows for the prefill, block-wise for steps
    assert "MatMulInteger" in _ops(int8_bundle / "decoder.onnx") and "MatMulNBits" not in _ops(
        int8_bundle / "decoder.onnx"
    )
    step_nodes = onnx.load(str(int8_bundle / "decoder_step.onnx")).graph.node
    assert {a.i for n in step_nodes if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "bits"} == {8}
    # 7-bit weights: full-range ones saturated ONNX Runtime's 16-bit pair sums on CPUs without VNNI
    # (AVX2 only), where the pair then failed the load check and was written block-wise
    assert manifest["quantization"]["decoder_scheme"].startswith("int8 per channel (7-bit range)")
    for graph in ("decoder", "decoder_step"):  # the LM head kept at full precision
        assert manifest["graphs"][graph]["kept_full_precision"] == ["/lm_head/MatMul"]
        assert manifest["graphs"][graph]["precision"] == "int8"
    assert load_bundle(int8_bundle).engine.step_graph  # the two int8 forms agree within the load check
    # the quantized bundle still answers, close to full precision
    ref, q = load_bundle(tiny_bundle), load_bundle(int8_bundle)
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    a = ref.engine.prefill(ref.encode(frame), "Is the label present?")[0].logits
    b = q.engine.prefill(q.encode(frame), "Is the label present?")[0].logits
    assert np.abs(a - b).max() < 0.25 * np.abs(a).max()


def test_int4_and_fp16(tiny_bundle, tmp_path):
    int4 = quantize_bundle(tiny_bundle, tmp_path / "int4", vision="fp32", decoder="int4")
    assert "MatMulNBits" in _ops(int4 / "decoder.onnx") and "MatMul" in _ops(int4 / "decoder.onnx")  # LM head kept
    # both int4 graphs are block-wise and share one side file: each quantized matrix is stored once
    step = onnx.load(str(int4 / "decoder_step.onnx"), load_external_data=False)
    assert len([t for t in step.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]) >= 10
    decoder_bytes = sum(len(t.raw_data) for t in onnx.load(str(int4 / "decoder.onnx")).graph.initializer)
    assert (int4 / "decoder.weights").stat().st_size < 1.2 * decoder_bytes
    everything = quantize_bundle(tiny_bundle, tmp_path / "int4all", vision="fp32", decoder="int4", keep=[])
    assert json.loads((everything / "manifest.json").read_text())["graphs"]["decoder"]["kept_full_precision"] == []
    fp16 = quantize_bundle(tiny_bundle, tmp_path / "fp16", vision="fp16", decoder="fp16")
    assert "decoder_step" not in json.loads((fp16 / "manifest.json").read_text())["graphs"]  # a CPU-only graph
    assert not (fp16 / "decoder_step.onnx").exists()
    for b in (int4, everything, fp16):
        model = load_bundle(b)
        assert 0 <= model.ask_yes_no(model.encode(np.zeros((64, 64, 3), np.uint8)), "Ok?").p_yes <= 1


def test_vision_int8_needs_calibration(tiny_bundle, tmp_path):
    from tools.molmo2.errors import CheckpointError

    with pytest.raises(CheckpointError, match="calibration"):
        quantize_bundle(tiny_bundle, tmp_path / "x", vision="int8", decoder="fp32")
    assert not (tmp_path / "x").exists()


def _quantize_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "tools.export", "quantize", *args], capture_output=True, text=True, cwd=REPO_ROOT
    )


def test_decoder_int4_alone_keeps_vision_at_full_precision(tiny_bundle, tmp_path):
    """`quantize --decoder int4` with nothing else: no calibration needed, the ViT stays fp32."""
    result = _quantize_cli("--bundle", str(tiny_bundle), "--out", str(tmp_path / "q"), "--decoder", "int4")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["graphs"]["vision"]["precision"] == "fp32"
    assert manifest["graphs"]["decoder"]["precision"] == "int4"
    assert (tmp_path / "q" / "vision.onnx").read_bytes() == (tiny_bundle / "vision.onnx").read_bytes()


def test_quantize_user_errors_are_one_line_and_leave_nothing(tiny_bundle, tmp_path):
    from ..support.errors import assert_one_line_error

    out = tmp_path / "q"
    assert_one_line_error(
        _quantize_cli("--bundle", str(tiny_bundle), "--out", str(out), "--vision", "int8"), "calibration"
    )
    assert_one_line_error(
        _quantize_cli(
            "--bundle", str(tiny_bundle), "--out", str(out), "--vision", "int8", "--calibration", str(tmp_path / "none")
        ),
        "none",
        "no calibration images",
    )
    assert_one_line_error(_quantize_cli("--bundle", str(tmp_path / "nope"), "--out", str(out)), "nope")
    assert_one_line_error(_quantize_cli("--bundle", str(tiny_bundle), "--out", str(out), "--keep", "(["), "--keep")
    before = sorted(p.name for p in tiny_bundle.iterdir())
    assert_one_line_error(_quantize_cli("--bundle", str(tiny_bundle), "--out", str(tiny_bundle)), "source bundle")
    assert_one_line_error(_quantize_cli("--bundle", str(tiny_bundle), "--out", str(tiny_bundle / "int8")), "inside it")
    assert sorted(p.name for p in tiny_bundle.iterdir()) == before
    assert list(tmp_path.iterdir()) == []  # nothing written, no manifest-less bundle


def test_a_folder_without_calibration_images_names_every_suffix_read(tmp_path):
    from edge_inspect.camera.images import IMAGE_SUFFIXES
    from tools.export.quantize import calibration_images
    from tools.molmo2.errors import CheckpointError

    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(CheckpointError, match="no calibration images") as err:
        calibration_images(tmp_path)
    assert all(suffix in str(err.value) for suffix in IMAGE_SUFFIXES), err.value


def test_keep_pattern_that_matches_nothing_is_reported(tiny_bundle, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        out = quantize_bundle(tiny_bundle, tmp_path / "q", decoder="int4", keep=["no_such_layer"])
    assert "--keep 'no_such_layer' matches no weight MatMul" in caplog.text
    assert json.loads((out / "manifest.json").read_text())["graphs"]["decoder"]["kept_full_precision"] == []


@pytest.mark.parametrize("decoder", ["int8", "int4"])
def test_quantize_without_onnx_ir_says_so_before_any_work(tiny_bundle, tmp_path, monkeypatch, decoder):
    from tools.molmo2.errors import CheckpointError

    monkeypatch.setitem(sys.modules, "onnx_ir", None)  # import onnx_ir raises ImportError
    with pytest.raises(CheckpointError, match=f"decoder {decoder} needs .*onnx-ir"):
        quantize_bundle(tiny_bundle, tmp_path / "q", decoder=decoder)
    assert list(tmp_path.iterdir()) == []


def test_int8_graphs_that_disagree_keep_the_decoder_graph_at_full_precision(tiny_bundle, tmp_path, caplog):
    """When the per-channel decoder graph and the block-wise step graph differ by more than the load
    check allows, the decoder graph stays fp32 (prefill and yes/no answers at full precision) and only
    the step graph is int8; quantize says so in one line and the runtime decodes with that pair."""
    strict = step_decode.Agreement(quantized=1e-9)  # no per-channel pair passes the check now
    with caplog.at_level(logging.WARNING):
        out = quantize_bundle(tiny_bundle, tmp_path / "int8", decoder="int8", agreement=strict)
    assert "per-channel int8 decoder graph and the block-wise step graph differ" in caplog.text
    assert "fp32 decoder graph instead" in caplog.text
    # one line from quantize; the runtime's warning about the staging folder is not passed on
    assert "decoding with the decoder graph" not in caplog.text and ".partial" not in caplog.text
    assert "MatMulInteger" not in _ops(out / "decoder.onnx") and "MatMulNBits" not in _ops(out / "decoder.onnx")
    assert (out / "decoder.onnx").read_bytes() == (tiny_bundle / "decoder.onnx").read_bytes()
    assert (out / "decoder.weights").read_bytes() == (tiny_bundle / "decoder.weights").read_bytes()
    assert "MatMulNBits" in _ops(out / "decoder_step.onnx")
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["graphs"]["decoder"]["precision"] == "fp32"
        and manifest["graphs"]["decoder_step"]["precision"] == "int8"
    )
    assert manifest["quantization"]["decoder"] == "int8"
    assert manifest["quantization"]["decoder_scheme"].startswith("fp32, not quantized")
    model, reference = load_bundle(out), load_bundle(tiny_bundle)
    assert model.engine.step_graph
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    a = reference.engine.prefill(reference.encode(frame), "Is the label present?")[0].logits
    b = model.engine.prefill(model.encode(frame), "Is the label present?")[0].logits
    assert np.array_equal(a, b)  # the prefill is the fp32 graph's


def test_int8_graphs_that_still_disagree_are_both_written_block_wise(tiny_bundle, tmp_path, caplog):
    """The last resort: both graphs block-wise, which agree to float rounding."""
    strict = step_decode.Agreement(quantized=1e-9, mixed=1e-9)
    with caplog.at_level(logging.WARNING):
        out = quantize_bundle(tiny_bundle, tmp_path / "int8", decoder="int8", agreement=strict)
    assert "block-wise int8 decoder graph instead" in caplog.text
    assert "MatMulInteger" not in _ops(out / "decoder.onnx") and "MatMulNBits" in _ops(out / "decoder.onnx")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"]["decoder_scheme"] == "MatMulNBits 8-bit, block 32, symmetric"
    assert (out / "decoder.weights").is_file()  # shared by the two block-wise graphs
    model = load_bundle(out)
    assert model.engine.step_graph and step_decode.difference_to_decoder(model.engine)[0] < 1e-4


def test_failed_quantize_keeps_the_existing_bundle(tiny_bundle, tmp_path):
    from tools.molmo2.errors import CheckpointError

    good = Path(shutil.copytree(tiny_bundle, tmp_path / "good"))
    before = {p.name: p.read_bytes() for p in good.iterdir()}

    def broken(src, dst, kept, bits=4, block=32):
        dst.write_bytes(b"partial")
        raise CheckpointError(f"{dst}: simulated quantizer failure")

    with pytest.raises(CheckpointError):
        quantize_bundle(tiny_bundle, good, overwrite=True, nbits=broken)
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["good"]


def _verify(reference, candidate, tmp_path, seeds="600000:600006"):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.distill",
            "verify",
            "--reference",
            str(reference),
            "--candidate",
            str(candidate),
            "--seeds",
            seeds,
            "--json",
            str(tmp_path / "v.json"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )


def test_verify_passes_an_identical_bundle(tiny_bundle, tmp_path):
    result = _verify(tiny_bundle, tiny_bundle, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["passed"] and report["yes_no_agreement"] == 1.0 and report["margin_drift"]["max"] == 0.0


def test_verify_fails_a_damaged_bundle(tiny_checkpoint, tiny_bundle, tmp_path):
    """A bundle of other weights (as from a wrong export or a broken quantization) must fail the gate."""
    from tools.export.onnx_bundle import export_bundle
    from tools.molmo2.tiny import make_tiny_checkpoint

    other = export_bundle(make_tiny_checkpoint(tmp_path / "other-ckpt", seed=7), tmp_path / "other")
    result = _verify(tiny_bundle, other, tmp_path, seeds="600000:600040")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout and "yes/no agreement" in result.stdout


def test_graph_checks_pass_on_exported_graphs_and_catch_bad_ones(tiny_bundle, tmp_path):
    for graph in ("vision", "embed", "decoder"):
        assert check_graph(tiny_bundle / f"{graph}.onnx") == []
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, None)
    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"])], "g", [x], [y])
    bad = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), bad)
    problems = [p.problem for p in check_graph(bad)]
    assert any("NonZero" in p for p in problems) and any("opset 19" in p for p in problems)
    assert any("no static rank" in p for p in problems)


def test_trtexec_lines(tiny_bundle):
    from edge_inspect.vlm.bundle import load_bundle_files

    lines = trtexec_commands(load_bundle_files(tiny_bundle), "int8")
    assert len(lines) == 3 and all(cmd.startswith("trtexec --onnx=") and "--int8" in cmd for cmd in lines)
    assert "--minShapes=pixel_values:1x64x588" in lines[0]


def _with_engines(bundle: Path, tmp_path: Path, metadata: dict) -> Path:
    copy = Path(shutil.copytree(bundle, tmp_path / "with-engines"))
    (copy / ENGINE_DIR).mkdir()
    (copy / ENGINE_DIR / METADATA).write_text(json.dumps(metadata))
    return copy


def test_engines_for_another_gpu_or_version_are_refused(tiny_bundle, tmp_path):
    meta = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7", "engines": {}}
    here = Environment("10.3.0", "NVIDIA H200", "9.0")
    assert compatibility(meta, here) == "engines were built for Orin (sm 8.7), this machine has NVIDIA H200 (sm 9.0)"
    assert "TensorRT 10.3.0, this machine has TensorRT 10.9.0" in compatibility(
        meta, Environment("10.9.0", "Orin", "8.7")
    )
    assert compatibility(meta, Environment("10.3.0", "Orin", "8.7")) is None
    assert compatibility(meta, Environment(None, None, None)) == "TensorRT is not installed on this machine"
    # through the runtime: refused in one line, and ONNX Runtime answers instead
    bundle = _with_engines(tiny_bundle, tmp_path, meta)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_bundle(bundle, backend="tensorrt")
    assert model.backend.name.startswith("onnxruntime")
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert "TensorRT engines refused" in str(caught[0].message)
    assert 0 <= model.ask_yes_no(model.encode(np.zeros((64, 64, 3), np.uint8)), "Ok?").p_yes <= 1


try:
    import tensorrt  # noqa: F401

    from edge_inspect.vlm.engines import detect_environment

    HAVE_GPU = detect_environment().gpu is not None
except ImportError:
    HAVE_GPU = False


@pytest.mark.skipif(not HAVE_GPU, reason="needs TensorRT and a CUDA GPU (neither is on this machine)")
def test_tensorrt_engines_build_and_match_onnxruntime(tiny_bundle, tmp_path):
    from tools.export.trt import build_engines

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    build_engines(bundle, "fp16")
    trt_model, ort_model = load_bundle(bundle, backend="tensorrt"), load_bundle(bundle)
    assert trt_model.backend.name.startswith("tensorrt")
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    a = ort_model.engine.prefill(ort_model.encode(frame), "Is the label present?")[0].logits
    b = trt_model.engine.prefill(trt_model.encode(frame), "Is the label present?")[0].logits
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_bench_command(tiny_bundle, int8_bundle, tmp_path):
    out = tmp_path / "bench.json"
    report = tmp_path / "verify.json"  # the layout `python -m tools.distill verify --json` writes
    report.write_text(
        json.dumps(
            {
                "reference": str(tiny_bundle),
                "candidate": str(int8_bundle),
                "passed": False,
                "problems": ["label yes/no agreement 0.90 < 0.99"],
                "rows": [],
            }
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_inspect.cli",
            "bench",
            str(tiny_bundle),
            str(int8_bundle),
            "--runs",
            "2",
            "--warmup",
            "1",
            "--frames",
            "2",
            "--json",
            str(out),
            "--verify",
            str(report),
            "--step-threads",
            "2,1",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())["rows"]
    measured = [r for r in rows if "inspection_ms" in r]
    # each bundle at each decode-step thread count, side by side
    assert [(Path(r["bundle"]), r["step_threads"]) for r in measured] == [
        (Path(tiny_bundle).resolve(), 2),
        (Path(tiny_bundle).resolve(), 1),
        (Path(int8_bundle).resolve(), 2),
        (Path(int8_bundle).resolve(), 1),
    ]
    assert measured[2]["precision"] == {"vision": "int8", "decoder": "int8", "decoder_step": "int8"}
    assert all(r["step_graph"] for r in measured)
    measured = measured[::2]
    for r in measured:
        assert set(r["stages_ms"]) == {"preprocess_ms", "vision_ms", "prefill_ms", "decode_ms", "postprocess_ms"}
        assert r["inspection_ms"]["p95"] >= r["inspection_ms"]["p50"] > 0 and r["peak_rss_mb"] > 0
        assert r["one_by_one_ms"]["p50"] > 0  # the previous path, side by side
        assert r["decode_step"]["bound_ms"] > 0 and r["decode_step"]["batched_per_token_ms"] > 0
    assert measured[1]["verify"]["passed"] is False and "verify" not in measured[0]
    assert "FAIL" in result.stdout and "keep full precision" in result.stdout
    assert "p50" in result.stdout and "tensorrt" in result.stdout and "load average" in result.stdout


def test_bench_interleaved_runs_every_variant_in_one_process(tiny_bundle, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_inspect.cli",
            "bench",
            str(tiny_bundle),
            "--runs",
            "2",
            "--warmup",
            "1",
            "--frames",
            "2",
            "--json",
            str(out),
            "--step-threads",
            "2,1",
            "--spin",
            "on,off",
            "--interleave",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    measured = [r for r in json.loads(out.read_text())["rows"] if "inspection_ms" in r]
    # each decode-step thread count with worker threads spinning during a run and sleeping
    assert [(r["step_threads"], r["spin"]) for r in measured] == [(2, True), (2, False), (1, True), (1, False)]
    assert all(r["interleaved"] for r in measured)
    assert measured[0]["peak_rss_mb"] == measured[1]["peak_rss_mb"]  # one process
    for r in measured:
        assert len({r["runs"], 2}) == 1 and r["inspection_ms"]["p50"] > 0 and r["decode_step"]["bound_ms"] > 0


def test_bench_refuses_a_spin_setting_it_does_not_know(tiny_bundle):
    result = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "bench", str(tiny_bundle), "--spin", "on,yes"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "'on,yes': on and/or off" in result.stderr
    assert "Traceback" not in result.stderr
