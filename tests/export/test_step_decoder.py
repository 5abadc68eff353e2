"""The decode-step graph (tools/export/step_decoder.py, edge_inspect/vlm/step_decode.py): the same
tokens and logits as the decoder graph, weights stored once, refused at load when it disagrees,
and added to older bundles by `tools.export lean`. Real ONNX Runtime sessions throughout."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_inspect.sim import render_part
from edge_inspect.vlm import load_bundle

from ..support.paths import DEMO_STUDENT, REPO_ROOT

PROMPTS = ["Point to the screws.", "Point to any scratches.", "Point to the empty screw holes."]


def _max_difference(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> float:
    return max(
        (float(np.abs(x - y).max()) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)),
        default=0.0,
    )


def _decode_both(path: Path, frame: np.ndarray, prompts: list[str], max_new: int, stop: tuple[int, ...] | None = None):
    """Tokens and logits of greedy_batch through the step graph and through the decoder graph."""
    fast, slow = load_bundle(path), load_bundle(path, step_graph=False)
    assert fast.engine.step_graph, "the bundle's decode-step graph was not used"
    assert not slow.engine.step_graph
    out = []
    for model in (fast, slow):
        batch, _ = model.engine.prefill_batch(model.encode(frame, order="bgr"), prompts)
        out.append(model.engine.greedy_batch(batch, max_new, stop_ids=stop))
    return out


def test_step_graph_decodes_what_the_decoder_graph_decodes(tiny_bundle):
    frame = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    prompts = ["Point to the screws.", "Where is the label on this part?", "Count."]
    (tokens, logits), (ref_tokens, ref_logits) = _decode_both(tiny_bundle, frame, prompts, 14, stop=())
    assert tokens == ref_tokens and all(len(t) == 14 for t in tokens)
    assert _max_difference(logits, ref_logits) <= 1e-4
    # rows that stop at different steps: a token of row 1 becomes a stop token
    stop = ref_tokens[1][4]
    expected = [t[: t.index(stop) + 1] if stop in t else t for t in ref_tokens]
    assert len({len(t) for t in expected}) > 1
    (tokens, logits), (ref_tokens, ref_logits) = _decode_both(tiny_bundle, frame, prompts, 14, stop=(stop,))
    assert tokens == ref_tokens == expected
    assert _max_difference(logits, ref_logits) <= 1e-4


def test_step_graph_matches_the_reference_loop_one_row(tiny_bundle):
    model = load_bundle(tiny_bundle)
    frame = np.random.default_rng(4).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    step, _ = model.engine.prefill(model.encode(frame, order="bgr"), "Point to the screws.")
    tokens, logits = model.engine.greedy(step, 12, stop_ids=())
    ref_tokens, ref_logits = model.engine.greedy_stepwise(step, 12, stop_ids=())
    assert tokens == ref_tokens
    assert _max_difference([logits], [ref_logits]) <= 1e-4


@pytest.mark.skipif(
    not (DEMO_STUDENT / "decoder_step.onnx").is_file(), reason="the shipped bundle has no decode-step graph"
)
def test_demo_student_answers_the_same_through_the_step_graph():
    for seed in (900_001, 900_002):
        frame = render_part(seed).image
        (tokens, logits), (ref_tokens, ref_logits) = _decode_both(DEMO_STUDENT, frame, PROMPTS, 96)
        assert tokens == ref_tokens
        assert _max_difference(logits, ref_logits) <= 1e-4


def test_export_stores_the_decoder_weights_once(tiny_bundle):
    step = onnx.load(str(tiny_bundle / "decoder_step.onnx"), load_external_data=False)
    inline = [
        t.name
        for t in step.graph.initializer
        if t.data_location != onnx.TensorProto.EXTERNAL
        and len(t.raw_data) > 4096
        and not t.name.startswith(("cos_cache", "sin_cache"))
    ]
    external = {e.value for t in step.graph.initializer for e in t.external_data if e.key == "location"}
    assert inline == [] and external == {"decoder.weights"}
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["graphs"]["decoder_step"]["precision"] == "fp32"


def _rewrite_files(bundle: Path) -> None:
    from tools.export.onnx_bundle import file_entries

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = file_entries(bundle)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


def test_a_step_graph_that_computes_otherwise_is_not_used(bundle_copy, caplog):
    from tools.export.step_decoder import build_step_graph, spec_from_lean

    spec = spec_from_lean(bundle_copy / "decoder.onnx")
    spec.layers[0].k_norm = spec.layers[0].k_norm * 1.05
    onnx.save_model(build_step_graph(spec, 512), str(bundle_copy / "decoder_step.onnx"))
    _rewrite_files(bundle_copy)
    with caplog.at_level(logging.WARNING):
        model = load_bundle(bundle_copy)
    assert not model.engine.step_graph
    assert "decode-step graph differs from the decoder graph" in caplog.text


def test_lean_adds_the_step_graph_to_a_bundle_without_one(tiny_bundle, tmp_path):
    """A bundle from before the step graph (lean decoder, weights inline): `tools.export lean` writes
    a copy with both graphs, which answers exactly as the original."""
    old = Path(shutil.copytree(tiny_bundle, tmp_path / "old"))
    decoder = onnx.load(str(old / "decoder.onnx"))  # with its weights
    (old / "decoder_step.onnx").unlink()
    (old / "decoder.weights").unlink()
    onnx.save_model(decoder, str(old / "decoder.onnx"))
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["graphs"]["decoder_step"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    _rewrite_files(old)
    assert not load_bundle(old).engine.step_graph

    new = tmp_path / "new"
    result = subprocess.run(
        [sys.executable, "-m", "tools.export", "lean", "--bundle", str(old), "--out", str(new)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((new / "manifest.json").read_text())["lean_decoder"]["step_max_difference"] <= 1e-4
    a, b = load_bundle(old), load_bundle(new)
    assert b.engine.step_graph
    frame = np.random.default_rng(5).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    results = []
    for model in (a, b):
        batch, _ = model.engine.prefill_batch(model.encode(frame, order="bgr"), PROMPTS)
        results.append(model.engine.greedy_batch(batch, 10, stop_ids=()))
    assert results[0][0] == results[1][0]
    assert _max_difference(results[0][1], results[1][1]) <= 1e-4


def test_a_step_graph_the_runtime_cannot_bind_is_not_used(bundle_copy, caplog):
    """A decoder_step entry whose graph has other inputs (here the decoder graph itself) is left out
    at load with a warning naming the file; the bundle decodes with the decoder graph."""
    shutil.copyfile(bundle_copy / "decoder.onnx", bundle_copy / "decoder_step.onnx")
    _rewrite_files(bundle_copy)
    with caplog.at_level(logging.WARNING):
        model = load_bundle(bundle_copy)
    assert not model.engine.step_graph
    assert "decoder_step.onnx: not used" in caplog.text
    step, _ = model.engine.prefill(model.encode(np.zeros((64, 64, 3), np.uint8)), "Point to the screws.")
    assert model.engine.greedy(step, 4, stop_ids=())[0] == model.engine.greedy_stepwise(step, 4, stop_ids=())[0]


def test_step_graph_decodes_up_to_the_last_position_like_the_decoder_graph(tiny_bundle):
    """Near max_positions the step graph decodes exactly as far as the decoder graph: the last token
    needs no cache row, a row that stops early never gets there, and going past fails the same way."""
    import dataclasses

    from edge_inspect.vlm.bundle import load_bundle_files
    from edge_inspect.vlm.model import VisionLanguageModel

    frame = np.random.default_rng(6).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    full = load_bundle(tiny_bundle)
    length = full.engine.prefill_batch(full.encode(frame, order="bgr"), PROMPTS[:2])[0].attend.shape[1]
    bundle = load_bundle_files(tiny_bundle)  # a model whose context ends 6 positions after the prompts
    short = dataclasses.replace(bundle, text=bundle.text.model_copy(update={"max_positions": length + 6}))
    fast, slow = VisionLanguageModel(short), VisionLanguageModel(short, step_graph=False)
    assert fast.engine.step_graph and not slow.engine.step_graph
    batches = []
    for model in (fast, slow):
        batch, _ = model.engine.prefill_batch(model.encode(frame, order="bgr"), PROMPTS[:2])
        batches.append(batch)
    assert batches[0].attend.shape[1] == length
    results = [
        model.engine.greedy_batch(batch, 7, stop_ids=()) for model, batch in zip((fast, slow), batches, strict=True)
    ]
    assert results[0][0] == results[1][0] and all(len(t) == 7 for t in results[0][0])
    assert _max_difference(results[0][1], results[1][1]) <= 1e-4
    stop = results[1][0][0][2]  # row 0 stops by its 3rd token; a limit of 50 is never reached by it
    rows = [
        model.engine.greedy_batch(batch, 50, stop_ids=(stop,), rows=[0])
        for model, batch in zip((fast, slow), batches, strict=True)
    ]
    assert rows[0][0] == rows[1][0] and len(rows[0][0][0]) == results[1][0][0].index(stop) + 1
    for model, batch in zip((fast, slow), batches, strict=True):
        with pytest.raises(
            ValueError, match=f"sequence of {length + 7} tokens exceeds the model's {length + 6} positions"
        ):
            model.engine.greedy_batch(batch, 8, stop_ids=())


def test_quantized_step_graph_is_checked_against_the_size_of_its_outputs(tiny_bundle, tmp_path, caplog):
    """An int8 bundle's two decoder graphs are quantized in different forms (per channel for the
    prefill, block-wise for steps) and round differently: the load check allows a share of the
    outputs' size — on every probe seed — and still refuses a step graph that computes something else."""
    from edge_inspect.vlm import step_decode
    from tools.export.quantize import _decoder_nbits, quantize_bundle
    from tools.export.step_decoder import build_step_graph, spec_from_lean

    int8 = quantize_bundle(tiny_bundle, tmp_path / "int8", decoder="int8")
    model = load_bundle(int8)
    assert model.engine.step_graph
    for seed in range(20):
        difference, scale = step_decode.difference_to_decoder(model.engine, seed)
        assert difference <= step_decode.allowed_difference(model.engine, scale), seed

    spec = spec_from_lean(tiny_bundle / "decoder.onnx")
    spec.lm_head = spec.lm_head * 1.5
    onnx.save_model(build_step_graph(spec, 512), str(tmp_path / "off.onnx"))
    _decoder_nbits(tmp_path / "off.onnx", int8 / "decoder_step.onnx", ["/lm_head/MatMul"], bits=8)
    _rewrite_files(int8)
    with caplog.at_level(logging.WARNING):
        assert not load_bundle(int8).engine.step_graph
    assert "decode-step graph differs from the decoder graph" in caplog.text


