"""Quantize a bundle's graphs: INT8 QDQ for vision (static, calibrated), weight INT8 / INT4 for the
decoder, FP16 for GPUs. The LM head (and any layers named) can stay at full precision.

The result is a new bundle folder with the same layout; its manifest records each graph's
precision, what was kept at full precision and the hash of the calibration set.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

from edge_inspect.vlm.bundle import MANIFEST, load_bundle_files, sha256_file
from edge_inspect.vlm.preprocess import preprocess

from .checkpoint import CheckpointError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
PRECISIONS = {"vision": ("fp32", "int8", "fp16"), "decoder": ("fp32", "int8", "int4", "fp16")}


def calibration_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise CheckpointError(f"{folder}: no calibration images (.png/.jpg)")
    return files


def calibration_hash(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


class VisionCalibration(CalibrationDataReader):
    """Feeds the vision graph with the real preprocessing of each calibration image."""

    def __init__(self, files: list[Path], settings):
        self.inputs = []
        for path in files:
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise CheckpointError(f"{path}: not an image")
            x = preprocess(np.ascontiguousarray(frame[:, :, ::-1]), settings)
            self.inputs.append({"pixel_values": x.pixel_values, "pooling": x.pooling})
        self._iter = iter(self.inputs)

    def get_next(self):
        return next(self._iter, None)

    def rewind(self):
        self._iter = iter(self.inputs)


def _matmul_nodes(path: Path, keep: list[str]) -> tuple[list[str], list[str]]:
    """(nodes to quantize, nodes kept): weight MatMuls only, minus those matching ``keep`` patterns."""
    model = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    quantize, kept = [], []
    for node in model.graph.node:
        if node.op_type == "MatMul" and any(i in weights for i in node.input):
            (kept if any(re.search(p, node.name) for p in keep) else quantize).append(node.name)
    return quantize, kept


def _vision_int8(src: Path, dst: Path, calibration: VisionCalibration) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        quantize_static(
            str(src), str(dst), calibration, quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},  # what TensorRT's explicit INT8 takes
            calibration_cache_path=str(Path(tmp) / "cache"),
        )


def _decoder_int8(src: Path, dst: Path, nodes: list[str]) -> None:
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                     op_types_to_quantize=["MatMul"], per_channel=True)


def _decoder_int4(src: Path, dst: Path, kept: list[str], block: int = 32) -> None:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(src))
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block, is_symmetric=True, accuracy_level=4,
                                     nodes_to_exclude=kept)
    quantizer.process()
    onnx.save_model(quantizer.model.model, str(dst))


def _fp16(src: Path, dst: Path, kept: list[str]) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    onnx.save_model(convert_float_to_float16(model, keep_io_types=True, node_block_list=kept), str(dst))


def quantize_bundle(src: str | Path, out: str | Path, vision: str = "int8", decoder: str = "int8",
                    calibration: str | Path | None = None, keep: list[str] | None = None,
                    overwrite: bool = False) -> Path:
    """Write a quantized copy of bundle ``src`` to ``out``. ``keep``: regexes of decoder node names
    kept at full precision (default: the LM head, whose margins decide yes/no and argmax)."""
    src, out = Path(src), Path(out)
    for graph, precision in (("vision", vision), ("decoder", decoder)):
        if precision not in PRECISIONS[graph]:
            raise CheckpointError(f"{graph} precision {precision!r}: choose from {', '.join(PRECISIONS[graph])}")
    bundle = load_bundle_files(src)
    keep = ["lm_head"] if keep is None else keep
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise CheckpointError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    manifest = json.loads((src / MANIFEST).read_text())
    for name in manifest["files"]:
        shutil.copyfile(src / name, out / name)

    calib_files: list[Path] = []
    if vision == "int8":
        if calibration is None:
            raise CheckpointError("vision int8 needs --calibration (a folder of images)")
        calib_files = calibration_images(Path(calibration))
        _vision_int8(src / "vision.onnx", out / "vision.onnx", VisionCalibration(calib_files, bundle.image))
    elif vision == "fp16":
        _fp16(src / "vision.onnx", out / "vision.onnx", [])

    quantize_nodes, kept = _matmul_nodes(src / "decoder.onnx", keep)
    if decoder == "int8":
        _decoder_int8(src / "decoder.onnx", out / "decoder.onnx", quantize_nodes)
    elif decoder == "int4":
        _decoder_int4(src / "decoder.onnx", out / "decoder.onnx", kept)
    elif decoder == "fp16":
        _fp16(src / "decoder.onnx", out / "decoder.onnx", kept)

    manifest["graphs"]["vision"]["precision"] = vision
    manifest["graphs"]["decoder"]["precision"] = decoder
    manifest["graphs"]["decoder"]["kept_full_precision"] = kept if decoder != "fp32" else []
    manifest["quantization"] = {
        "source_manifest_sha256": sha256_file(src / MANIFEST),
        "calibration": {"images": len(calib_files), "sha256": calibration_hash(calib_files)} if calib_files else None,
        "vision": vision, "decoder": decoder, "keep": keep,
    }  # fmt: skip
    manifest["files"] = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                         for p in sorted(out.iterdir()) if p.is_file() and p.name != MANIFEST}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    load_bundle_files(out)  # the new bundle verifies
    return out
