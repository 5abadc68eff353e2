"""Identity registers (option ``identity``): which model, which station.yaml, which software."""

from __future__ import annotations

from .. import __version__


def identity_outputs(model_sha256: str, config_sha256: str) -> dict[str, int | str]:
    """model_id / config_id: the first 8 hex digits of each sha256 as a uint32 (what the HMI and the
    log show as the prefix); software_version: the edge-inspect version as text."""
    return {
        "model_id": int(model_sha256[:8], 16),
        "config_id": int(config_sha256[:8], 16),
        "software_version": __version__,
    }
