"""A damaged bundle is refused with one line naming the file; the command exits 2 without a traceback."""

import json
import subprocess
import sys

import pytest

from edge_inspect.vlm import BundleError, load_bundle

from ..support.errors import assert_one_line_error


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edge_inspect.cli", *args], capture_output=True, text=True)


def test_good_bundle_verifies(tiny_bundle):
    result = _cli("model", "verify", str(tiny_bundle))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_missing_graph(bundle_copy):
    (bundle_copy / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match=r"decoder\.onnx: missing"):
        load_bundle(bundle_copy)
    assert_one_line_error(_cli("model", "verify", str(bundle_copy)), "decoder.onnx", "missing")


def test_truncated_graph(bundle_copy):
    path = bundle_copy / "vision.onnx"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_one_line_error(_cli("model", "verify", str(bundle_copy)), "vision.onnx", "truncated")


def test_swapped_bytes_same_size(bundle_copy):
    path = bundle_copy / "embed.onnx"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_one_line_error(_cli("model", "verify", str(bundle_copy)), "embed.onnx", "sha256 mismatch")


def test_missing_tokenizer(bundle_copy):
    (bundle_copy / "tokenizer.json").unlink()
    assert_one_line_error(_cli("model", "verify", str(bundle_copy)), "tokenizer.json", "missing")


def test_missing_manifest(bundle_copy):
    (bundle_copy / "manifest.json").unlink()
    assert_one_line_error(_cli("model", "verify", str(bundle_copy)), "manifest.json", "missing")


def test_manifest_not_json(bundle_copy):
    (bundle_copy / "manifest.json").write_text("{ not json")
    assert_one_line_error(_cli("model", "verify", str(bundle_copy)), "manifest.json", "not valid JSON")


def test_manifest_missing_setting(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    del manifest["preprocess"]["max_crops"]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(_cli("model", "verify", str(bundle_copy)), "manifest.json", "max_crops")


def test_future_format_version(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(_cli("model", "verify", str(bundle_copy)), "format_version 99")


def test_file_entry_escaping_bundle(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["files"]["../outside.onnx"] = {"sha256": "0", "bytes": 1}
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(_cli("model", "verify", str(bundle_copy)), "outside the bundle")


def test_not_a_folder(tmp_path):
    assert_one_line_error(_cli("model", "verify", str(tmp_path / "nope")), "nope", "not a bundle folder")


def test_ask_with_missing_image(tiny_bundle, tmp_path):
    assert_one_line_error(
        _cli("model", "ask", str(tiny_bundle), str(tmp_path / "x.png"), "--yes-no", "Ok?"), "x.png", "no such image"
    )


def test_ask_with_damaged_bundle(bundle_copy, tmp_path):
    (bundle_copy / "vision.onnx").write_bytes(b"")
    assert_one_line_error(
        _cli("model", "ask", str(bundle_copy), str(tmp_path / "x.png"), "--yes-no", "Ok?"), "vision.onnx"
    )
