"""Quantize a bundle's graphs: weight INT8 / INT4 for the decoder, FP16 for GPUs; the vision graph
stays at full precision unless INT8 (QDQ, static, calibrated) or FP16 is asked for — public
practice on edge GPUs keeps the ViT at FP16/FP32 and quantizes the language model, and pointing
depends on the vision features. The LM head (and any layers named) can stay at full precision.

Decoder schemes: INT4 is block-wise (MatMulNBits, block 32) in both decoder graphs, one weights file.
INT8 uses the fastest CPU form for each graph's shape — the decoder graph, which prefills hundreds
of rows, per-channel weights with activations quantized per run (MatMulInteger, fused by ONNX
Runtime into DynamicQuantizeMatMul); the decode-step graph, one row per sequence, block-wise
MatMulNBits — provided the two still agree within the runtime's load check. If not, the decoder
graph stays fp32 and only the step graph is int8 (block-wise int8 prefilled no faster than fp32 on
the CPUs measured, and the yes/no answers, read from the prefill, stay those of full precision);
if even that pair disagrees, both graphs are block-wise (they then agree to float rounding). The
manifest's ``decoder_scheme`` says which.

The result is a new bundle folder with the same layout, written beside the target and renamed into
place when complete; its manifest records each graph's precision, what was kept at full precision
and the hash of the calibration set.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from edge_inspect.camera.images import IMAGE_SUFFIXES, images_in
from edge_inspect.vlm.bundle import MANIFEST, load_bundle_files, sha256_file
from edge_inspect.vlm.manifest import STEP_GRAPH, parse_manifest
from edge_inspect.vlm.preprocess import preprocess
from edge_inspect.vlm.step_decode import LOAD_CHECK, Agreement
from tools.molmo2.errors import CheckpointError

from .onnx_bundle import file_entries
from .staging import check_target, staged_folder

log = logging.getLogger(__name__)

NBITS = {"int8": 8, "int4": 4}  # decoder precisions written block-wise (MatMulNBits) and their bits
DECODER_SCHEMES = {  # how the decoder graph's weights are stored, as the manifest records it
    "int8-rows": "int8 per channel (7-bit range), activations quantized per run (MatMulInteger)",
    "int8-fp32": "fp32, not quantized (prefill at full precision; decode steps int8 in the step graph)",
    "int8": "MatMulNBits 8-bit, block 32, symmetric",
    "int4": "MatMulNBits 4-bit, block 32, symmetric",
}
# Decoder-graph forms tried in turn for int8 with a step graph (the step graph is block-wise in each):
# per-channel int8 prefills fastest where the CPU has VNNI/AMX; fp32 is next (block-wise int8 prefilled
# slower than fp32 on both CPUs measured, and fp32 keeps yes/no answers at full precision); both
# block-wise agree to float rounding, the last resort.
INT8_FORMS = ("rows", "fp32", "same")
FORM_NAMES = {"rows": "per-channel int8", "fp32": "fp32", "same": "block-wise int8"}
PRECISIONS = {"vision": ("fp32", "int8", "fp16"), "decoder": ("fp32", "int8", "int4", "fp16")}


def calibration_images(folder: Path) -> list[Path]:
    files = images_in(folder)
    if not files:
        raise CheckpointError(f"{folder}: no calibration images ({'/'.join(IMAGE_SUFFIXES)})")
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
    quantize: list[str] = []
    kept: list[str] = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and any(i in weights for i in node.input):
            (kept if any(re.search(p, node.name) for p in keep) else quantize).append(node.name)
    return quantize, kept


@contextlib.contextmanager
def _without_preprocessing_advice():
    """ONNX Runtime's quantizers advise its shape pre-processing on the root logger; these graphs
    come from our own export with shapes inferred, so the advice is noise for the user."""

    def drop(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider")

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _vision_int8(src: Path, dst: Path, calibration: VisionCalibration) -> None:
    with tempfile.TemporaryDirectory() as tmp, _without_preprocessing_advice():
        quantize_static(
            str(src),
            str(dst),
            calibration,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},  # what TensorRT's explicit INT8 takes
            calibration_cache_path=str(Path(tmp) / "cache"),
        )


def _decoder_nbits(src: Path, dst: Path, kept: list[str], bits: int = 4, block: int = 32) -> None:
    """Block-wise weight quantization (MatMulNBits); accuracy level 4 computes in int8 on CPU."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(src))
    quantizer = MatMulNBitsQuantizer(
        model, bits=bits, block_size=block, is_symmetric=True, accuracy_level=4, nodes_to_exclude=kept
    )
    quantizer.process()
    onnx.save_model(quantizer.model.model, str(dst))


