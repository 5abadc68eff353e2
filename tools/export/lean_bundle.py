"""``python -m tools.export lean``: a copy of an fp32 bundle with the lean decoder graph and the
decode-step graph beside it, each checked against the graph it replaces before the copy takes its place."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

from edge_inspect.vlm.bundle import MANIFEST, load_bundle_files, sha256_file
from edge_inspect.vlm.manifest import parse_manifest
from tools.molmo2.errors import CheckpointError

from .lean_decoder import TOLERANCE, LeanUnsupported, graph_from_spec, max_difference, spec_from_traced
from .onnx_bundle import file_entries, graph_io
from .staging import check_target, staged_folder
from .step_decoder import STEP_FILE, WEIGHTS_FILE, DecoderBuilder, spec_from_lean, write_decoders


def lean_bundle(
    src: str | Path, out: str | Path, overwrite: bool = False, build_decoder: DecoderBuilder = graph_from_spec
) -> tuple[Path, float]:
    """A copy of fp32 bundle ``src`` with the lean decoder graph and, beside it, the decode-step
    graph (step_decoder.py), both checked before the copy takes ``out``'s place: the lean graph
    computes the source decoder's outputs (≤ TOLERANCE), the step graph the lean graph's. The source
    may have a traced decoder (exported before the lean graph) or a lean one without a step graph.
    ``build_decoder(spec, opset)``: writes the lean graph (lean_decoder.graph_from_spec)."""
    src, out = Path(src), Path(out)
    bundle = load_bundle_files(src)
    manifest = bundle.manifest
    if manifest["graphs"]["decoder"].get("precision", "fp32") != "fp32":
        raise CheckpointError(
            f"{src}: the decoder is {manifest['graphs']['decoder']['precision']}; "
            "make the lean copy of the fp32 bundle, then quantize that"
        )
    check_target(out, overwrite)
    if out.resolve() == src.resolve():
        raise CheckpointError(f"{out}: is the source bundle; write the lean copy elsewhere")
    source_decoder = src / bundle.info.graphs["decoder"].file
    try:
        lean = onnx.load(str(source_decoder), load_external_data=False).producer_name == "edge-inspect lean decoder"
        spec = spec_from_lean(source_decoder) if lean else spec_from_traced(source_decoder)
    except LeanUnsupported as err:
        raise CheckpointError(str(err)) from None
    decoder_files = {"decoder.onnx", "decoder.onnx.data", STEP_FILE, WEIGHTS_FILE}
    with staged_folder(out, overwrite) as tmp:
        for name in bundle.info.files:
            if name not in decoder_files:
                shutil.copyfile(src / name, tmp / name)
        step_difference = write_decoders(
            spec, tmp, int(manifest.get("opset", 18)), bundle.text.max_positions, build_decoder
        )
        difference = max_difference(source_decoder, tmp / "decoder.onnx")
        if difference > TOLERANCE:
            raise CheckpointError(
                f"{src}: the lean decoder differs from the source one by {difference:.2e} "
                f"(> {TOLERANCE:g}); keeping the source graph"
            )
        manifest = dict(manifest, files=file_entries(tmp))
        manifest["graphs"] = {
            name: dict(manifest["graphs"].get(name, {}), file=f"{name}.onnx", inputs=io[0], outputs=io[1])
            for name, io in graph_io(tmp).items()
        }
        manifest["lean_decoder"] = {
            "source_manifest_sha256": sha256_file(src / MANIFEST),
            "max_difference": difference,
            "step_max_difference": step_difference,
        }
        (tmp / MANIFEST).write_text(parse_manifest(manifest).to_json(), encoding="utf-8")
        load_bundle_files(tmp)
    return out, difference
