"""Grammar-constrained decoding of pointing answers (edge_inspect/vlm/grammar.py): every answer
parses, and greedy answers that were already valid do not change."""

import numpy as np
import pytest

from edge_inspect.config import CountCheck, PointCheck
from edge_inspect.sim import PartSpec, render_part
from edge_inspect.vlm import load_bundle
from edge_inspect.vlm.grammar import Constraint, Vocabulary, object_label
from edge_inspect.vlm.points import parse_points

from ..support.paths import DEMO_STUDENT

PROMPTS = ["Point to any surface defects.", "Point to the screws."]


@pytest.fixture(scope="module")
def student():
    return load_bundle(DEMO_STUDENT)


def _every_form(model) -> Vocabulary:
    """The grammar of every answer form (no bundle dialect)."""
    return Vocabulary(model.tokenizer, model.bundle.text.vocab_size, tuple(model.bundle.tokens.eos))


def _accepts(model, text: str, grammar=None) -> bool:
    grammar = grammar or _every_form(model).pointing(None)
    state = grammar.start
    for token in model.tokenizer.encode(text).ids:
        if token not in grammar.allowed(state):
            return False
        state = grammar.advance(state, token)
    return state[0] == "done"


def test_the_grammar_accepts_each_answer_form_and_refuses_what_is_out_of_range(student):
    for text in (
        '<points coords="1 1 190 230 2 803 219 3 209 799 4 1000 0">screw</points>',
        "There are none.",
        '<point x="61.5" y="40.0" alt="screw">screw</point>',
        '<points x1="1" y1="2.25" x2="100" y2="0" alt="dent">dent</points>',
    ):
        assert _accepts(student, text), text
        assert not parse_points(text).malformed
    for text in (
        '<points coords="1 1 190 230 3 803 219">screw</points>',  # index 3 after 1
        '<points coords="1 1 1001 230">screw</points>',  # x above 1000
        '<point x="100.5" y="1">screw</point>',  # above 100 %
        '<points x1="1" y1="2" x3="5" y3="6">s</points>',
        '<points coords="1 1 190 230">screw</points> and more',
    ):
        assert not _accepts(student, text), text


def test_the_molmo2_dialect_is_the_coords_form_with_three_digit_coordinates_and_the_object_label(student):
    assert student.vocabulary.dialect == "molmo2"
    assert object_label("Point to the screws.") == "screw"
    assert object_label("Point to any surface defects.") == "defect"
    assert object_label("Point to the scratches, spots and dents.") is None
    screws = student.vocabulary.pointing(None, "screw")
    for text in ('<points coords="1 1 190 230 2 803 219 3 209 799 4 1000 000">screw</points>', "There are none."):
        assert _accepts(student, text, screws), text
    for text in (
        '<points coords="1 1 190 230 2 803 219">defect</points>',  # another label
        '<points coords="1 1 190 23">screw</points>',  # two digits
        '<points coords="2 1 190 230">screw</points>',  # image 2
        '<point x="61.5" y="40.0">screw</point>',  # Molmo v1
    ):
        assert not _accepts(student, text, screws), text
    # The wrapper up to the first coordinate, and everything after the last point, is forced.
    constraint = Constraint(screws)
    constraint.advance(student.tokenizer.encode("<").ids[0])
    run = constraint.forced_run(96)
    assert student.tokenizer.decode(run) == 'points coords="1 1 '
    for token in student.tokenizer.encode('points coords="1 1 190 230">').ids:
        constraint.advance(token)
    run = constraint.forced_run(96)
    assert student.tokenizer.decode(run, skip_special_tokens=False) == "screw</points><|im_end|>"
    assert run[-1] == student.bundle.tokens.eos[0]


def test_every_state_closes_into_an_answer_that_parses(student):
    rng = np.random.default_rng(0)
    for grammar in (_every_form(student).pointing(3), student.vocabulary.pointing(3, "screw")):
        _closes(grammar, rng)