def test_decode_steps_run_on_one_thread_and_the_prefill_on_every_allowed_core(tiny_bundle):
    """A decode step is ~75 kernels of microseconds: a second thread costs more than it gives (and
    the core stays with the PLC link); vision and prefill are matrix products that use every core."""
    import os

    from edge_inspect.vlm.backends import DECODE_STEP_THREADS

    sessions = load_bundle(tiny_bundle).backend._sessions
    assert DECODE_STEP_THREADS == 1
    assert sessions["decoder_step"].get_session_options().intra_op_num_threads == DECODE_STEP_THREADS
    cores = len(os.sched_getaffinity(0))
    for graph in ("vision", "decoder"):
        assert sessions[graph].get_session_options().intra_op_num_threads == cores


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread CPU times come from Linux /proc")
def test_worker_threads_sleep_between_kernels_unless_spinning_is_asked_for(tiny_bundle):
    """Spinning workers speed the vision and prefill graphs up on idle cores and slow them down ~2x
    when another process wants a core, so it is off unless asked for. When asked for, the workers
    spin only while a Run lasts: an idle appliance must not burn a core between frames."""
    import os
    import time

    from edge_inspect.vlm.backends import SPIN_DURING_RUN

    def entry(model, key: str) -> set[str]:
        return {s.get_session_options().get_session_config_entry(key) for s in model.backend._sessions.values()}

    def cpu_seconds(threads: set[str]) -> float:
        """CPU time of these threads of this process (other tests' threads do not count)."""
        ticks = 0
        for tid in threads:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
            ticks += sum(int(x) for x in stat.rsplit(")", 1)[1].split()[11:13])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    quiet = load_bundle(tiny_bundle, threads=2)
    assert not SPIN_DURING_RUN and entry(quiet, "session.intra_op.allow_spinning") == {"0"}
    before = set(os.listdir("/proc/self/task"))
    spinning = load_bundle(tiny_bundle, threads=2, spin=True)
    assert entry(spinning, "session.intra_op.allow_spinning") == {"1"}
    assert entry(spinning, "session.force_spinning_stop") == {"1"}
    frame = render_part(3).image
    for _ in range(3):
        spinning.encode(frame)  # the vision and prefill graphs, two threads each
    workers = set(os.listdir("/proc/self/task")) - before  # the new sessions' worker threads
    assert workers
    cpu = cpu_seconds(workers)
    time.sleep(0.3)
    # without the forced stop the workers went on spinning for 70-90 ms of CPU in this time
    assert cpu_seconds(workers) - cpu < 0.03
    answers = [
        m.engine.greedy(m.engine.prefill(m.encode(frame), "Point to the screws.")[0], 8)[0] for m in (quiet, spinning)
    ]
    assert answers[0] == answers[1]


