"""The genicam tests' fixtures: Aravis and its GigE Vision fake camera on loopback
(tests/support/genicam_fake.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ..support.genicam_fake import FakeCamera, aravis_or_skip


@pytest.fixture
def aravis() -> Any:
    return aravis_or_skip()


@pytest.fixture
def fake_camera(aravis) -> Iterator[FakeCamera]:
    camera = FakeCamera(aravis)
    yield camera
    camera.stop()
