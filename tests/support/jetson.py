"""A fabricated Jetson: the files L4T and nvpmodel leave in /etc, /proc and /var/lib, under a folder of the
test's (tests/vlm/test_platform.py, tests/export/test_trt_prereqs.py)."""

from __future__ import annotations

from pathlib import Path

ORIN_RELEASE = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"
NVPMODEL_CONF = "< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n< POWER_MODEL ID=1 NAME=10W >\n< POWER_MODEL ID=2 NAME=15W >\n"


def fake_jetson(root: Path, release: str = ORIN_RELEASE, pmode: str | None = "pmode:0002 fmode:quiet") -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text(release)
    (root / "etc/nvpmodel.conf").write_text(NVPMODEL_CONF)
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson Orin NX Engine Module\0")
    if pmode is not None:
        (root / "var/lib/nvpmodel").mkdir(parents=True)
        (root / "var/lib/nvpmodel/status").write_text(pmode + "\n")
    return root
