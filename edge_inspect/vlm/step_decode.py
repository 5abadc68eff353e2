"""Greedy decoding through a bundle's decode-step graph: every buffer bound once, updated in place.

The decode-step graph (written by tools/export/step_decoder.py) takes one token per row and keeps
the K/V cache of each layer in one buffer [rows, kv_heads, capacity, head_dim] that it reads and
writes in place (ONNX Runtime's GroupQueryAttention with past and present bound to the same
memory). Its other inputs keep one shape for the whole decode: the attention bias is
capacity-wide (padding columns hold the mask value), ``seqlens_k`` says where each row's new K/V
goes, and ``query_seqlens`` is 1 per row (0 would leave a row's cache alone). So a step is: write
the token embeddings and counters into the bound arrays, run, read the logits — no allocation, no
copy of the cache, no re-binding. When rows finish, the live ones move to the front of the arrays
and the graph is bound to views of those rows: later steps compute only the rows still decoding.

Jump-forward: where a row's grammar allows exactly one token, and then one again, those tokens
(``grammar.Constraint.forced_run``) are appended without sampling and fed with the sampled token
before them in one run of the graph: a graph with a ``tokens`` dimension (tools/export/step_decoder.py)
takes each row's block right-padded to the longest (``query_seqlens`` real tokens per row, causal
inside the block) and returns the logits of each row's last token. A row whose forced tokens end
the answer is done without a run. An older graph (one token per row), and a quantized one (whose
kernels round a block's activations unlike one token's: near-ties would flip), is fed the block one
token per run, the rows whose block is shorter idle (``query_seqlens`` 0): the same tokens.

The engine checks once at load that the step graph computes what the decoder graph computes
(``disagreement``: ``difference_to_decoder`` on PROBE_SEEDS random steps); any bundle without the
graph, or a runtime that cannot load it, decodes with the decoder graph as before, with the same
tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, TypeGuard

import numpy as np

from .manifest import STEP_GRAPH

if TYPE_CHECKING:
    from .backends import Backend, BindingBackend
    from .batches import Batch
    from .bundle import Bundle
    from .grammar import Constraint


class Engine(Protocol):
    """What the step-graph decode uses of the engine (generate.Engine, which imports this module)."""

    bundle: Bundle
    backend: Backend
    num_layers: int
    mask_value: np.float32
    jump_forward: bool
    step_blocks: bool
    decode_runs: int
    row_steps: int

    def step_embeds(self, tokens: np.ndarray) -> np.ndarray: ...


AGREEMENT = 1e-3  # load-time check, fp32 graphs: largest |Δ| of logits or K/V between the two graphs
# Quantized graphs quantize activations per block at run time, so two graphs with the same weights
# round some blocks differently (|Δlogit| up to ~0.1 on the demo student, whose logits reach ~10):
# the check then only catches a graph that computes something else, as a share of the outputs' size.
QUANTIZED_AGREEMENT = 0.05
# An fp32 decoder graph beside an int8 step graph (quantize's fallback when the per-channel pair
# disagrees): the difference is the step graph's quantization error itself, 0.6-5.9 % of the probe's
# outputs on 20 probe seeds of the demo student (1.3-1.7 % on the tiny test model). Refused on the demo
# student: LM head × 1.2 (2× the bound), one layer's output projection × 1.2 (on some of the five
# probes), k-norm × 1.05. Smaller faults can pass; `verify` is the gate for answers.
MIXED_AGREEMENT = 0.10


@dataclass(frozen=True)
class Agreement:
    """The load check's bounds (above); the runtime uses LOAD_CHECK. quantize and tests may pass others."""

    fp32: float = AGREEMENT
    quantized: float = QUANTIZED_AGREEMENT
    mixed: float = MIXED_AGREEMENT


LOAD_CHECK = Agreement()


def allowed_difference(engine: Engine, scale: float, bounds: Agreement = LOAD_CHECK) -> float:
    """The load check's bound for this bundle: ``bounds.fp32`` when both graphs are fp32, else a share
    of the largest output magnitude of the probe step (``scale``): ``bounds.quantized`` when both graphs
    are quantized, ``bounds.mixed`` when one of them is full precision."""
    bundle = engine.bundle
    decoder, step = bundle.precision("decoder"), bundle.precision(STEP_GRAPH)
    if decoder == step == "fp32":
        return bounds.fp32
    share = bounds.mixed if "fp32" in (decoder, step) else bounds.quantized
    return share * max(scale, 1.0)


