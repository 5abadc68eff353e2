"""The fast decode loop and the batched checks compute what the one-by-one reference path computes.

Reference path: ``Engine.prefill`` per prompt and ``Engine.greedy_stepwise`` (one embed-graph run and
one decoder run per token, K/V as numpy arrays in and out). Fast path: ``Engine.greedy`` /
``greedy_batch`` (I/O binding into preallocated K/V buffers, embedding table lookups) and
``prefill_batch`` / ``VisionLanguageModel.ask`` (all prompts of an image in one left-padded prefill,
pointing rows decoded together with per-row stop). Runs on the tiny exported bundle (random weights:
tiny top-1 margins, so token equality is a strict test) and on the bundled demo student (real answers).
"""

import numpy as np
import pytest

from edge_inspect.config import Recipe
from edge_inspect.inspection.inspector import Inspector
from edge_inspect.vlm import load_bundle
from edge_inspect.vlm.backends import run_into
from edge_inspect.vlm.generate import Batch

from ..support.paths import DEMO_STUDENT

TOLERANCE = 1e-4
QUESTIONS = ["Is the label present?", "Is the part clean?", "Is it upside down?"]
POINTS = ["Point to the screws.", "Point to any surface defects.", "Count the holes."]


@pytest.fixture(scope="module")
def tiny(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def student():
    return load_bundle(DEMO_STUDENT)


def _frame(h, w, seed=3):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _student_frame(seed):
    from edge_inspect.sim import render_part

    return render_part(seed).image


def _max_diff(a, b) -> float:
    return max((float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)), default=0.0)


def test_embedding_table_is_the_embed_graph(tiny):
    engine = tiny.engine
    assert engine.table is not None
    ids = np.array([[0, 5, engine.table.shape[0] - 1, 7]], dtype=np.int64)
    extra = np.random.default_rng(1).standard_normal((1, 4, engine.bundle.text.hidden_size)).astype(np.float32)
    graph = engine.backend.run("embed", {"input_ids": ids, "image_embeds": extra})["inputs_embeds"]
    assert np.array_equal(engine.table[ids] + extra, graph)


@pytest.mark.parametrize("h,w", [(100, 150), (300, 200)])
def test_fast_greedy_equals_stepwise(tiny, h, w):
    engine = tiny.engine
    for reuse in (True, False):
        image = tiny.encode(_frame(h, w), reuse_prefix=reuse)
        step, _ = engine.prefill(image, "Point to the screws.")
        ref_tokens, ref_logits = engine.greedy_stepwise(step, 24, stop_ids=())
        tokens, logits = engine.greedy(step, 24, stop_ids=())
        assert tokens == ref_tokens
        assert _max_diff(logits, ref_logits) <= TOLERANCE


def test_fast_greedy_from_empty_cache_and_zero_tokens(tiny):
    engine = tiny.engine
    step = engine.feed(np.array([engine.bundle.tokens.bos], dtype=np.int64), engine.empty_cache())
    tokens, logits = engine.greedy(step, 8, stop_ids=())
    ref_tokens, ref_logits = engine.greedy_stepwise(step, 8, stop_ids=())
    assert tokens == ref_tokens and _max_diff(logits, ref_logits) <= TOLERANCE
    assert engine.greedy(step, 0) == ([], [])


def test_backend_without_run_into_gets_the_fallback(tiny):
    class Plain:  # a backend offering only run(), like a third-party one
        def __init__(self, inner):
            self.inner = inner

        def run(self, graph, feeds):
            return self.inner.run(graph, feeds)

    engine = tiny.engine
    step = engine.feed(np.array([engine.bundle.tokens.bos, 5, 6], dtype=np.int64), engine.empty_cache())
    out = {"logits": np.empty((1, engine.bundle.text.vocab_size), np.float32)}
    for i in range(engine.num_layers):
        for kind in ("key", "value"):
            out[f"present_{kind}_{i}"] = np.empty(
                (1, engine.bundle.text.num_kv_heads, step.cache.length + 1, engine.bundle.text.head_dim), np.float32
            )
    feeds = {
        "inputs_embeds": engine.embed(np.array([7])),
        "position_ids": np.array([[step.cache.length]]),
        "attention_mask": np.zeros((1, 1, 1, step.cache.length + 1), np.float32),
    }
    for i in range(engine.num_layers):
        feeds[f"past_key_{i}"], feeds[f"past_value_{i}"] = step.cache.keys[i], step.cache.values[i]
    run_into(Plain(engine.backend), "decoder", feeds, out)
    ref = engine.backend.run("decoder", feeds)
    assert np.array_equal(out["logits"], ref["logits"])


