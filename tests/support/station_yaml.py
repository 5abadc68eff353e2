"""A small station.yaml as text, ``{bundle}`` to fill in: the config tests edit it and expect problems at
its line numbers (tests/config/test_config.py), or read it back with one change (test_config_strict.py)."""

BASE = """\
station:
  name: test-station
camera:
  source: synthetic
model:
  bundle: {bundle}
recipes:
  - number: 1
    name: plate
    checks:
      - name: surface
        kind: point
        prompt: Point to any surface defects.
        max: 0
      - name: screws
        kind: count
        prompt: Point to the screws.
        expected: 4
      - name: label
        kind: qa
        question: Is the label present?
        expect: "yes"
plc:
  port: 5020
storage:
  dir: data
"""