def takes_blocks(backend: object) -> bool:
    """Whether the backend's step graph takes several new tokens per row (a ``tokens`` dimension)."""
    shape = getattr(backend, "input_shape", None)
    try:
        return shape is not None and shape(STEP_GRAPH, "inputs_embeds")[1] != 1
    except (KeyError, IndexError):
        return False


def available(backend: object) -> TypeGuard[BindingBackend]:
    """Whether ``backend`` loaded a decode-step graph and can bind buffers to it."""
    has_graph = getattr(backend, "has_graph", None)
    return bool(has_graph and has_graph(STEP_GRAPH) and hasattr(backend, "bind"))


def _binding(backend: Backend) -> BindingBackend:
    """``backend``, which the engine decodes through the step graph only when it is ``available``."""
    if not available(backend):
        raise TypeError(f"{backend.name}: no decode-step graph to bind")
    return backend


class StepBuffers:
    """The arrays bound to the step graph for one decode: rows × capacity. ``keep_rows`` binds the
    graph to the leading rows of the same arrays (views, no copy) when rows leave the batch."""

    def __init__(
        self,
        engine: Engine,
        rows: int,
        capacity: int,
        arrays: dict[str, np.ndarray] | None = None,
        cache: list[np.ndarray] | None = None,
    ):
        t = engine.bundle.text
        self.engine = engine
        self.backend = _binding(engine.backend)
        if arrays is None:
            arrays = {
                "embeds": np.zeros((rows, 1, t.hidden_size), np.float32),
                "positions": np.zeros((rows, 1), np.int64),
                "bias": np.zeros((rows, 1, 1, capacity), np.float32),
                "seqlens": np.zeros(rows, np.int32),
                "active": np.ones(rows, np.int32),  # query_seqlens: one new token per row
                "logits": np.zeros((rows, t.vocab_size), np.float32),
            }
        if cache is None:  # K and V of each layer
            cache = [
                np.zeros((rows, t.num_kv_heads, capacity, t.head_dim), np.float32) for _ in range(2 * engine.num_layers)
            ]
        self.arrays, self.cache = arrays, cache
        self.embeds, self.positions, self.bias = arrays["embeds"], arrays["positions"], arrays["bias"]
        self.seqlens, self.active, self.logits = arrays["seqlens"], arrays["active"], arrays["logits"]
        self.total = np.array(capacity, np.int32)
        feeds = {
            "inputs_embeds": self.embeds,
            "position_ids": self.positions,
            "attention_bias": self.bias,
            "seqlens_k": self.seqlens,
            "total_sequence_length": self.total,
            "query_seqlens": self.active,
        }
        outputs = {"logits": self.logits}
        for i in range(engine.num_layers):
            for j, kind in enumerate(("key", "value")):
                feeds[f"past_{kind}_{i}"] = outputs[f"present_{kind}_{i}"] = self.cache[2 * i + j]
        self.run = self.backend.bind(STEP_GRAPH, feeds, outputs)
        self.feeds, self.outputs = feeds, outputs
        self._blocks: dict[int, tuple[dict[str, np.ndarray], Callable[[], object]]] = {}

    def block(self, tokens: int) -> tuple[dict[str, np.ndarray], Callable[[], object]]:
        """Arrays for a run of ``tokens`` new tokens per row (embeds, positions, bias, query_seqlens;
        the cache, seqlens_k and logits are this object's) and the graph bound to them, made once
        per block length."""
        if tokens not in self._blocks:
            rows, capacity = self.embeds.shape[0], self.bias.shape[-1]
            own: dict[str, np.ndarray] = {
                "inputs_embeds": np.zeros((rows, tokens, self.embeds.shape[2]), np.float32),
                "position_ids": np.zeros((rows, tokens), np.int64),
                "attention_bias": np.zeros((rows, 1, tokens, capacity), np.float32),
                "query_seqlens": np.zeros(rows, np.int32),
            }
            run = self.backend.bind(STEP_GRAPH, {**self.feeds, **own}, self.outputs)
            self._blocks[tokens] = (own, run)
        return self._blocks[tokens]

    def keep_rows(self, rows: list[int]) -> StepBuffers:
        """Buffers bound to ``rows`` only (in that order): they are moved to the front of every array
        (nothing moves when they already lead) and the graph is bound to views of those leading rows,
        so a step stops computing rows that have finished."""
        k = len(rows)
        move = rows != list(range(k))
        if move:
            for a in [*self.arrays.values(), *self.cache]:
                a[:k] = a[rows]
        views = {name: a[:k] for name, a in self.arrays.items()}
        return StepBuffers(self.engine, k, int(self.total), views, [a[:k] for a in self.cache])


