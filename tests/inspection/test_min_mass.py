"""A yes/no check whose probability mass on the yes/no tokens is below ``min_mass`` is uncertain:
the model did not take the question as a yes/no question, however large its margin. The mass is
logged with the check and shown in the review detail."""

import pytest
from pydantic import ValidationError

from edge_inspect.config import QACheck, Recipe
from edge_inspect.inspection.checks import judge_qa

from ..support.paths import DEMO_STUDENT


def _qa(**kw) -> QACheck:
    return QACheck.model_validate(
        {"name": "label", "kind": "qa", "question": "Is the label present?", "expect": "yes", **kw}
    )


def test_low_mass_is_uncertain_whatever_the_margin():
    check = _qa()
    assert check.min_mass == 0.5
    sure = judge_qa(check, p_yes=0.99, margin=0.98, mass=0.9)
    assert sure.status == "pass" and sure.mass == 0.9 and not sure.reason.startswith("uncertain")
    noise = judge_qa(check, p_yes=0.99, margin=0.98, mass=0.001)
    assert noise.status == "fail" and noise.reason.startswith("uncertain: yes/no mass 0.00 below 0.50")
    assert judge_qa(_qa(on_uncertain="error"), 0.99, 0.98, mass=0.2).status == "error"
    assert judge_qa(_qa(min_mass=0.0), 0.99, 0.98, mass=0.001).status == "pass"  # switched off
    assert judge_qa(check, 0.99, 0.98).status == "pass"  # mass unknown: not judged on it


@pytest.mark.parametrize("value", [-0.1, 1.5, "lots"])
def test_min_mass_is_validated(value):
    with pytest.raises(ValidationError, match="min_mass"):
        _qa(min_mass=value)


def test_demo_bundle_mass_logged_and_off_vocabulary_question_uncertain(tmp_path):
    """Through the bundled student and the real log: the demo question carries its mass; a pointing
    prompt asked as a yes/no question has almost none and is uncertain (fail-safe)."""
    from edge_inspect.inspection.inspector import Inspector
    from edge_inspect.logbook import InspectionRecord, Store
    from edge_inspect.logbook.review import get_inspection
    from edge_inspect.sim import render_part
    from edge_inspect.vlm import load_bundle

    recipe = Recipe.model_validate(
        {
            "number": 1,
            "name": "qa",
            "checks": [
                {
                    "name": "label",
                    "kind": "qa",
                    "question": "Is the label present?",
                    "expect": "yes",
                    "min_margin": 0.0,
                },
                {"name": "odd", "kind": "qa", "question": "Point to the screws.", "expect": "yes", "min_margin": 0.0},
            ],
        }
    )
    frame = render_part(2).image  # label present
    result = Inspector(load_bundle(DEMO_STUDENT)).run(frame, recipe)
    label, odd = result.outcomes
    assert label.mass >= 0.5 and label.status == "pass", label
    assert odd.mass < 0.5 and odd.status == "fail" and "yes/no mass" in odd.reason, odd

    store = Store(tmp_path, save_pass_every=0)
    row_id = store.record(
        InspectionRecord(
            result_id=1,
            station="s",
            recipe=1,
            recipe_name="qa",
            part_id="P1",
            trigger="software",
            verdict=result.verdict,
            error="",
            outcomes=result.outcomes,
            timings_ms=result.timings_ms,
            model_sha256="m" * 64,
            config_sha256="c" * 64,
            rois=[None, None],
        ),
        frame,
    )
    checks = get_inspection(store, row_id)["checks"]
    store.close()
    assert [c["mass"] for c in checks] == pytest.approx([label.mass, odd.mass])
