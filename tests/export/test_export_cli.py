"""tools/export's command line: bad checkpoints give one line and exit 2; a good one gives a bundle."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..support.errors import assert_one_line_error
from ..support.paths import REPO_ROOT

pytest.importorskip("torch", reason="the export toolchain needs the 'export' extra")


def _export(*args):
    return subprocess.run([sys.executable, "-m", "tools.export", *args], capture_output=True, text=True, cwd=REPO_ROOT)


def test_not_a_checkpoint(tmp_path):
    assert_one_line_error(_export("onnx", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "b")), "config.json")


def test_bad_preprocessor_config(tiny_checkpoint, tmp_path):
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    config = json.loads((ckpt / "preprocessor_config.json").read_text())
    config["resample"] = 3
    (ckpt / "preprocessor_config.json").write_text(json.dumps(config))
    assert_one_line_error(
        _export("onnx", "--checkpoint", str(ckpt), "--out", str(tmp_path / "b")), "preprocessor_config.json", "bilinear"
    )


def test_refuses_to_overwrite(tiny_checkpoint, tiny_bundle):
    assert_one_line_error(
        _export("onnx", "--checkpoint", str(tiny_checkpoint), "--out", str(tiny_bundle)), "--overwrite"
    )


def test_export_writes_documented_manifest(tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    for key in (
        "format",
        "format_version",
        "source",
        "preprocess",
        "prompt",
        "tokens",
        "text",
        "opset",
        "graphs",
        "files",
    ):
        assert key in manifest
    assert manifest["opset"] == 18
    assert set(manifest["files"]) == {
        "vision.onnx",
        "embed.onnx",
        "decoder.onnx",
        "decoder_step.onnx",
        "decoder.weights",
        "tokenizer.json",
    }
    assert set(manifest["graphs"]) == {"vision", "embed", "decoder", "decoder_step"}
    assert manifest["preprocess"]["max_crops"] == 4 and manifest["preprocess"]["overlap_margins"] == [2, 2]
    assert manifest["prompt"]["use_single_crop_col_tokens"] is False


def test_graphs_have_no_data_dependent_ops(tiny_bundle):
    import onnx

    for name in ("vision", "embed", "decoder"):
        ops = {node.op_type for node in onnx.load(str(tiny_bundle / f"{name}.onnx")).graph.node}
        assert not ops & {"NonZero", "If", "Loop", "Scan"}, (name, ops)


def test_config_not_molmo2(tiny_checkpoint, tmp_path):
    ckpt = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    (ckpt / "config.json").write_text("{ broken")
    assert_one_line_error(_export("onnx", "--checkpoint", str(ckpt), "--out", str(tmp_path / "b")), "config.json")