class NBitsWriter(Protocol):
    """Writes a block-wise quantized copy of graph ``src`` to ``dst`` (_decoder_nbits)."""

    def __call__(self, src: Path, dst: Path, kept: list[str], bits: int = 4, block: int = 32) -> None: ...


def _decoder_int8_rows(src: Path, dst: Path, nodes: list[str]) -> None:
    """Per-channel int8 weights for the MatMuls ``nodes``, activations quantized per run: the
    fastest int8 prefill on CPUs with VNNI/AMX.

    Weights use 7 bits of the 8 (``reduce_range``): on a CPU without VNNI (AVX2 only) ONNX Runtime's
    uint8 × int8 kernel adds pairs of products in 16 bits, which saturate with full-range weights. On
    such a CPU the tiny model's decoder graph then differed from the step graph by 0.43–0.78 (largest
    logit ~4) with full-range weights and by 0.08–0.11 with 7-bit ones. The bundle runs on whatever
    CPU the appliance has, so the range is reduced everywhere."""
    from onnxruntime.quantization import quantize_dynamic

    with _without_preprocessing_advice():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            reduce_range=True,
        )


def _quantize_step_graph(
    src: Path,
    tmp: Path,
    graphs: dict,
    decoder: str,
    keep: list[str],
    share: bool = True,
    nbits: NBitsWriter = _decoder_nbits,
) -> str | None:
    """The decode-step graph follows the decoder: int8 and int4 become block-wise MatMulNBits (the
    fastest int8 form on CPU for one row), fp32 stays; fp16 bundles are for GPUs, where the step
    graph (CPU contrib ops) is not used, so it is left out. ``share``: the decoder graph is
    block-wise too, so the two store their weights once. Returns the scheme written, if any."""
    if STEP_GRAPH not in graphs or decoder == "fp32":
        return None
    name = graphs[STEP_GRAPH]["file"]
    if decoder == "fp16":
        (tmp / name).unlink()
        del graphs[STEP_GRAPH]
        return None
    bits = NBITS[decoder]
    _, kept = _matmul_nodes(src / name, keep)
    nbits(src / name, tmp / name, kept, bits=bits)
    if share:
        _share_quantized_weights(tmp, graphs["decoder"]["file"], name)
    graphs[STEP_GRAPH]["precision"] = decoder
    graphs[STEP_GRAPH]["kept_full_precision"] = kept
    return f"MatMulNBits {bits}-bit, block 32, symmetric" + (" (as the decoder)" if share else "")


def _share_quantized_weights(tmp: Path, decoder_name: str, step_name: str) -> None:
    """Both quantized graphs with their weights in one ``decoder.weights``, each block-quantized
    matrix stored once (the two graphs quantize the same weights the same way)."""
    from .step_decoder import DECODER_FILE, STEP_FILE, WEIGHTS_FILE, save_sharing_weights

    if (decoder_name, step_name) != (DECODER_FILE, STEP_FILE):
        return
    decoder, step = onnx.load(str(tmp / decoder_name)), onnx.load(str(tmp / step_name))
    for path in (tmp / WEIGHTS_FILE, tmp / decoder_name, tmp / step_name):
        path.unlink(missing_ok=True)  # onnx appends to an existing side file
    save_sharing_weights(decoder, step, tmp)