def test_int8_step_graph_beside_an_fp32_decoder_graph_is_checked_with_its_own_bound(tiny_bundle, tmp_path, caplog):
    """quantize's second int8 form keeps the decoder graph fp32: the load check then allows the step
    graph's quantization error (MIXED_AGREEMENT of the outputs' size, on every probe seed), and still
    refuses a step graph that computes something else."""
    from edge_inspect.vlm import step_decode
    from tools.export import quantize
    from tools.export.step_decoder import build_step_graph, spec_from_lean

    mixed = quantize.quantize_bundle(tiny_bundle, tmp_path / "mixed", decoder="int8", int8_forms=("fp32", "same"))
    model = load_bundle(mixed)
    assert model.engine.step_graph and model.engine.bundle.precision("decoder") == "fp32"
    for seed in range(20):
        difference, scale = step_decode.difference_to_decoder(model.engine, seed)
        assert step_decode.allowed_difference(model.engine, scale) == step_decode.MIXED_AGREEMENT * max(scale, 1.0)
        assert difference <= step_decode.allowed_difference(model.engine, scale), seed

    spec = spec_from_lean(tiny_bundle / "decoder.onnx")
    spec.lm_head = spec.lm_head * 1.5
    onnx.save_model(build_step_graph(spec, 512), str(tmp_path / "off.onnx"))
    quantize._decoder_nbits(tmp_path / "off.onnx", mixed / "decoder_step.onnx", ["/lm_head/MatMul"], bits=8)
    _rewrite_files(mixed)
    with caplog.at_level(logging.WARNING):
        assert not load_bundle(mixed).engine.step_graph
    assert "decode-step graph differs from the decoder graph" in caplog.text


