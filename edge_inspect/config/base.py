"""What every section of station.yaml shares: strict models, field errors, host and path checks."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo


class Strict(BaseModel):
    """Unknown keys are refused, and so is every type conversion: `true` is not the number 1, `'5020'`
    is not a number and `"yes"` is not a boolean (pydantic's strict mode, on every field of every
    section, present and future). A YAML list stands for a tuple (Point)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class FieldError(ValueError):
    """A problem a model-level validator finds in one of its fields: ``keys`` are candidate key paths
    below the model's (tuples); the error is reported at the first one the file spells out."""

    def __init__(self, message: str, *keys: tuple[str | int, ...]):
        super().__init__(message)
        self.keys = keys


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def check_host(value: str) -> str:
    """An IP address or a valid host name (RFC 1123)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if (
        not value
        or len(value) > 253
        or not all(_HOST_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValueError(f"{value!r} is neither an IP address nor a valid host name")
    return value


def hosts_overlap(a: str, b: str) -> bool:
    """Whether listening on host ``a`` and host ``b`` can clash (the same address, or a wildcard)."""

    def addr(h: str):
        try:
            return ipaddress.ip_address(h)
        except ValueError:
            return None

    ia, ib = addr(a), addr(b)
    if (ia is not None and ia.is_unspecified) or (ib is not None and ib.is_unspecified):
        return True
    loopback = [h.lower() == "localhost" or (i is not None and i.is_loopback) for h, i in ((a, ia), (b, ib))]
    if all(loopback) and "localhost" in (a.lower(), b.lower()):
        return True
    return (ia == ib) if ia is not None and ib is not None else a.lower().rstrip(".") == b.lower().rstrip(".")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower().rstrip(".") == "localhost"


def base_dir(info: ValidationInfo) -> Path | None:
    """The config file's folder while load_config validates (paths in the file are relative to it)."""
    return (info.context or {}).get("base_dir") if info.context is not None else None


def in_base(value: str, base: Path) -> Path:
    if "\0" in value:
        raise ValueError("a path may not contain a NUL character")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def resolve_files(model: object, names: tuple[str, ...], info: ValidationInfo) -> None:
    """While load_config validates: each named path field must be a file (relative to the config's
    folder) and is replaced by its resolved path."""
    base = base_dir(info)
    if base is None:
        return
    for name in names:
        value = getattr(model, name)
        if value:
            path = in_base(value, base)
            if not path.is_file():
                raise FieldError(f"no such file {value}", (name,))
            setattr(model, name, str(path))


def _list_as_tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


Point = Annotated[tuple[float, float], BeforeValidator(_list_as_tuple)]  # YAML has lists, not tuples
Polygon = list[Point]
