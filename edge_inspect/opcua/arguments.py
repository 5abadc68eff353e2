"""Method arguments checked against the method's InputArguments before a handler runs.

asyncua passes whatever Variants a client sends: an Int32 where a String is declared reached the
handler, and a missing argument made the handler raise (BadUnexpectedError). OPC UA Part 4
(Call, Tables 66/67) says how a server answers instead:

- fewer arguments than declared: BadArgumentsMissing; more: BadTooManyArguments;
- an argument of another type (or an array for a scalar): the call answers BadInvalidArgument
  and that argument's InputArgumentResult is BadTypeMismatch;
- a value the handler refuses (``ArgumentError``, e.g. a PartId too long: BadOutOfRange): the
  same, BadInvalidArgument with that argument's code.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.ua_utils import data_type_to_variant_type, get_node_supertype

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]


class ArgumentError(Exception):
    """A handler's refusal of one argument's value: ``index`` (0-based) and its status code."""

    def __init__(self, index: int, status: int, why: str = ""):
        super().__init__(why)
        self.index, self.status = index, status


@dataclass(frozen=True)
class Expected:
    name: str
    vtype: ua.VariantType  # Variant: any type
    array: bool
    cls: type | None  # the structure's class for ExtensionObject arguments


async def expected_arguments(server: Server, method: Node) -> list[Expected]:
    """The method's declared input arguments (none when it has no InputArguments property)."""
    try:
        prop = await method.get_child("0:InputArguments")
    except ua.uaerrors.BadNoMatch:
        return []
    out = []
    for arg in await prop.read_value() or []:
        vtype = await data_type_to_variant_type(server.get_node(arg.DataType))
        cls = await _structure_class(server.get_node(arg.DataType)) if vtype == ua.VariantType.ExtensionObject else None
        out.append(Expected(arg.Name, vtype, arg.ValueRank >= 0, cls))
    return out


async def _structure_class(dtype: Node) -> type | None:
    """The Python class of a structure data type; asyncua gives a subtype without fields of its own
    (RecipeIdExternalDataType) its base's class (BinaryIdBaseDataType)."""
    while dtype is not None and dtype.nodeid != ua.NodeId(ua.ObjectIds.Structure):
        cls = ua.extension_objects_by_datatype.get(dtype.nodeid)
        if cls is not None:
            return cls
        dtype = await get_node_supertype(dtype)
    return None


def mismatch(expected: Expected, given: ua.Variant) -> bool:
    """True when ``given`` cannot be this argument."""
    if not isinstance(given, ua.Variant):
        return True
    if given.VariantType == ua.VariantType.Null:
        return not expected.array  # a null array is an empty one
    if given.is_array != expected.array:
        return True
    if expected.vtype == ua.VariantType.Variant:  # BaseDataType: any type
        return False
    if given.VariantType != expected.vtype:
        return True
    if expected.cls is not None:
        values = given.Value if expected.array else [given.Value]
        return not all(is_null(v) or isinstance(v, expected.cls) for v in values or [])
    return False


def is_null(value: Any) -> bool:
    """A null structure: no value, or an ExtensionObject without a type (asyncua decodes it so)."""
    return value is None or (isinstance(value, ua.ExtensionObject) and value.TypeId.is_null() and not value.Body)


def _result(status: int, inputs: list[int] | None = None) -> ua.CallMethodResult:
    res = ua.CallMethodResult()
    res.StatusCode = ua.StatusCode(status)
    res.InputArgumentResults = [ua.StatusCode(s) for s in inputs or []]
    return res


def checked(name: str, expected: list[Expected], handler: Handler) -> Handler:
    """``handler`` behind the presence and type checks; it may raise ArgumentError for a value."""

    @functools.wraps(handler)
    async def call(parent: ua.NodeId, *args: ua.Variant) -> Any:
        if len(args) < len(expected):
            missing = ", ".join(e.name for e in expected[len(args) :])
            log.warning("OPC UA %s refused: argument(s) missing: %s", name, missing)
            return _result(ua.StatusCodes.BadArgumentsMissing)
        if len(args) > len(expected):
            log.warning("OPC UA %s refused: %d arguments, %d expected", name, len(args), len(expected))
            return _result(ua.StatusCodes.BadTooManyArguments)
        codes = [
            ua.StatusCodes.BadTypeMismatch if mismatch(e, a) else ua.StatusCodes.Good
            for e, a in zip(expected, args, strict=True)
        ]
        if any(codes):
            wrong = [f"{e.name} ({a.VariantType.name})" for e, a, c in zip(expected, args, codes, strict=True) if c]
            log.warning("OPC UA %s refused: wrong type: %s", name, ", ".join(wrong))
            return _result(ua.StatusCodes.BadInvalidArgument, codes)
        try:
            return await handler(parent, *args)
        except ArgumentError as err:
            log.warning("OPC UA %s refused: %s: %s", name, expected[err.index].name, err)
            codes = [ua.StatusCodes.Good] * len(expected)
            codes[err.index] = err.status
            return _result(ua.StatusCodes.BadInvalidArgument, codes)

    return call
