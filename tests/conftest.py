"""Shared fixtures: one small random Molmo2 checkpoint and its exported bundle per test session.

``--appliance-only`` runs the appliance's tests alone (no export toolchain, browser or plant side; see
LEFT_OUT in tests/support/appliance_only.py): .ci/run uses it on Python 3.10 and 3.12, with the tiny
bundle exported by 3.11 beforehand."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .support import tiny_bundle as tiny_bundle_module
from .support.appliance_only import LEFT_OUT


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    pytest.importorskip("torch", reason="the export toolchain needs the 'export' extra (torch, transformers)")
    from tools.molmo2.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-molmo2", seed=tiny_bundle_module.SEED)


@pytest.fixture(scope="session")
def tiny_bundle(request, tmp_path_factory) -> Path:
    """The tiny bundle: exported here (torch), or the one named by EDGE_INSPECT_TEST_BUNDLE, which another
    interpreter exported with ``python -m tests.support.tiny_bundle`` (tests/support/tiny_bundle.py)."""
    prebuilt = os.environ.get(tiny_bundle_module.ENV)
    if prebuilt:
        if not (Path(prebuilt) / "manifest.json").is_file():
            pytest.exit(f"{tiny_bundle_module.ENV}={prebuilt}: no bundle there (manifest.json missing)", returncode=2)
        return Path(shutil.copytree(prebuilt, tmp_path_factory.mktemp("bundle") / "tiny"))
    from tools.export.onnx_bundle import export_bundle

    checkpoint = request.getfixturevalue("tiny_checkpoint")
    return export_bundle(checkpoint, tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    """A private copy of the bundle that a test may damage."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster of its own in a temporary folder (tests/support/fleet_services.py), for the session."""
    pytest.importorskip("psycopg")
    from .support.fleet_services import Postgres

    pg = Postgres().start()
    yield pg
    pg.stop()


@pytest.fixture
def daemon(tmp_path, tiny_bundle):
    """``edge-inspect run`` on a folder camera with the browser tests' recipe and users (support/browser.py)."""
    import signal

    import cv2

    from edge_inspect.sim import render_part

    from .support.browser import RECIPES, USERS, start_daemon
    from .support.stations import free_port, write_station

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        cv2.imwrite(str(frames / f"{i}.png"), render_part(i).image)
    port = free_port()
    config = write_station(tmp_path, tiny_bundle, recipes=RECIPES, plc={"enabled": False},
                           camera={"source": "folder", "path": str(frames), "stall_timeout_s": 0.5,
                                   "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
                           web={"enabled": True, "port": port, "users": USERS})  # fmt: skip
    proc = start_daemon(config, f"http://127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    info = {"base": base, "frames": frames, "tmp": tmp_path, "proc": proc, "config": config}
    yield info
    if info["proc"].poll() is None:
        info["proc"].send_signal(signal.SIGTERM)
        info["proc"].wait(timeout=30)


@pytest.fixture
def page():
    """A page of Debian's chromium, headless (Playwright; skipped where either is missing)."""
    from .support.browser import CHROMIUM, CHROMIUM_ARGS, SHOTS

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        yield context.new_page()
        browser.close()


def pytest_addoption(parser):
    parser.addoption(
        "--appliance-only",
        action="store_true",
        help="only the appliance's tests: without the export toolchain (no torch), the browser and the plant side",
    )


def pytest_ignore_collect(collection_path, config):
    if config.getoption("appliance_only"):
        relative = collection_path.relative_to(Path(__file__).parent).as_posix()
        if relative in LEFT_OUT:
            return True
    return None
