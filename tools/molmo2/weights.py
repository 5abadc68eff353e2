"""Check a checkpoint's safetensors against its config without loading a single weight.

The safetensors headers (8-byte length + JSON: name → dtype, shape, byte range) are read and
compared with the tensors the config implies, computed on torch's meta device (no memory) and
laid out as the checkpoint stores them (transformers' own weight conversion, reversed). A wrong
``model_type``, a truncated file, a missing tensor or a config/weight shape mismatch is refused
here, before ``from_pretrained`` allocates anything.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError

log = logging.getLogger(__name__)

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
_ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit


@dataclass(frozen=True)
class TensorInfo:
    file: str
    dtype: str
    shape: tuple[int, ...]


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Tensor names, dtypes and shapes of one safetensors file; checks that every byte range lies
    inside the file and matches its dtype and shape."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated ({size} bytes; not even a safetensors header)")
            (length,) = struct.unpack("<Q", head)
            if length > _MAX_HEADER or 8 + length > size:
                raise CheckpointError(
                    f"{path}: truncated or not safetensors (header of {length} bytes, file of {size})"
                )
            header = json.loads(f.read(length))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    header.pop("__metadata__", None)
    tensors: dict[str, TensorInfo] = {}
    end_of_data = 0
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(int(n) for n in entry["shape"]), entry["data_offsets"]
            itemsize = _ITEMSIZE[dtype]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has an unreadable header entry") from None
        count = 1
        for n in shape:
            count *= n
        if end - begin != count * itemsize or begin < 0:
            raise CheckpointError(
                f"{path}: tensor {name!r} byte range {begin}..{end} does not fit {dtype}{list(shape)}"
            )
        end_of_data = max(end_of_data, end)
        tensors[name] = TensorInfo(path.name, dtype, shape)
    data = size - 8 - length
    if data < end_of_data:
        raise CheckpointError(f"{path}: truncated: {data} bytes of tensor data, the header lists {end_of_data}")
    return tensors


def checkpoint_tensors(checkpoint: Path) -> dict[str, TensorInfo]:
    """Every tensor of the checkpoint (one file, or shards named by the index)."""
    index = checkpoint / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise CheckpointError(f"{index}: not a safetensors index (needs a 'weight_map')") from None
        tensors: dict[str, TensorInfo] = {}
        for name in files:
            shard = checkpoint / name
            if Path(name).name != name or not shard.is_file():
                raise CheckpointError(f"{shard}: missing (listed in {INDEX})")
            tensors.update(read_header(shard))
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            raise CheckpointError(
                f"{index}: {len(missing)} tensor(s) listed but absent from the shards, e.g. {missing[0]}"
            )
        return tensors
    if (checkpoint / SINGLE).is_file():
        return read_header(checkpoint / SINGLE)
    if any(checkpoint.glob("*.bin")) or any(checkpoint.glob("*.pt")):
        raise CheckpointError(
            f"{checkpoint / SINGLE}: missing (only safetensors checkpoints are exported; "
            "pickled .bin weights are not read)"
        )
    raise CheckpointError(f"{checkpoint / SINGLE}: missing (no weights in the checkpoint)")


def expected_tensors(config: Any) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]], set[str]]:
    """(checkpoint layout, in-memory layout, tensors that may be absent) for a Molmo2 config,
    from a model built on the meta device: shapes only, no memory."""
    import torch
    from transformers import Molmo2ForConditionalGeneration
    from transformers.core_model_loading import revert_weight_conversion

    with torch.device("meta"):
        model = Molmo2ForConditionalGeneration(config)
    native = dict(model.state_dict())
    stored = revert_weight_conversion(model, dict(native))
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    return ({k: tuple(v.shape) for k, v in stored.items()}, {k: tuple(v.shape) for k, v in native.items()}, tied)


def check_weights(checkpoint: Path, config: Any) -> int:
    """Refuse a checkpoint whose tensors do not match ``config``; return the parameter count."""
    tensors = checkpoint_tensors(checkpoint)
    stored, native, optional = expected_tensors(config)
    # A checkpoint may use the released key names (stored) or transformers' own (native).
    expected = stored if len(set(tensors) & set(stored)) >= len(set(tensors) & set(native)) else native
    where = checkpoint / (INDEX if (checkpoint / INDEX).is_file() else SINGLE)
    missing = sorted(set(expected) - set(tensors) - optional)
    if missing:
        raise CheckpointError(f"{where}: {len(missing)} weight(s) the config needs are missing, e.g. {missing[0]}")
    for name, shape in expected.items():
        info = tensors.get(name)
        if info is None:
            continue
        if info.shape != shape:
            raise CheckpointError(
                f"{checkpoint / info.file}: {name} has shape {list(info.shape)}, config.json "
                f"implies {list(shape)} (config and weights do not belong together)"
            )
        if info.dtype not in _FLOAT_DTYPES:
            raise CheckpointError(f"{checkpoint / info.file}: {name} is {info.dtype}, expected a float dtype")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        log.info("%s: %d tensor(s) the model does not use, e.g. %s", where, len(unexpected), unexpected[0])
    count = 0
    for shape in expected.values():
        n = 1
        for d in shape:
            n *= d
        count += n
    log.info("%s: %d tensors match config.json (%.1f M parameters)", where, len(expected), count / 1e6)
    return count
