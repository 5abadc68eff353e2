"""The systemd unit: exposure (systemd-analyze security) at most 2.5, and the daemon still runs
under the unit's sandboxing (systemd-run, where systemd is the running init)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from ..support.paths import REPO_ROOT
from ..support.stations import free_port

UNIT = REPO_ROOT / "systemd" / "edge-inspect.service"
SANDBOX_KEYS = (
    "NoNewPrivileges",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "RestrictSUIDSGID",
    "RestrictRealtime",
    "RestrictNamespaces",
    "LockPersonality",
    "RestrictAddressFamilies",
    "CapabilityBoundingSet",
    "SystemCallArchitectures",
    "SystemCallFilter",
    "SystemCallErrorNumber",
    "RemoveIPC",
    "PrivateMounts",
    "ProtectProc",
    "IPAddressDeny",
    "IPAddressAllow",
    "UMask",
    "DevicePolicy",
    "DeviceAllow",
    "MemoryDenyWriteExecute",
)


def _systemd_running() -> bool:
    if shutil.which("systemctl") is None:
        return False
    state = subprocess.run(["systemctl", "is-system-running"], capture_output=True, text=True).stdout.strip()
    return state in ("running", "degraded")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_exposure_is_at_most_2_5():
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security: exposure {exposure}")
    assert exposure <= 2.5


def _sandbox_properties() -> list[str]:
    props = []
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key in SANDBOX_KEYS:
            props += ["-p", f"{key}={value}"]
    return props


@pytest.mark.skipif(
    not _systemd_running(),
    reason="systemd is not the running init here (a container): systemd-run cannot start a sandboxed unit",
)
def test_daemon_runs_under_the_units_sandboxing(tmp_path):
    result = subprocess.run(
        [
            "systemd-run",
            "--wait",
            "--pipe",
            "--collect",
            "-p",
            f"ReadWritePaths={tmp_path}",
            *_sandbox_properties(),
            sys.executable,
            "-m",
            "edge_inspect.cli",
            "demo",
            "--duration",
            "10",
            "--workdir",
            str(tmp_path / "demo"),
            "--port",
            str(free_port()),
            "--web-port",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^#\d+\s+P\d+\s+(PASS|FAIL)", result.stdout, re.M), result.stdout