def _drop_unreferenced_data(folder: Path) -> None:
    """Remove weight side files (decoder.weights) that no graph of ``folder`` reads any more."""
    graphs = sorted(folder.glob("*.onnx"))
    used = {
        entry.value
        for path in graphs
        for tensor in onnx.load(str(path), load_external_data=False).graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    for path in folder.iterdir():
        if path.suffix in (".weights", ".data") and path.name not in used:
            path.unlink()


def _fp16(src: Path, dst: Path, kept: list[str]) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    onnx.save_model(convert_float_to_float16(model, keep_io_types=True, node_block_list=kept), str(dst))


def _onnx_quantizer_ready(decoder: str) -> None:
    if decoder in NBITS:
        try:
            import onnx_ir  # noqa: F401
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer  # noqa: F401
        except ImportError as err:
            raise CheckpointError(
                f"decoder {decoder} needs onnxruntime's block-wise quantizer and onnx-ir "
                f"(pip install '.[export]'): {err}"
            ) from None


def _write_decoders(
    src: Path,
    tmp: Path,
    source_manifest: dict,
    vision: str,
    decoder: str,
    keep: list[str],
    calib_files: list[Path],
    form: str,
    nbits: NBitsWriter = _decoder_nbits,
) -> dict:
    """Quantize the decoder graph (and the step graph after it) into ``tmp`` and write the manifest.
    ``form``: how the decoder graph is written — "rows" (int8 per channel), "fp32" (left at full
    precision, only the step graph quantized) or "same" (the precision asked, block-wise for int8/int4)."""
    for path in src.iterdir():  # an earlier form's decoder files are replaced by the source's
        if path.name == "decoder.onnx" or path.suffix in (".weights", ".data"):
            shutil.copyfile(path, tmp / path.name)
    quantized, kept = _matmul_nodes(src / "decoder.onnx", keep)
    if form == "rows":
        _decoder_int8_rows(src / "decoder.onnx", tmp / "decoder.onnx", quantized)
    elif form == "same" and decoder in NBITS:
        nbits(src / "decoder.onnx", tmp / "decoder.onnx", kept, bits=NBITS[decoder])
    elif form == "same" and decoder == "fp16":
        _fp16(src / "decoder.onnx", tmp / "decoder.onnx", kept)
    graph_precision = "fp32" if form == "fp32" else decoder
    log.info(
        "vision %s, decoder graph %s, %s decode steps (%d MatMuls kept at full precision)",
        vision,
        graph_precision,
        decoder,
        len(kept),
    )

    manifest = dict(source_manifest, graphs={k: dict(v) for k, v in source_manifest["graphs"].items()})
    step_scheme = _quantize_step_graph(src, tmp, manifest["graphs"], decoder, keep, share=form == "same", nbits=nbits)
    _drop_unreferenced_data(tmp)
    manifest["graphs"]["vision"]["precision"] = vision
    manifest["graphs"]["decoder"]["precision"] = graph_precision
    manifest["graphs"]["decoder"]["kept_full_precision"] = kept if graph_precision != "fp32" else []
    scheme = DECODER_SCHEMES.get(f"int8-{form}" if form != "same" else decoder)
    manifest["quantization"] = {
        "source_manifest_sha256": sha256_file(src / MANIFEST),
        "calibration": {"images": len(calib_files), "sha256": calibration_hash(calib_files)} if calib_files else None,
        "vision": vision, "decoder": decoder, "keep": keep, **({"decoder_scheme": scheme} if scheme else {}),
        **({STEP_GRAPH: step_scheme} if step_scheme else {}),
    }  # fmt: skip
    manifest["files"] = file_entries(tmp)
    (tmp / MANIFEST).write_text(parse_manifest(manifest).to_json(), encoding="utf-8")
    return manifest


def _step_graph_disagreement(folder: Path, agreement: Agreement = LOAD_CHECK) -> tuple[float, float] | None:
    """The runtime's load check (decoder graph vs step graph on its probe steps, within ``agreement``):
    None when every probe passes, else the worst (difference, allowed). Loading runs the check; the
    probes run again only where it refused the pair, for the figures. The runtime's own warning about
    the staging folder is held back: the caller decides what to write and says so."""
    from edge_inspect.vlm import load_bundle
    from edge_inspect.vlm.step_decode import disagreement

    runtime_log = logging.getLogger("edge_inspect.vlm.generate")
    level = runtime_log.level
    runtime_log.setLevel(logging.ERROR)
    try:
        engine = load_bundle(folder, agreement=agreement).engine
    finally:
        runtime_log.setLevel(level)
    return None if engine.step_graph else disagreement(engine, bounds=agreement)


def quantize_bundle(
    src: str | Path,
    out: str | Path,
    vision: str = "fp32",
    decoder: str = "int8",
    calibration: str | Path | None = None,
    keep: list[str] | None = None,
    overwrite: bool = False,
    int8_forms: tuple[str, ...] = INT8_FORMS,
    agreement: Agreement = LOAD_CHECK,
    nbits: NBitsWriter = _decoder_nbits,
) -> Path:
    """Write a quantized copy of bundle ``src`` to ``out``. ``keep``: regexes of decoder node names
    kept at full precision (default: the LM head, whose margins decide yes/no and argmax).
    Everything the user gives is checked before any work; ``out`` appears only when complete.

    How, with the toolchain's choices as defaults (tests pass others): ``int8_forms``, the decoder
    graph's int8 forms tried in turn (of FORM_NAMES); ``agreement``, the bounds the pair must keep
    (the runtime's load check); ``nbits``, the block-wise quantizer."""
    src, out = Path(src), Path(out)
    for graph, precision in (("vision", vision), ("decoder", decoder)):
        if precision not in PRECISIONS[graph]:
            raise CheckpointError(f"{graph} precision {precision!r}: choose from {', '.join(PRECISIONS[graph])}")
    bundle = load_bundle_files(src)
    keep = ["lm_head"] if keep is None else keep
    for pattern in keep:
        try:
            re.compile(pattern)
        except re.error as err:
            raise CheckpointError(f"--keep {pattern!r}: not a regular expression ({err})") from None
    calib_files: list[Path] = []
    if vision == "int8":
        if calibration is None:
            raise CheckpointError(
                "vision int8 needs --calibration (a folder of images); "
                "leave --vision at fp32 to quantize the decoder only"
            )
        calib_files = calibration_images(Path(calibration))
    elif calibration is not None:
        log.warning("--calibration is used only with --vision int8; ignored")
    if not int8_forms or set(int8_forms) - set(FORM_NAMES):
        raise ValueError(f"int8_forms {int8_forms!r}: one or more of {', '.join(FORM_NAMES)}")
    _onnx_quantizer_ready(decoder)
    for pattern in keep if decoder != "fp32" else ():
        if not _matmul_nodes(src / "decoder.onnx", [pattern])[1]:
            log.warning("--keep %r matches no weight MatMul of the decoder graph; nothing kept for it", pattern)
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise CheckpointError(f"{out}: is the source bundle or inside it; write the quantized copy elsewhere")
    check_target(out, overwrite)

    manifest = bundle.manifest
    with staged_folder(out, overwrite) as tmp:
        for name in bundle.info.files:
            shutil.copyfile(src / name, tmp / name)
        if vision == "int8":
            _vision_int8(src / "vision.onnx", tmp / "vision.onnx", VisionCalibration(calib_files, bundle.image))
        elif vision == "fp16":
            _fp16(src / "vision.onnx", tmp / "vision.onnx", [])

        # int8 with a step graph: each graph in its fastest form, kept only if the two agree (see top)
        forms = int8_forms if decoder == "int8" and STEP_GRAPH in manifest["graphs"] else ("same",)
        for form, fallback in zip(forms, forms[1:] + (None,), strict=True):
            manifest = _write_decoders(src, tmp, bundle.manifest, vision, decoder, keep, calib_files, form, nbits)
            disagreement = _step_graph_disagreement(tmp, agreement) if fallback else None
            if disagreement is None or fallback is None:
                break
            log.warning(
                "int8: the %s decoder graph and the block-wise step graph differ by %.2g on the load "
                "check's probes (allowed %.2g); %s instead",
                FORM_NAMES[form],
                *disagreement,
                FORM_NAMES[fallback] + " decoder graph",
            )
        load_bundle_files(tmp)  # the new bundle verifies before it takes the target's place
    return out