@pytest.mark.skipif(
    not (DEMO_STUDENT / "decoder_step.onnx").is_file(), reason="the shipped bundle has no decode-step graph"
)
def test_load_check_probes_several_steps(tmp_path, caplog):
    """An int8 step graph with one layer's output projection × 1.2 beside the demo student's fp32
    decoder graph: within the bound on the first probe step (0.85 of it), outside on others (it
    decodes other screw points). The runtime probes as many steps as quantize does, so it refuses."""
    import copy

    from edge_inspect.vlm import step_decode
    from tools.export import quantize
    from tools.export.step_decoder import build_step_graph, spec_from_lean

    mixed = tmp_path / "mixed"
    shutil.copytree(DEMO_STUDENT, mixed)
    spec = copy.deepcopy(spec_from_lean(DEMO_STUDENT / "decoder.onnx"))
    spec.layers[1].o = spec.layers[1].o * 1.2
    onnx.save_model(
        build_step_graph(spec, load_bundle(DEMO_STUDENT).bundle.text.max_positions), str(tmp_path / "off.onnx")
    )
    quantize._decoder_nbits(tmp_path / "off.onnx", mixed / "decoder_step.onnx", ["/lm_head/MatMul"], bits=8)
    manifest = json.loads((mixed / "manifest.json").read_text())
    manifest["graphs"]["decoder_step"]["precision"] = "int8"
    (mixed / "manifest.json").write_text(json.dumps(manifest))
    _rewrite_files(mixed)
    with caplog.at_level(logging.WARNING):
        model = load_bundle(mixed)
    difference, scale = step_decode.difference_to_decoder(model.engine, 0)
    assert difference <= step_decode.allowed_difference(model.engine, scale)  # one probe would let it through
    assert not model.engine.step_graph
    assert "decode-step graph differs from the decoder graph" in caplog.text
