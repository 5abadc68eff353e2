"""The Jetson this runs on: its model, L4T / JetPack release and power mode, read from files under
``root`` (tests fabricate them). None off a Jetson."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# L4T release → JetPack release (NVIDIA's JetPack archive). Unknown releases fall back to the
# major-version line (R36 is JetPack 6.x).
JETPACK = {
    "35.5.0": "5.1.3", "35.6.0": "5.1.4", "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1",
    "36.4.3": "6.2", "36.4.4": "6.2.1", "38.2.0": "7.0",
}  # fmt: skip
JETPACK_MAJOR = {"32": "4", "34": "5", "35": "5", "36": "6", "38": "7"}


@dataclass(frozen=True)
class Jetson:
    model: str | None  # /proc/device-tree/model, e.g. "NVIDIA Jetson Orin NX Engine Module"
    l4t: str | None  # e.g. "36.4.3"
    jetpack: str | None  # e.g. "6.2", or "6.x" where only the major release is known
    power_mode: str | None  # e.g. "2 (15W)", from nvpmodel's status and configuration


def read_jetson(root: Path = Path("/")) -> Jetson | None:
    """The Jetson this runs on, or None (no /etc/nv_tegra_release)."""
    try:
        release = (root / "etc/nv_tegra_release").read_text(errors="replace")
    except OSError:
        return None
    l4t = jetpack = None
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    if match:
        major, revision = match.groups()
        parts = (major, *revision.split("."))
        l4t = ".".join((*parts, "0")[:3])
        jetpack = JETPACK.get(l4t) or (f"{JETPACK_MAJOR[major]}.x" if major in JETPACK_MAJOR else None)
    try:
        model = (root / "proc/device-tree/model").read_bytes().decode(errors="replace").strip("\0 \n") or None
    except OSError:
        model = None
    return Jetson(model, l4t, jetpack, _power_mode(root))


def _power_mode(root: Path) -> str | None:
    try:
        status = (root / "var/lib/nvpmodel/status").read_text()
    except OSError:
        return None
    match = re.search(r"pmode:(\d+)", status)
    if not match:
        return None
    mode = int(match.group(1))
    try:
        conf = (root / "etc/nvpmodel.conf").read_text(errors="replace")
    except OSError:
        return str(mode)
    names = {int(i): n for i, n in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)", conf)}
    return f"{mode} ({names[mode]})" if mode in names else str(mode)
