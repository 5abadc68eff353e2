"""Where things are, for every test module wherever it sits under tests/ (no ``parents[n]`` arithmetic)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO_ROOT = TESTS.parent
TEST_DATA = TESTS / "data"  # files kept for the tests (a log written by release 0.1)
SUPPORT = TESTS / "support"
DEMO_STUDENT = REPO_ROOT / "models" / "demo-student"  # the bundled demo student model
