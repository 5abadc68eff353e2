"""What the station web may use of the station (as station/ports.py does for the other adapters; it
lives here because it names the config keeper, which itself is typed against station/ports.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..station.ports import Inspects, Observed

if TYPE_CHECKING:
    import numpy as np

    from ..inspection.inspector import Inspector
    from ..logbook import Store
    from ..plc.handshake import Handshake, Inputs
    from ..plc.signals import SignalMap
    from ..station.config_keeper import ConfigKeeper
    from ..station.model_follower import ModelFollower
    from ..station.shadow import Shadow

T = TypeVar("T")


class WebPort(Observed, Inspects, Protocol):
    """Status and events for the HMI, the log for review, the latest overlay, alarms to acknowledge,
    the config keeper for the setup pages, and the camera, the inspector and the PLC's signals for
    the setup pages' live view, try and I/O monitor. mypy checks that the web uses no more."""

    store: Store
    keeper: ConfigKeeper | None
    models: ModelFollower | None
    shadow: Shadow | None
    model_sha256: str
    inspector: Inspector
    signal_map: SignalMap
    last_overlay_jpeg: bytes | None
    last_row_id: int | None

    @property
    def plc_status(self) -> str: ...

    @property
    def last_inputs(self) -> Inputs | None: ...

    @property
    def handshake(self) -> Handshake: ...

    def acknowledge_alarm(self, code: str, user: str = "") -> bool: ...

    def grab_frame(self) -> np.ndarray: ...

    async def between_inspections(self, fn: Callable[..., T], *args: Any) -> T: ...
