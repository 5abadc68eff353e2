"""The station's alarm board: raised by a fault, listed until it is both cleared and acknowledged.

Changed only on the station's event loop (the station marshals calls from worker threads), so
readers on the loop — the HMI, the status API — never see it change under them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field


@dataclass
class Alarm:
    code: str  # camera_lost | plc_lost | disk_full | log_error | missed_trigger | model_fallback | internal | …
    message: str
    since: float = field(default_factory=time.time)
    active: bool = True
    acknowledged: bool = False
    acknowledged_by: str = ""


class AlarmBoard:
    def __init__(self) -> None:
        self._alarms: dict[str, Alarm] = {}

    def raise_(self, code: str, message: str) -> bool:
        """Raise (or re-raise) an alarm; returns True when it was not already active."""
        alarm = self._alarms.get(code)
        if alarm is not None and alarm.active:
            alarm.message = message
            return False
        self._alarms[code] = Alarm(code, message)
        return True

    def clear(self, code: str) -> bool:
        """The fault is gone; returns True when the alarm was active."""
        alarm = self._alarms.get(code)
        if alarm is None or not alarm.active:
            return False
        alarm.active = False
        return True

    def acknowledge(self, code: str, user: str = "") -> bool:
        alarm = self._alarms.get(code)
        if alarm is None:
            return False
        alarm.acknowledged, alarm.acknowledged_by = True, user
        return True

    def active(self, code: str) -> bool:
        alarm = self._alarms.get(code)
        return alarm is not None and alarm.active

    def get(self, code: str) -> Alarm | None:
        return self._alarms.get(code)

    def listed(self) -> list[dict]:
        """Alarms an operator still has to see: active, or cleared but not yet acknowledged."""
        return [asdict(a) for a in self._alarms.values() if a.active or not a.acknowledged]