def _closes(grammar, rng):
    machine = grammar.machine
    for _ in range(200):  # random walks through the allowed tokens, cut anywhere, then closed
        state, text = grammar.start, ""
        for _ in range(int(rng.integers(0, 40))):
            allowed = grammar.allowed(state)
            if state[0] == "done":
                break
            token = int(rng.choice(allowed))
            state = grammar.advance(state, token)
            text += grammar.texts[token]
        answer = parse_points(text + machine.close_path(state))
        assert not answer.malformed, text
        assert answer.count <= 3
        assert grammar.close_cost(state) <= len(machine.close_path(state)) + 1


def _compare(model, seeds, max_new_tokens=96):
    same, changed = 0, []
    for seed in seeds:
        image = model.encode(render_part(seed).image, order="bgr")
        free = model.ask(image, ["Is the label present?"], PROMPTS, max_new_tokens, constrained=False)
        held = model.ask(image, ["Is the label present?"], PROMPTS, max_new_tokens, constrained=True)
        for before, after in zip(free.pointing, held.pointing, strict=True):
            assert not after.answer.malformed, after.text
            if before.text == after.text:
                same += 1
            else:
                changed.append((seed, before))
    return same, changed


@pytest.mark.parametrize("step_graph", [True, False])
def test_demo_student_answers_the_same_where_its_answers_were_valid(student, step_graph):
    model = student if step_graph else load_bundle(DEMO_STUDENT, step_graph=False)  # the decoder graph decodes
    assert not model.engine.step_graph or step_graph
    same, changed = _compare(model, range(700000, 700000 + (30 if step_graph else 10)))
    assert all(before.answer.malformed for _, before in changed), changed
    assert same >= 1


def test_tiny_random_molmo2_always_answers_in_the_grammar(tiny_bundle):
    model = load_bundle(tiny_bundle)
    same, changed = _compare(model, range(3), max_new_tokens=40)
    assert changed, "a random model's free text is not expected to be a valid answer"
    assert all(before.answer.malformed for _, before in changed), changed
    single = model.point(model.encode(render_part(0).image, order="bgr"), PROMPTS[0], 40)
    assert not single.answer.malformed


def test_one_prompt_alone_and_in_a_batch_decode_the_same_constrained_answer(student):
    image = student.encode(render_part(5, spec=PartSpec(defects=6)).image, order="bgr")
    batched = student.ask(image, ["Is the label present?"], PROMPTS, 96, max_points=[3, None])
    alone = [student.point(image, p, 96, max_points=c) for p, c in zip(PROMPTS, [3, None], strict=True)]
    assert [p.text for p in batched.pointing] == [p.text for p in alone]


def test_max_points_stops_a_crowded_answer_and_it_still_parses(student):
    counts = []
    for seed in range(3):
        image = student.encode(render_part(seed, spec=PartSpec(defects=8)).image, order="bgr")
        free = student.point(image, PROMPTS[0], 96, constrained=False)
        capped = student.point(image, PROMPTS[0], 96, max_points=1)
        assert not capped.answer.malformed, capped.text
        assert capped.answer.count == min(1, free.answer.count) or free.answer.malformed
        assert capped.timings_ms["tokens"] <= free.timings_ms["tokens"]
        counts.append((free.answer.count, capped.answer.count, free.timings_ms["tokens"], capped.timings_ms["tokens"]))
    assert any(f > c for f, c, _, _ in counts), counts


def test_decode_cap_is_the_first_failing_count_plus_a_margin_without_an_roi():
    count = CountCheck(name="screws", kind="count", prompt="Point to the screws.", expected=4)
    assert count.decode_cap() == 4 + 1 + 2
    point = PointCheck(name="defects", kind="point", prompt="p", max=0, roi=[(0, 0), (1, 0), (1, 1)])
    assert point.decode_cap() is None  # points outside an roi do not count: no default cap
    assert PointCheck(name="d", kind="point", prompt="p", max=1, max_points=5).decode_cap() == 5
    with pytest.raises(ValueError, match="more than could pass"):
        CountCheck(name="screws", kind="count", prompt="p", expected=4, max_points=4)


def test_yes_no_grammar_is_the_yes_and_no_tokens(student):
    tokens = student.bundle.tokens
    assert sorted(Vocabulary.yes_no(student.vocabulary, tokens.yes, tokens.no)) == sorted({*tokens.yes, *tokens.no})
