"""The fleet messages' schema, shared by the station (every message it queues is checked against it)
and the collector (every message it receives is, before any row is written): strict types — a bool
is not a number, a string is not a number — bounded sizes and value ranges that PostgreSQL's
columns hold. A message the schema refuses is never published by a station and never stops the
collector: it goes to the dead-letter table with the reason (docs/fleet.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .messages import SCHEMA

MAX_MESSAGE_BYTES = 1 << 20  # larger messages are refused whole

Int32 = Annotated[int, Field(ge=0, le=2**31 - 1)]
Int63 = Annotated[int, Field(ge=0, le=2**63 - 1)]
Real = Annotated[float, Field(allow_inf_nan=False, ge=-1e15, le=1e15)]
Unix = Annotated[float, Field(allow_inf_nan=False, ge=0, le=253402300799)]  # up to 9999-12-31
# No NUL in text: PostgreSQL's text columns cannot hold it.
Name = Annotated[str, Field(max_length=200, pattern=r"^[^\x00]*$")]
Text = Annotated[str, Field(max_length=4000, pattern=r"^[^\x00]*$")]
Url = Annotated[str, Field(max_length=2048, pattern=r"^[^\x00]*$")]
MessageId = Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]


class _Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    v: Literal[1]
    station: Name | None = None  # the topic names them too (the collector keys on the topic)
    site: Name | None = None
    line: Name | None = None


class CheckResult(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    idx: Annotated[int, Field(ge=0, le=1000)]
    name: Name
    kind: Name
    status: Name
    reason: Text | None = None
    counted: Int32 | None = None
    answer: Text | None = None
    p_yes: Real | None = None
    margin: Real | None = None
    mass: Real | None = None
    ms: Real | None = None
    points: Annotated[
        list[Annotated[list[Real | None], Field(min_length=2, max_length=2)]], Field(max_length=10_000)
    ] = []


class Image(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    path: Url | None = None
    overlay_path: Url | None = None
    url: Url | None = None
    overlay_url: Url | None = None


class InspectionMessage(_Message):
    type: Literal["inspection"]
    id: MessageId
    inspection_id: Annotated[int, Field(ge=1, le=2**63 - 1)]
    result_id: Int63 | None = None
    ts: Name | None = None
    ts_unix: Unix
    recipe: Annotated[int, Field(ge=0, le=65535)] | None = None
    recipe_name: Name | None = None
    recipe_sha256: Name | None = None
    part_id: Name | None = None
    trigger: Name | None = None
    verdict: Literal["PASS", "FAIL", "ERROR"]
    error: Text | None = None
    defect_count: Int32 | None = None
    failed_checks: Int63 | None = None
    checks: Annotated[list[CheckResult], Field(max_length=1000)] = []
    timings_ms: Annotated[dict[Name, Real | None], Field(max_length=100)] = {}
    model_sha256: Name | None = None
    config_sha256: Name | None = None
    image: Image | None = None


class AlarmMessage(_Message):
    type: Literal["alarm"]
    id: MessageId
    event: Literal["raised", "cleared", "acknowledged"]
    code: Name
    message: Text | None = None
    user: Name | None = None
    at: Unix | None = None


class Disposition(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    disposition: Literal["confirmed_defect", "false_reject", "missed_defect"]
    comment: Text | None = None


class CorrectedPoint(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    id: Annotated[int, Field(ge=1, le=2**63 - 1)]  # the correction's row id in the station's log
    x: Annotated[float, Field(allow_inf_nan=False, ge=0.0, le=1.0)]
    y: Annotated[float, Field(allow_inf_nan=False, ge=0.0, le=1.0)]
    action: Literal["add", "remove"]


class Correction(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    check_idx: Annotated[int, Field(ge=0, le=1000)]
    points: Annotated[list[CorrectedPoint], Field(max_length=200)]


class CheckDefinition(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    name: Name
    prompt: Text | None = None  # a pointing check's prompt, a yes/no check's question
    kind: Name | None = None
    max: Int32 | None = None
    expect: Name | None = None
    settings: dict[Name, Any] = {}  # the check as written in the station file


class ReviewMessage(_Message):
    type: Literal["review"]
    id: MessageId
    inspection_id: Annotated[int, Field(ge=1, le=2**63 - 1)]
    event: Literal["disposition", "correction"]
    seq: Annotated[int, Field(ge=1, le=2**63 - 1)]
    at: Unix
    reviewer: Name | None = None
    disposition: Disposition | None = None
    correction: Correction | None = None
    definitions: Annotated[list[CheckDefinition], Field(max_length=1000)] = []

    @model_validator(mode="after")
    def _event_has_its_part(self) -> ReviewMessage:
        if getattr(self, self.event) is None:
            raise ValueError(f"a {self.event} review without its {self.event!r}")
        return self


class AlarmShown(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    code: Name
    message: Text | None = None
    since: Unix | None = None
    active: bool | None = None
    acknowledged: bool | None = None


class StatusMessage(_Message):
    type: Literal["status"]
    online: bool
    at: Unix | None = None
    connected_at: Unix | None = None
    reason: Name | None = None
    alarms: Annotated[list[AlarmShown], Field(max_length=1000)] | None = None


Message = Annotated[InspectionMessage | AlarmMessage | ReviewMessage | StatusMessage, Field(discriminator="type")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Message)


class MessageRefused(ValueError):
    """Why a message cannot be stored, in one line."""


def parse_message(raw: bytes | str, kind: str | None = None) -> tuple[dict[str, Any], Any]:
    """(the JSON body, its validated model) of a message; MessageRefused naming the first problem.
    ``kind``: the topic's last part, which the message's ``type`` must match."""
    size = len(raw)
    if size > MAX_MESSAGE_BYTES:
        raise MessageRefused(f"oversize: {size} bytes (at most {MAX_MESSAGE_BYTES})")
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:
        raise MessageRefused(f"not JSON: {err}") from None
    if not isinstance(body, dict):
        raise MessageRefused(f"not a JSON object but {type(body).__name__}")
    try:  # a lone surrogate (\ud800) parses, but no database column can hold it
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError, ValueError) as err:
        raise MessageRefused(f"text that is not valid Unicode: {err}") from None
    if body.get("v") != SCHEMA:
        raise MessageRefused(f"unknown version {body.get('v')!r} (this collector reads {SCHEMA})")
    if kind is not None and body.get("type") != kind:
        raise MessageRefused(f"type {body.get('type')!r} on a {kind!r} topic")
    try:
        return body, _ADAPTER.validate_python(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "(top)"
        raise MessageRefused(f"{where}: {first['msg']} (got {_short(first.get('input'))})") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
