"""ResultManagement's memory: the last results as the specification's ResultDataType.

The log (SQLite) is the station's record of every result; the OPC UA server keeps the last
``KEPT`` results it published in memory for GetResultById, GetResultComponentsById and
GetResultListFiltered (the log is not read from the OPC UA thread: logbook belongs to the station).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from asyncua import ua

KEPT = 1000


def ident(cls_name: str, text: str | None) -> Any:
    """One of the nodeset's Id structures (ResultIdDataType, JobIdDataType, …) with ``text`` as its Id;
    None for an empty optional one."""
    return None if text is None else getattr(ua, cls_name)(Id=text)


def id_text(value: Any) -> str:
    """The Id of an Id structure argument ("" for a null or empty one)."""
    return str(getattr(value, "Id", "") or "").strip()


@dataclass
class Kept:
    result: Any  # ua.ResultDataType
    meas_id: str


class ResultMemory:
    def __init__(self, kept: int = KEPT):
        self.results: deque[Kept] = deque(maxlen=kept)

    def add(
        self,
        result_id: str,
        job_id: str,
        meas_id: str,
        part_id: str,
        recipe: int,
        config_id: str,
        state: int,
        at: datetime,
        processing_ms: float,
    ) -> Any:
        """Keep one result; returns its ResultDataType."""
        started = at - timedelta(milliseconds=processing_ms)
        times = ua.ProcessingTimesDataType(
            StartTime=started, EndTime=at, ProcessingDuration=processing_ms, AcquisitionDuration=None
        )
        result = ua.ResultDataType(
            ResultId=ident("ResultIdDataType", result_id),
            IsPartial=False,
            ResultState=state,
            MeasId=ident("MeasIdDataType", meas_id or None),
            PartId=ident("PartIdDataType", part_id or None),
            InternalRecipeId=ident("RecipeIdInternalDataType", str(recipe)),
            ExternalRecipeId=ident("RecipeIdExternalDataType", str(recipe)),
            InternalConfigurationId=ident("ConfigurationIdDataType", config_id),
            JobId=ident("JobIdDataType", job_id),
            CreationTime=at,
            ProcessingTimes=times,
        )
        self.results.append(Kept(result, meas_id))
        return result

    def by_id(self, result_id: str) -> Any | None:
        return next((k.result for k in reversed(self.results) if k.result.ResultId.Id == result_id), None)

    def filtered(self, state: int, filters: dict[str, str]) -> list[Any]:
        """Newest first; ``state`` 0 and empty filters match everything (ids compared by their Id)."""
        out = []
        for k in reversed(self.results):
            r = k.result
            if state and r.ResultState != state:
                continue
            if all(not want or id_text(getattr(r, name)) == want for name, want in filters.items()):
                out.append(r)
        return out


def page(items: list[Any], max_results: int, start: int) -> tuple[bool, list[Any]]:
    """(IsComplete, the items from ``start``, at most ``max_results`` of them; 0: no limit)."""
    rest = items[max(start, 0) :]
    chosen = rest if max_results <= 0 else rest[:max_results]
    return len(chosen) == len(rest), chosen


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts or 0, timezone.utc)


def variants(values: Iterable[tuple[Any, ua.VariantType | None]]) -> list[ua.Variant]:
    """Output arguments: (value, VariantType or None for a structure)."""
    out = []
    for value, vtype in values:
        if vtype is None:
            out.append(ua.Variant(value, ua.VariantType.ExtensionObject, is_array=isinstance(value, list)))
        elif isinstance(value, list):
            out.append(ua.Variant(value, vtype, is_array=True))
        else:
            out.append(ua.Variant(value, vtype))
    return out
