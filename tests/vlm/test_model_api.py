"""The small model API: yes/no scoring from one forward pass, pointing, generation, provider choice."""

import numpy as np
import pytest

from edge_inspect.vlm import load_bundle
from edge_inspect.vlm.backends import choose_providers


@pytest.fixture(scope="module")
def model(tiny_bundle):
    return load_bundle(tiny_bundle)


def test_yes_no_is_softmax_of_prefill_logits(model):
    image = model.encode(np.full((100, 120, 3), 128, np.uint8))
    answer = model.ask_yes_no(image, "Is the label present?")
    step, _ = model.engine.prefill(image, "Is the label present?")
    z = step.logits.astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    yes = p[list(model.bundle.tokens.yes)].sum()
    no = p[list(model.bundle.tokens.no)].sum()
    assert answer.p_yes == pytest.approx(yes / (yes + no))
    assert answer.mass == pytest.approx(yes + no)
    assert answer.margin == pytest.approx(abs(2 * answer.p_yes - 1))
    assert answer.answer == (yes >= no)


def test_yes_no_scoring_rule(model):
    logits = np.zeros(model.bundle.text.vocab_size, np.float32)
    logits[model.bundle.tokens.yes[0]] = 5.0
    p_yes, mass = model.engine.yes_no(logits)
    assert p_yes > 0.9 and 0 < mass <= 1
    logits[model.bundle.tokens.no[0]] = 5.0
    p_yes, _ = model.engine.yes_no(logits)
    assert p_yes == pytest.approx(
        len(model.bundle.tokens.yes) / (len(model.bundle.tokens.yes) + len(model.bundle.tokens.no)), abs=0.2
    )


def test_yes_no_uncertain_margin(model):
    from edge_inspect.vlm import YesNo

    assert YesNo(answer=True, p_yes=0.55, margin=0.1, mass=0.9).uncertain(0.2)
    assert not YesNo(answer=True, p_yes=0.95, margin=0.9, mass=0.9).uncertain(0.2)


def test_generate_and_point_stop_at_cap(model):
    image = model.encode(np.random.default_rng(0).integers(0, 256, (80, 90, 3), dtype=np.uint8), order="bgr")
    gen = model.generate(image, "Point to the screws.", max_new_tokens=5)
    assert 1 <= len(gen.token_ids) <= 5
    if len(gen.token_ids) < 5:
        assert gen.token_ids[-1] in model.bundle.tokens.eos
    pointing = model.point(image, "Point to the screws.", max_new_tokens=5, constrained=False)
    assert pointing.text == gen.text
    assert pointing.answer.count == len(pointing.answer.points)


def test_greedy_stops_on_eos(model):
    from edge_inspect.vlm.generate import Step

    eos = model.bundle.tokens.eos[0]
    logits = np.zeros(model.bundle.text.vocab_size, np.float32)
    logits[eos] = 10.0
    tokens, _ = model.engine.greedy(Step(logits=logits, cache=model.engine.empty_cache()), 10)
    assert tokens == [eos]


def test_timings_are_reported(model):
    image = model.encode(np.zeros((64, 64, 3), np.uint8))
    assert {"preprocess_ms", "vision_ms", "image_prefill_ms"} <= set(image.timings_ms)


def test_provider_choice():
    assert choose_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == "CUDAExecutionProvider"
    assert choose_providers(
        ["tensorrt", "cuda"], ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    ) == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="not available"):
        choose_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="unknown provider"):
        choose_providers("gpu", ["CPUExecutionProvider"])