@pytest.mark.parametrize("reuse", [True, False])
def test_batched_prefill_equals_one_by_one(tiny, reuse):
    engine = tiny.engine
    image = tiny.encode(_frame(300, 200), reuse_prefix=reuse)
    prompts = QUESTIONS + POINTS
    batch, _ = engine.prefill_batch(image, prompts)
    assert batch.size == len(prompts)
    for row, prompt in enumerate(prompts):
        step, _ = engine.prefill(image, prompt)
        assert float(np.abs(batch.logits[row] - step.logits).max()) <= TOLERANCE
        assert engine.yes_no(batch.logits[row]) == pytest.approx(engine.yes_no(step.logits), abs=1e-5)


def test_batched_decode_equals_one_by_one_with_per_row_stop(tiny):
    engine = tiny.engine
    image = tiny.encode(_frame(100, 150))
    batch, _ = engine.prefill_batch(image, POINTS)
    refs = [engine.greedy_stepwise(engine.prefill(image, p)[0], 20, stop_ids=()) for p in POINTS]
    # Make each row stop at a different step: its own 3rd/6th/10th reference token is a stop token.
    for stop_at in (3, 6, 10):
        stop = (refs[0][0][stop_at - 1],)
        tokens, logits = engine.greedy_batch(batch, 20, stop_ids=stop)
        for row, (ref_tokens, ref_logits) in enumerate(refs):
            expected = []
            for t in ref_tokens:
                expected.append(t)
                if t in stop:
                    break
            assert tokens[row] == expected
            assert _max_diff(logits[row], ref_logits[: len(expected)]) <= TOLERANCE
    tokens, _ = engine.greedy_batch(batch, 20, stop_ids=(), rows=[2])
    assert tokens[0] == [] and tokens[1] == [] and tokens[2] == refs[2][0]


def test_batch_from_step_round_trip(tiny):
    engine = tiny.engine
    step, _ = engine.prefill(tiny.encode(_frame(100, 150)), "Is the label present?")
    batch = Batch.from_step(step)
    assert batch.size == 1 and batch.attend.all() and batch.positions[0] == step.cache.length


def test_model_ask_equals_single_calls_on_the_student(student):
    for seed in (0, 1, 2):
        image = student.encode(_student_frame(seed), order="bgr")
        questions = ["Is the label present?"]
        prompts = ["Point to any surface defects.", "Point to the screws."]
        answers = student.ask(image, questions, prompts, max_new_tokens=96)
        alone = student.ask_yes_no(image, questions[0])
        assert answers.yes_no[0].answer == alone.answer
        assert answers.yes_no[0].p_yes == pytest.approx(alone.p_yes, abs=1e-5)
        for prompt, got in zip(prompts, answers.pointing, strict=True):
            ref = student.point(image, prompt, max_new_tokens=96)
            assert got.text == ref.text
            assert got.answer == ref.answer
        assert answers.timings_ms["tokens"] == sum(p.timings_ms["tokens"] for p in answers.pointing)


def test_inspector_batched_equals_one_by_one_on_the_student(student):
    from edge_inspect.commands.bench import DEMO_RECIPE
    from edge_inspect.inspection.checks import judge_points, judge_qa

    recipe = Recipe.model_validate(DEMO_RECIPE)
    inspector = Inspector(student)
    for seed in (0, 5):
        frame = _student_frame(seed)
        result = inspector.run(frame, recipe)
        image = student.encode(frame, order="bgr")
        for check, outcome in zip(recipe.checks, result.outcomes, strict=True):
            if check.kind == "qa":
                a = student.ask_yes_no(image, check.question)
                ref = judge_qa(check, a.p_yes, a.margin, mass=a.mass)
            else:
                p = student.point(image, check.prompt, inspector.max_new_tokens)
                ref = judge_points(check, [(q.x, q.y) for q in p.answer.points], p.answer.malformed, p.text)
            assert (outcome.name, outcome.status, outcome.reason) == (ref.name, ref.status, ref.reason)
        assert result.timings_ms["decode_tokens"] > 0


def test_backend_limited_to_one_row_answers_one_by_one(tiny_bundle):
    from edge_inspect.vlm.bundle import load_bundle_files
    from edge_inspect.vlm.model import VisionLanguageModel

    model = load_bundle(tiny_bundle)
    batched = model.ask(model.encode(_frame(100, 150)), QUESTIONS[:2], POINTS[:2], max_new_tokens=8)
    # as TensorRT engines built with a one-row decoder profile
    one_row = VisionLanguageModel(load_bundle_files(tiny_bundle), max_batch=1)
    alone = one_row.ask(one_row.encode(_frame(100, 150)), QUESTIONS[:2], POINTS[:2], max_new_tokens=8)
    assert [a.answer for a in alone.yes_no] == [a.answer for a in batched.yes_no]
    assert [p.text for p in alone.pointing] == [p.text for p in batched.pointing]


