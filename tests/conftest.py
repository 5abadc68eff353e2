"""Shared fixtures: one small random Molmo2 checkpoint and its exported bundle per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    pytest.importorskip("torch", reason="the export toolchain needs the 'export' extra (torch, transformers)")
    from tools.molmo2.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-molmo2", seed=0)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    from tools.export.onnx_bundle import export_bundle

    return export_bundle(tiny_checkpoint, tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    """A private copy of the bundle that a test may damage."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster of its own in a temporary folder (tests/fleet_services.py), for the session."""
    pytest.importorskip("psycopg")
    from .fleet_services import Postgres

    pg = Postgres().start()
    yield pg
    pg.stop()
