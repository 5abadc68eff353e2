"""Jump-forward decoding (edge_inspect/vlm/step_decode.py): the tokens a pointing grammar forces are
appended without sampling and fed in one run of the step graph. The answers are those of
constrained decoding one token per run, in fewer runs."""

import numpy as np
import pytest

from edge_inspect.sim import PartSpec, render_part
from edge_inspect.vlm import load_bundle
from edge_inspect.vlm.step_decode import takes_blocks

from ..support.paths import DEMO_STUDENT

PROMPTS = ["Point to any surface defects.", "Point to the screws."]


def _with_step_graph(model):
    if not model.engine.step_graph:  # Python 3.10's newest onnxruntime cannot run it: no jump-forward
        pytest.skip(f"this onnxruntime does not run the step graph: {model.backend.unused_graphs}")
    return model


@pytest.fixture(scope="module")
def student():
    return _with_step_graph(load_bundle(DEMO_STUDENT))


@pytest.fixture(scope="module")
def student_int8(tmp_path_factory):
    pytest.importorskip("onnx", reason="quantizing needs the export toolchain ('export' extra)")
    from tools.export.quantize import quantize_bundle

    path = quantize_bundle(DEMO_STUDENT, tmp_path_factory.mktemp("int8") / "int8", decoder="int8")
    return _with_step_graph(load_bundle(path))


def _answers(model, seeds, jump: bool, single: bool = False, max_new_tokens=96):
    """Pointing answers (text) and decode runs per part, with or without jump-forward (the engine's
    switch, as the bench turns it)."""
    engine = model.engine
    saved = engine.jump_forward
    engine.jump_forward = jump
    texts, runs = [], engine.decode_runs
    try:
        for seed in seeds:
            part = render_part(seed, spec=PartSpec(defects=int(seed % 4))) if seed % 3 == 0 else render_part(seed)
            image = model.encode(part.image, order="bgr")
            if single:
                texts += [model.point(image, p, max_new_tokens).text for p in PROMPTS]
            else:
                answers = model.ask(image, ["Is the label present?"], PROMPTS, max_new_tokens)
                texts += [p.text for p in answers.pointing]
    finally:
        engine.jump_forward = saved
    return texts, (engine.decode_runs - runs) / len(seeds)


def test_the_demo_bundle_step_graph_takes_blocks_of_tokens(student):
    assert student.engine.step_graph and student.engine.step_blocks and takes_blocks(student.backend)

    class OneToken:
        def input_shape(self, graph, name):
            return ["batch", 1, 256]

    assert not takes_blocks(OneToken()) and not takes_blocks(object())


@pytest.mark.parametrize("single", [False, True], ids=["batched", "single"])
def test_demo_student_answers_the_same_with_jump_forward_in_fewer_runs(student, single):
    seeds = range(710000, 710000 + (40 if not single else 15))
    plain, plain_runs = _answers(student, seeds, jump=False, single=single)
    jumped, jumped_runs = _answers(student, seeds, jump=True, single=single)
    assert jumped == plain
    assert any(t.startswith("<points") for t in plain) and "There are none." in plain
    assert jumped_runs <= 0.6 * plain_runs, (plain_runs, jumped_runs)


def test_int8_step_graph_answers_the_same_with_jump_forward(student_int8):
    """A quantized step graph rounds a block's activations unlike one token's: it is fed the forced
    tokens one run each (the same answers; the forced tokens that end an answer save their runs)."""
    assert student_int8.engine.step_graph and not student_int8.engine.step_blocks
    seeds = range(720000, 720030)
    plain, plain_runs = _answers(student_int8, seeds, jump=False)
    jumped, jumped_runs = _answers(student_int8, seeds, jump=True)
    assert jumped == plain and jumped_runs < plain_runs


def test_a_step_graph_of_one_token_per_row_feeds_the_forced_tokens_one_run_each(student):
    """What an older bundle's step graph does (no tokens dimension): the same answers; only the forced
    tokens that end an answer save their runs."""
    seeds = range(730000, 730012)
    one_token = _with_step_graph(load_bundle(DEMO_STUDENT, step_blocks=False))
    assert not one_token.engine.step_blocks
    plain, plain_runs = _answers(student, seeds, jump=False)
    tokenwise, tokenwise_runs = _answers(one_token, seeds, jump=True)
    assert tokenwise == plain
    assert tokenwise_runs < plain_runs


def test_tiny_random_molmo2_answers_the_same_with_jump_forward(tiny_bundle):
    model = _with_step_graph(load_bundle(tiny_bundle))
    one_token = load_bundle(tiny_bundle, step_blocks=False)
    assert model.engine.step_blocks and not one_token.engine.step_blocks
    seeds = range(6)
    for single in (False, True):
        plain, _ = _answers(model, seeds, jump=False, single=single, max_new_tokens=40)
        assert _answers(model, seeds, jump=True, single=single, max_new_tokens=40)[0] == plain
        assert _answers(one_token, seeds, jump=True, single=single, max_new_tokens=40)[0] == plain


def test_forced_tokens_have_no_logits_and_the_others_keep_theirs(student):
    image = student.encode(render_part(3).image, order="bgr")
    step, _ = student.engine.prefill(image, PROMPTS[1])
    student.engine.jump_forward = True
    tokens, logits = student.engine.greedy(step, 96, constraint=student.point_constraint(None, PROMPTS[1]))
    student.engine.jump_forward = False
    plain_tokens, plain_logits = student.engine.greedy(step, 96, constraint=student.point_constraint(None, PROMPTS[1]))
    student.engine.jump_forward = True
    assert tokens == plain_tokens and len(logits) == len(tokens)
    sampled = [i for i, row in enumerate(logits) if not np.isnan(row).any()]
    assert 0 < len(sampled) < len(tokens)
    for i in sampled:
        np.testing.assert_allclose(logits[i], plain_logits[i], atol=1e-4)


def test_bench_measures_with_and_without_jump_forward_side_by_side(student, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    args = [str(DEMO_STUDENT), "--runs", "2", "--warmup", "1", "--frames", "2", "--json", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "edge_inspect.cli", "bench", *args, "--jump-forward", "off,on", "--interleave"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    off, on = [r for r in json.loads(out.read_text())["rows"] if "inspection_ms" in r]
    assert (off["jump_forward"], on["jump_forward"]) == (False, True)
    assert 0 < on["steps_per_answer"] <= 0.6 * off["steps_per_answer"]
    assert " st/ans " in result.stdout