def test_trt_decoder_profile_takes_a_batch_of_checks(tiny_bundle):
    pytest.importorskip("onnx")
    from edge_inspect.vlm.bundle import load_bundle_files
    from tools.export.trt import MAX_BATCH, profiles

    decoder = profiles(load_bundle_files(tiny_bundle))["decoder"]
    assert all(hi[0] == MAX_BATCH and lo[0] == 1 for lo, _, hi in decoder.values())


def test_bench_recommends_the_fastest_variant_that_passed_verify(capsys):
    from edge_inspect.commands.bench import recommend

    def row(name, p50, passed):
        r = {"bundle": name, "inspection_ms": {"p50": p50}}
        if passed is not None:
            r["verify"] = {"passed": passed}
        return r

    assert recommend([row("fp32", 100, None), row("int8", 80, False), row("int4", 90, True)]) == "int4"
    assert recommend([row("fp32", 100, None), row("int8", 80, False), row("int4", 105, True)]) == "fp32"
    assert "keep full precision" in capsys.readouterr().out


def test_bench_compares_bundles_at_the_runtimes_decode_step_threads(capsys):
    """`bench --step-threads 2,1`: the reference at two threads is not what a variant at one thread
    is judged against."""
    from edge_inspect.commands.bench import recommend

    def row(name, p50, threads, passed=None):
        r = {"bundle": name, "inspection_ms": {"p50": p50}, "step_threads": threads}
        if passed is not None:
            r["verify"] = {"passed": passed}
        return r

    rows = [row("fp32", 100, 2), row("fp32", 70, 1), row("int8", 90, 2, True), row("int8", 75, 1, True)]
    assert recommend(rows) == "fp32"
    assert "keep full precision" in capsys.readouterr().out
    rows[3]["inspection_ms"]["p50"] = 60
    assert recommend(rows) == "int8"
    assert "(1.17x); compared at 1 decode-step thread(s), spinning off" in capsys.readouterr().out


def test_bench_compares_bundles_at_the_runtimes_spinning_setting(capsys):
    """`bench --spin on,off`: a variant with spinning on is not judged against the reference with it off."""
    from edge_inspect.commands.bench import recommend

    def row(name, p50, spin, passed=None):
        r = {"bundle": name, "inspection_ms": {"p50": p50}, "step_threads": 1, "spin": spin}
        if passed is not None:
            r["verify"] = {"passed": passed}
        return r

    rows = [row("fp32", 100, True), row("fp32", 110, False), row("int8", 95, True, True), row("int8", 112, False, True)]
    assert recommend(rows) == "fp32"
    assert "keep full precision; compared at 1 decode-step thread(s), spinning off" in capsys.readouterr().out
    assert recommend(rows[:1] + rows[2:3]) == "int8"  # one setting measured: compared as it is
    assert "compared at" not in capsys.readouterr().out


@pytest.mark.parametrize("step_graph", [False, True])
def test_threads_decoding_with_one_model_get_what_each_gets_alone(tiny_bundle, step_graph):
    """Two threads decoding with the same loaded model at once (the decoder graph's I/O binding and
    the step graph's buffers are each thread's own)."""
    import threading

    model = load_bundle(tiny_bundle, step_graph=step_graph)
    unused = model.backend.unused_graphs.get("decoder_step")
    if step_graph and unused:  # Python 3.10's onnxruntime (1.23) cannot load it; 3.11's suite runs this case
        pytest.skip(f"the step graph is not used here: {unused}")
    assert model.engine.step_graph == step_graph  # the tiny bundle has a step graph; False: the decoder graph decodes
    jobs = [(_frame(96, 128, seed), POINTS[: 1 + seed % 3]) for seed in range(4)]
    batches = [model.engine.prefill_batch(model.encode(frame), prompts)[0] for frame, prompts in jobs]
    alone = [model.engine.greedy_batch(batch, 40, stop_ids=()) for batch in batches]
    problems = []

    def decode(i: int) -> None:
        try:
            for _ in range(3):
                tokens, logits = model.engine.greedy_batch(batches[i], 40, stop_ids=())
                if tokens != alone[i][0] or any(_max_diff(a, b) > 0 for a, b in zip(logits, alone[i][1], strict=True)):
                    problems.append(f"job {i}: other tokens or logits")
        except Exception as err:  # noqa: BLE001 - reported below
            problems.append(f"job {i}: {err}")

    threads = [threading.Thread(target=decode, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
