"""`python -m tools.export lean`: a bundle exported with the traced decoder graph gets the lean one,
with the same outputs (checked before the copy is written) and the same answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..support.paths import REPO_ROOT

pytest.importorskip("torch", reason="the export toolchain needs the 'export' extra (torch, transformers)")

from edge_inspect.vlm import load_bundle  # noqa: E402
from tools.export import lean_decoder  # noqa: E402
from tools.export.lean_bundle import lean_bundle  # noqa: E402
from tools.molmo2.errors import CheckpointError  # noqa: E402


@pytest.fixture(scope="module")
def traced_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    from tools.export.onnx_bundle import export_bundle

    return export_bundle(tiny_checkpoint, tmp_path_factory.mktemp("traced") / "tiny", lean=False)


def test_lean_copy_of_a_traced_bundle_answers_the_same(traced_bundle, tmp_path):
    import onnx

    out = tmp_path / "lean"
    result = subprocess.run(
        [sys.executable, "-m", "tools.export", "lean", "--bundle", str(traced_bundle), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    ops = [n.op_type for n in onnx.load(str(out / "decoder.onnx")).graph.node]
    traced_ops = [n.op_type for n in onnx.load(str(traced_bundle / "decoder.onnx")).graph.node]
    assert "Shape" in traced_ops and "Shape" not in ops and len(ops) < len(traced_ops) / 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lean_decoder"]["max_difference"] <= lean_decoder.TOLERANCE
    a, b = load_bundle(traced_bundle), load_bundle(out)
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for question in ("Point to the screws.", "Is the label present?"):
        step_a, _ = a.engine.prefill(a.encode(frame), question)
        step_b, _ = b.engine.prefill(b.encode(frame), question)
        tokens_a, logits_a = a.engine.greedy(step_a, 12, stop_ids=())
        tokens_b, logits_b = b.engine.greedy(step_b, 12, stop_ids=())
        assert tokens_a == tokens_b
        assert max(float(np.abs(x - y).max()) for x, y in zip(logits_a, logits_b, strict=True)) <= 1e-4


def test_a_lean_graph_that_computes_otherwise_is_refused(traced_bundle, tmp_path):
    def off(spec, opset):
        spec.layers[0].k_norm = spec.layers[0].k_norm * 1.01
        return lean_decoder.graph_from_spec(spec, opset)

    with pytest.raises(CheckpointError, match="differs from the source one"):
        lean_bundle(traced_bundle, tmp_path / "bad", build_decoder=off)
    assert not (tmp_path / "bad").exists()


def test_quantized_bundles_are_refused(traced_bundle, tmp_path):
    from tools.export.quantize import quantize_bundle

    int8 = quantize_bundle(traced_bundle, tmp_path / "int8", decoder="int8")
    with pytest.raises(CheckpointError, match="make the lean copy of the fp32 bundle"):
        lean_bundle(int8, tmp_path / "x")
