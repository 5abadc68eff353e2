"""The recipe editor's saves change only what was changed (config/editing.py): untouched recipes and
checks keep their flow lists, quotes and comments byte for byte, defaults are not written out, and
every edit reads back as what was sent."""

from __future__ import annotations

import difflib

import yaml

from edge_inspect.config.editing import replace_recipes

FILE = """\
station:
  name: line-3   # the press line
recipes:
  # recipe 1: the plate
  - number: 1
    name: plate
    checks:
      - name: surface
        kind: point
        prompt: Point to any surface defects.
        max: 0                     # any defect fails the part
        roi: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]
      - name: screws
        kind: count
        prompt: Point to the screws.
        expected: 4
  - number: 2
    name: "cover"
    checks:
      - {name: label, kind: qa, question: "Is the label present?", expect: "yes"}
      - name: dents
        kind: point
        prompt: 'Point to any dents.'
        roi: [[0, 0], [0.5, 0], [0.5, 0.5]]   # the left half
        max: 1

triggers:
  recipe: 1
"""


def _as_editor_sends(text: str) -> list[dict]:
    """The recipes as the setup page sends them back: every field, defaults included (a worst case)."""
    from edge_inspect.config.recipes import Recipe

    return [Recipe.model_validate(r).model_dump(mode="json") for r in yaml.safe_load(text)["recipes"]]


def _changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_sending_everything_back_unchanged_changes_nothing():
    assert replace_recipes(FILE, _as_editor_sends(FILE)) == FILE


def test_one_rois_edit_changes_that_line_only():
    recipes = _as_editor_sends(FILE)
    recipes[1]["checks"][1]["roi"] = [[0.5, 0.0], [1.0, 0.0], [1.0, 0.5]]
    after = replace_recipes(FILE, recipes)
    assert _changed_lines(FILE, after) == [
        "-        roi: [[0, 0], [0.5, 0], [0.5, 0.5]]   # the left half",
        "+        roi: [[0.5, 0.0], [1.0, 0.0], [1.0, 0.5]]   # the left half",
    ]


def test_a_new_roi_a_changed_quoted_value_an_added_and_a_removed_check():
    recipes = _as_editor_sends(FILE)
    recipes[0]["checks"][1]["roi"] = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]  # no roi before: one line added
    recipes[1]["name"] = "cover plate"
    recipes[1]["checks"][0]["expect"] = "no"  # in a flow mapping: that mapping is rewritten
    recipes[0]["checks"].append({"name": "label", "kind": "qa", "question": "Label?", "expect": "yes",
                                 "min_margin": 0.2, "min_mass": 0.5, "on_uncertain": "fail"})  # fmt: skip
    del recipes[1]["checks"][1]
    after = replace_recipes(FILE, recipes)
    diff = _changed_lines(FILE, after)
    assert '+    name: "cover plate"' in diff  # the double quotes kept
    assert "+        roi: [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]" in diff
    added = [line for line in diff if line.startswith("+      - name: label") or "Label?" in line]
    assert added and not any("min_mass" in line or "min_margin" in line for line in diff)  # defaults not written
    assert "-        prompt: 'Point to any dents.'" in diff
    assert "# recipe 1: the plate" in after and "# the press line" in after and "# any defect fails" in after
    again = yaml.safe_load(after)["recipes"]
    assert again[1]["checks"][0]["expect"] == "no" and len(again[1]["checks"]) == 1 and len(again[0]["checks"]) == 3
    assert after.endswith("\ntriggers:\n  recipe: 1\n")


def test_a_new_recipe_and_a_removed_one_leave_the_others_as_written():
    recipes = _as_editor_sends(FILE)
    recipes = [recipes[1], {"number": 7, "name": "new", "checks": [{"name": "c", "kind": "count",
                                                                    "prompt": "Count.", "expected": 2}]}]  # fmt: skip
    after = replace_recipes(FILE, recipes)
    assert FILE[FILE.index("  - number: 2") : FILE.index("\ntriggers")] in after  # recipe 2 byte for byte
    assert "number: 1" not in after and "  - number: 7\n    name: new\n" in after
    assert [r["number"] for r in yaml.safe_load(after)["recipes"]] == [2, 7]


def test_reordered_checks_fall_back_to_a_rewritten_block_that_reads_back():
    recipes = _as_editor_sends(FILE)
    recipes[0]["checks"].reverse()
    after = replace_recipes(FILE, recipes)
    assert [c["name"] for c in yaml.safe_load(after)["recipes"][0]["checks"]] == ["screws", "surface"]
    assert after.startswith("station:\n  name: line-3   # the press line\n") and "min_mass" not in after