@lru_cache(maxsize=4)
def _no_logits(vocab: int) -> np.ndarray:
    """The logits kept for a forced token (none were computed): NaN, one read-only array."""
    out = np.full(vocab, np.nan, np.float32)
    out.flags.writeable = False
    return out


def take_greedy(
    logits: np.ndarray,
    indices: Iterable[int],
    live: list[int],
    tokens: list[list[int]],
    chosen: list[list[np.ndarray]],
    stop: set[int],
    max_new_tokens: int,
    constraints: list[Constraint | None] | None = None,
    forced: dict[int, list[int]] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """One greedy step's bookkeeping: for each index j of ``indices`` (a row of ``logits``, batch row
    ``live[j]``) append the argmax token and the logits that chose it; return the argmax of every
    row and the indices that go on (not a stop token, under ``max_new_tokens``). A row with a
    constraint (``constraints[row]``, grammar.Constraint) takes the argmax over the tokens its
    grammar allows; the logits kept are the model's, unmasked. With ``forced`` (a dict, filled here:
    jump-forward), the tokens the grammar then forces are appended too (``forced[j]``, logits NaN:
    none were computed) and the row goes on only when they do not end it."""
    next_tokens = np.argmax(logits, axis=1)
    still = []
    for j in indices:
        token, row = int(next_tokens[j]), live[j]
        constraint = constraints[row] if constraints is not None else None
        if constraint is not None:
            token = constraint.choose(logits[j], max_new_tokens - len(tokens[row]))
            constraint.advance(token)
            next_tokens[j] = token
        tokens[row].append(token)
        chosen[row].append(logits[j].copy())
        if token in stop or len(tokens[row]) >= max_new_tokens:
            continue
        if forced is not None and constraint is not None:
            run = constraint.jump(max_new_tokens - len(tokens[row]))
            tokens[row] += run
            chosen[row] += [_no_logits(logits.shape[1])] * len(run)
            forced[j] = run
            if run and (run[-1] in stop or len(tokens[row]) >= max_new_tokens):
                continue
        still.append(j)
    return next_tokens, still


def greedy_in_place(
    engine: Engine,
    batch: Batch,
    live: list[int],
    max_new_tokens: int,
    stop: set[int],
    constraints: list[Constraint | None] | None = None,
) -> tuple[list[list[int]], list[list[np.ndarray]]]:
    """``Engine.greedy_batch`` through the step graph: the same tokens and logits per row (forced
    tokens, with ``engine.jump_forward``, fed in blocks and their logits NaN)."""
    tokens: list[list[int]] = [[] for _ in range(batch.size)]
    chosen: list[list[np.ndarray]] = [[] for _ in range(batch.size)]
    length = batch.attend.shape[1]
    max_positions = engine.bundle.text.max_positions
    jump = bool(getattr(engine, "jump_forward", False)) and constraints is not None and any(constraints)
    # The last token is never fed back: at most max_new_tokens - 1 new K/V rows per row. Like the
    # decoder path, a decode that would pass max_positions fails only when it gets there (a row may
    # stop first). Jump-forward pads blocks to the longest: room for a block beyond any row's end.
    capacity = min(length + (2 if jump else 1) * max_new_tokens - 1, max_positions)
    n = len(live)
    b = StepBuffers(engine, n, capacity)
    for i in range(engine.num_layers):
        b.cache[2 * i][:, :, :length] = batch.keys[i][live]
        b.cache[2 * i + 1][:, :, :length] = batch.values[i][live]
    b.bias[:, 0, 0, :length][~batch.attend[live]] = engine.mask_value
    lengths = np.full(n, length, np.int64)  # cached positions of each buffer row
    positions = batch.positions[live].astype(np.int64)
    logits = batch.logits[live]
    while True:  # every row of the buffers decodes; live[j] is buffer row j's batch row
        forced: dict[int, list[int]] | None = {} if jump else None
        next_tokens, still = take_greedy(
            logits, range(len(live)), live, tokens, chosen, stop, max_new_tokens, constraints, forced
        )
        if not still:
            break
        if len(still) < len(live):  # finished rows leave: the graph runs on the others only
            b = b.keep_rows(still)
            live, next_tokens = [live[j] for j in still], next_tokens[still]
            lengths, positions = lengths[still], positions[still]
        blocks = [[int(next_tokens[k])] + (forced or {}).get(j, []) for k, j in enumerate(still)]
        if int((lengths + np.array([len(x) for x in blocks])).max()) > capacity:
            need = int((lengths + np.array([len(x) for x in blocks])).max())
            raise ValueError(f"sequence of {need} tokens exceeds the model's {max_positions} positions")
        if max(len(x) for x in blocks) == 1:
            b.embeds[...] = engine.step_embeds(next_tokens)
            b.seqlens[:] = lengths  # the new K/V goes to cache position `lengths`
            b.positions[:, 0] = positions
            b.run()
            logits = b.logits
            engine.decode_runs, engine.row_steps = engine.decode_runs + 1, engine.row_steps + len(live)
        else:
            logits = _run_blocks(engine, b, blocks, lengths, positions, capacity)
        sizes = np.array([len(x) for x in blocks], np.int64)
        lengths += sizes
        positions += sizes
    return tokens, chosen


def _run_blocks(
    engine: Engine, b: StepBuffers, blocks: list[list[int]], lengths: np.ndarray, positions: np.ndarray, capacity: int
) -> np.ndarray:
    """Feed each buffer row its block of new tokens; returns each row's logits after its last one.
    One run where the graph takes blocks and the padded block fits every row's buffer; else one
    run per token, the rows whose block has ended idle."""
    sizes = np.array([len(x) for x in blocks], np.int64)
    width = int(sizes.max())
    embeds = engine.step_embeds(np.array([t for x in blocks for t in x], np.int64))[:, 0]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if engine.step_blocks and int(lengths.max()) + width <= capacity:
        own, run = b.block(width)
        own["inputs_embeds"][...] = 0.0
        for k, (start, size) in enumerate(zip(starts, sizes, strict=True)):
            own["inputs_embeds"][k, :size] = embeds[start : start + size]
        steps = np.arange(width, dtype=np.int64)[None]
        own["position_ids"][...] = np.minimum(positions[:, None] + steps, engine.bundle.text.max_positions - 1)
        own["attention_bias"][...] = b.bias[:, :, :1, :]  # each row's padding columns, for every new token
        own["query_seqlens"][:] = sizes
        b.seqlens[:] = lengths + sizes - 1  # the block's K/V goes to positions lengths .. lengths + size - 1
        run()
        engine.decode_runs, engine.row_steps = engine.decode_runs + 1, engine.row_steps + len(blocks)
        return b.logits
    out = np.empty_like(b.logits)
    for step in range(width):
        going = sizes > step
        b.embeds[going, 0] = embeds[starts[going] + step]
        b.seqlens[:] = np.where(going, lengths + step, lengths + sizes - 1)  # idle rows: unchanged
        b.active[:] = going
        b.positions[:, 0] = positions + np.minimum(step, sizes - 1)
        b.run()
        engine.decode_runs, engine.row_steps = engine.decode_runs + 1, engine.row_steps + int(going.sum())
        ending = sizes == step + 1
        out[ending] = b.logits[ending]
    b.active[:] = 1
    return out


def probe_difference(
    run_decoder: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    run_step: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    hidden: int,
    kv_heads: int,
    head_dim: int,
    layers: int,
    mask_value: float,
    seed: int = 0,
) -> tuple[float, float]:
    """One decode step of a random batch of 2 (5 cached positions, row 1 left-padded by one) through
    the decoder graph and through the step graph: the largest |difference| of the logits and the new
    K/V rows, and the largest |value| of those outputs (the scale a quantized graph's rounding is
    judged against). ``run_step`` gets the step graph's feeds, K/V in capacity-sized buffers, and
    returns its outputs by name (``present_*`` may be those same buffers)."""
    rng = np.random.default_rng(seed)
    cached, capacity = 5, 8
    mask = np.zeros((2, 1, 1, cached + 1), np.float32)
    mask[1, ..., 0] = mask_value
    feeds: dict[str, np.ndarray] = {
        "inputs_embeds": rng.standard_normal((2, 1, hidden)).astype(np.float32),
        "attention_mask": mask,
        "position_ids": np.array([[cached], [cached - 1]], np.int64),
    }
    bias = np.zeros((2, 1, 1, capacity), np.float32)
    bias[..., : cached + 1] = mask
    step_feeds: dict[str, np.ndarray] = {
        "inputs_embeds": feeds["inputs_embeds"],
        "position_ids": feeds["position_ids"],
        "attention_bias": bias,
        "seqlens_k": np.full(2, cached, np.int32),
        "total_sequence_length": np.array(capacity, np.int32),
        "query_seqlens": np.ones(2, np.int32),
    }
    for i in range(layers):
        for kind in ("key", "value"):
            name = f"past_{kind}_{i}"
            feeds[name] = rng.standard_normal((2, kv_heads, cached, head_dim)).astype(np.float32)
            step_feeds[name] = np.zeros((2, kv_heads, capacity, head_dim), np.float32)
            step_feeds[name][:, :, :cached] = feeds[name]
    expected = run_decoder(feeds)
    got = run_step(step_feeds)
    worst = float(np.abs(got["logits"] - expected["logits"]).max())
    scale = float(np.abs(expected["logits"]).max())
    for name, present in expected.items():
        if name.startswith("present_"):
            worst = max(worst, float(np.abs(got[name][:, :, : cached + 1] - present).max()))
            scale = max(scale, float(np.abs(present).max()))
    return worst, scale


def difference_to_decoder(engine: Engine, seed: int = 0) -> tuple[float, float]:
    """``probe_difference`` through this engine's backend, the step graph run as decoding runs it
    (every buffer bound, the cache updated in place)."""
    t = engine.bundle.text

    def run_step(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = StepBuffers(engine, 2, int(feeds["total_sequence_length"]))
        b.embeds[...], b.positions[...] = feeds["inputs_embeds"], feeds["position_ids"]
        b.bias[...], b.seqlens[...] = feeds["attention_bias"], feeds["seqlens_k"]
        outputs = {"logits": b.logits}
        for i in range(engine.num_layers):
            for j, kind in enumerate(("key", "value")):
                b.cache[2 * i + j][...] = feeds[f"past_{kind}_{i}"]
                outputs[f"present_{kind}_{i}"] = b.cache[2 * i + j]
        b.run()
        return outputs

    return probe_difference(
        lambda feeds: engine.backend.run("decoder", feeds),
        run_step,
        t.hidden_size,
        t.num_kv_heads,
        t.head_dim,
        engine.num_layers,
        float(engine.mask_value),
        seed,
    )


PROBE_SEEDS = 5  # random probe steps compared at load (and by quantize before it keeps a pair)


def disagreement(
    engine: Engine, seeds: int = PROBE_SEEDS, bounds: Agreement = LOAD_CHECK
) -> tuple[float, float] | None:
    """The load check on ``seeds`` random probe steps: None when every probe is within
    ``allowed_difference``, else the worst probe's (difference, allowed). More than one probe: a
    graph off by a little in one layer can stay within the bound on one probe and not on others."""
    worst: tuple[float, float] | None = None
    for seed in range(seeds):
        difference, scale = difference_to_decoder(engine, seed)
        allowed = allowed_difference(engine, scale, bounds)
        if difference > allowed and (worst is None or difference / allowed > worst[0] / worst[1]):
            worst = (difference, allowed)
    return worst
