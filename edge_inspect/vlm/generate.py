"""Prefill with the prefix-LM mask, KV cache, greedy decoding and yes/no scoring.

The decoder graph takes ``inputs_embeds``, an additive ``attention_mask`` [1, 1, S, P+S],
``position_ids`` and the past K/V of every layer, and returns the last token's logits with the
present K/V. One graph serves the prefill (empty past) and every decode step.

Prefix-LM: during prefill, image-structure tokens attend to each other in both directions
(transformers' ``mm_token_type_ids``); every other token is causal. The image comes right after
BOS in the Molmo2 template, so the K/V of BOS + image tokens does not depend on the question and
is computed once per image (``encode_image``) and reused for every prompt — exactly, not as an
approximation.

Decoding (``greedy_batch``) runs the bundle's decode-step graph where it has one (step_decode.py:
the cache updated in place, every buffer bound once); otherwise the decoder through ``run_into`` (ONNX Runtime I/O binding):
the K/V of every layer lives in two preallocated buffers per layer that the steps write in turn
(the graph's ``present`` of step t is the ``past`` of step t+1, written straight into the other
buffer: no allocation and no copy out of the runtime per step), and a text token's embedding is a
row of the embedding table read once from the embed graph at load (the graph is Gather + Add, so
the row is exactly what the graph returns; checked at load, else the graph is run).

Batches: several prompts about one image are prefilled in one decoder run, left-padded so that
every row's last token is the last position (the decoder returns last-position logits); padding
is masked out of every real row's attention and real tokens keep their unpadded position ids, so
each row computes what it would alone. Pointing rows are then decoded together, each stopping at
its own stop token (finished rows leave the batch).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from . import step_decode
from .backends import Backend, run_into
from .batches import Batch, EncodedImage, KVCache, Step
from .bundle import Bundle
from .features import pool_features
from .grammar import Constraint
from .preprocess import ImageInputs
from .prompt import PromptBuilder, PromptIds

log = logging.getLogger(__name__)

# Embedding tables above this size stay in the embed graph (a 150 k × 2560 fp32 table is 1.5 GB).
MAX_TABLE_BYTES = 256 << 20


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class Engine:
    """Runs the three graphs of a bundle; no knowledge of stations or checks."""

    def __init__(
        self,
        bundle: Bundle,
        backend: Backend,
        prompts: PromptBuilder,
        agreement: step_decode.Agreement = step_decode.LOAD_CHECK,
        step_graph: bool = True,
        step_blocks: bool = True,
    ):
        """``agreement``: the bounds of the load check of the decode-step graph (step_decode.py);
        ``step_graph``: decode through that graph where it passes the check (False: through the decoder
        graph always, as where the bundle has none); ``step_blocks``: feed it blocks of forced tokens
        where it takes them (False: one token a run, as an older bundle's step graph)."""
        self.bundle = bundle
        self.agreement = agreement
        self.backend = backend
        self.prompts = prompts
        self.num_layers = bundle.text.num_layers
        decoder_precision = bundle.precision("decoder")
        # fp16 graphs overflow with finfo(float32).min; -1e4 is far enough for softmax.
        self.mask_value = np.float32(-1e4 if decoder_precision == "fp16" else np.finfo(np.float32).min)
        t = bundle.text
        self._empty = np.zeros((1, t.num_kv_heads, 0, t.head_dim), dtype=np.float32)
        self.table = self._embedding_table()
        self.step_graph = step_graph and self._check_step_graph()
        # Jump-forward (step graph only): tokens a row's grammar forces are appended without sampling
        # and fed in one run with the token before them where the step graph takes blocks. Not for a
        # quantized step graph: its kernels round the activations of a block of tokens differently
        # from one token's (|Δlogit| up to 0.08 on the demo student), which flips near-ties (3 of 200
        # answers); it is fed the forced tokens one run each, and answers as without jump-forward.
        self.step_blocks = (
            step_blocks
            and self.step_graph
            and step_decode.takes_blocks(backend)
            and bundle.precision(step_decode.STEP_GRAPH) == "fp32"
        )
        self.jump_forward = True
        self.decode_runs = self.row_steps = 0  # decode runs so far, and rows fed in them (benches)

    def _check_step_graph(self) -> bool:
        """Whether to decode through the bundle's decode-step graph: present, loaded, and computing
        what the decoder graph computes (random probe steps, compared at load)."""
        if not step_decode.available(self.backend):
            return False
        try:
            worst = step_decode.disagreement(self, bounds=self.agreement)
        except Exception as err:  # onnxruntime's own types: a graph with other inputs, an op it cannot run
            log.warning(
                "%s: not used (%s); decoding with the decoder graph",
                self.bundle.graph_path(step_decode.STEP_GRAPH),
                str(err).splitlines()[0],
            )
            return False
        if worst is not None:
            log.warning(
                "%s: the decode-step graph differs from the decoder graph by %.2e (allowed %.1e); "
                "decoding with the decoder graph",
                self.bundle.path,
                *worst,
            )
            return False
        return True

    def _embedding_table(self) -> np.ndarray | None:
        """The embed graph's token table, read by running it once over every id; None when the
        graph is not a plain lookup + add (then every embedding runs the graph)."""
        hidden = self.bundle.text.hidden_size
        rows = max(self.prompts.tokenizer.get_vocab_size(with_added_tokens=True), self.bundle.text.vocab_size)
        if rows * hidden * 4 > MAX_TABLE_BYTES:
            return None
        try:
            ids = np.arange(rows, dtype=np.int64)[None]
            out = self.backend.run("embed", {"input_ids": ids, "image_embeds": np.zeros((1, rows, hidden), np.float32)})
            table = np.ascontiguousarray(out["inputs_embeds"][0], dtype=np.float32)
            probe_ids = np.array([[0, rows - 1, rows // 2, 1]], dtype=np.int64)
            extra = np.random.default_rng(0).standard_normal((1, 4, hidden)).astype(np.float32)
            graph = self.backend.run("embed", {"input_ids": probe_ids, "image_embeds": extra})["inputs_embeds"]
        except Exception:  # a graph that refuses the probe: keep running it
            return None
        if table.shape != (rows, hidden) or not np.array_equal(graph, table[probe_ids] + extra):
            return None
        return table

    # -- building blocks -------------------------------------------------------------------
    def empty_cache(self) -> KVCache:
        empty = (self._empty,) * self.num_layers
        return KVCache(keys=empty, values=empty, image_flags=np.zeros(0, dtype=bool))

    def vision(self, inputs: ImageInputs) -> np.ndarray:
        if np.any(np.all(inputs.pooling < 0, axis=1)):
            raise ValueError("pooling indices contain a token with no patch; preprocessing settings are inconsistent")
        out = self.backend.run("vision", {"pixel_values": inputs.pixel_values, "pooling": inputs.pooling})
        return out["image_features"]

    def embed(self, ids: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Token embeddings, with image features added onto the ``<im_patch>`` positions."""
        ids2 = ids.reshape(1, -1).astype(np.int64)
        image_embeds = np.zeros((1, ids2.shape[1], self.bundle.text.hidden_size), dtype=np.float32)
        patch_positions = np.flatnonzero(ids2[0] == self.bundle.tokens.image_patch)
        if features is not None or len(patch_positions):
            n_features = 0 if features is None else features.shape[0]
            if n_features != len(patch_positions):
                raise ValueError(
                    f"prompt has {len(patch_positions)} image patch tokens but the image gave {n_features} features"
                )
            image_embeds[0, patch_positions] = features
        if self.table is not None and (ids2.size == 0 or int(ids2.max()) < self.table.shape[0]):
            return self.table[ids2] + image_embeds
        return self.backend.run("embed", {"input_ids": ids2, "image_embeds": image_embeds})["inputs_embeds"]

    def attention_mask(self, past: KVCache, chunk_flags: np.ndarray, prefix_lm: bool = True) -> np.ndarray:
        """Additive mask [1, 1, S, P+S]: causal, plus image×image when ``prefix_lm``."""
        p, s = past.length, len(chunk_flags)
        rows = np.arange(s)[:, None] + p
        cols = np.arange(p + s)[None, :]
        allowed = cols <= rows
        if prefix_lm:
            all_flags = np.concatenate([past.image_flags, chunk_flags])
            allowed |= chunk_flags[:, None] & all_flags[None, :]
        mask = np.where(allowed, np.float32(0.0), self.mask_value).astype(np.float32)
        return mask[None, None]

    def forward(self, embeds: np.ndarray, flags: np.ndarray, past: KVCache, prefix_lm: bool = True) -> Step:
        """Feed a chunk of embedded tokens after ``past``."""
        p, s = past.length, embeds.shape[1]
        if p + s > self.bundle.text.max_positions:
            raise ValueError(
                f"sequence of {p + s} tokens exceeds the model's {self.bundle.text.max_positions} positions"
            )
        feeds = {
            "inputs_embeds": embeds,
            "attention_mask": self.attention_mask(past, flags, prefix_lm),
            "position_ids": np.arange(p, p + s, dtype=np.int64)[None],
        }
        for i in range(self.num_layers):
            feeds[f"past_key_{i}"] = past.keys[i]
            feeds[f"past_value_{i}"] = past.values[i]
        out = self.backend.run("decoder", feeds)
        cache = KVCache(
            keys=tuple(out[f"present_key_{i}"] for i in range(self.num_layers)),
            values=tuple(out[f"present_value_{i}"] for i in range(self.num_layers)),
            image_flags=np.concatenate([past.image_flags, flags]),
        )
        return Step(logits=out["logits"][0], cache=cache)

    def feed(self, ids: np.ndarray, past: KVCache, features: np.ndarray | None = None, prefix_lm: bool = True) -> Step:
        return self.forward(self.embed(ids, features), self.prompts.image_mask(ids), past, prefix_lm)

    # -- images and prompts ----------------------------------------------------------------
    def encode_image(self, inputs: ImageInputs, reuse_prefix: bool = True) -> EncodedImage:
        start = time.perf_counter()
        features = self.vision(inputs)
        timings = {"vision_ms": _ms(start)}
        encoded = EncodedImage(
            inputs=inputs, features=features, prefix_ids=None, prefix_kv=None, timings_ms=timings,
            pooled=pool_features(features, inputs.grid),
        )  # fmt: skip
        if reuse_prefix and self.prompts.reusable_prefix:
            start = time.perf_counter()
            prompt = self.prompts.build("", inputs.grid)
            encoded.prefix_ids = prompt.ids[: prompt.image_end]
            encoded.prefix_kv = self.feed(encoded.prefix_ids, self.empty_cache(), features).cache
            timings["image_prefill_ms"] = _ms(start)
        return encoded

    def encode_images(self, inputs: list[ImageInputs], reuse_prefix: bool = True) -> list[EncodedImage]:
        """Several images (the views of one part) through the vision graph in one run: their crops
        stacked, each image's pooling indices moved past the crops before it; then each image's prefix
        as encode_image does. The same features as one run per image (the ViT sees each crop alone;
        up to float rounding of the batched matrix products)."""
        if len(inputs) == 1:
            return [self.encode_image(inputs[0], reuse_prefix)]
        start = time.perf_counter()
        pixels, pooling, offset = [], [], 0
        for one in inputs:
            pixels.append(one.pixel_values)
            pooling.append(np.where(one.pooling >= 0, one.pooling + offset, -1))
            offset += one.pixel_values.shape[0] * one.pixel_values.shape[1]
        stacked = ImageInputs(np.concatenate(pixels), np.concatenate(pooling), inputs[0].grid, inputs[0].tiling)
        features = self.vision(stacked)
        vision_ms = _ms(start) / len(inputs)
        out, row = [], 0
        for one in inputs:
            own = features[row : row + one.pooling.shape[0]]
            row += one.pooling.shape[0]
            encoded = EncodedImage(
                inputs=one, features=own, prefix_ids=None, prefix_kv=None, timings_ms={"vision_ms": vision_ms},
                pooled=pool_features(own, one.grid),
            )  # fmt: skip
            if reuse_prefix and self.prompts.reusable_prefix:
                start = time.perf_counter()
                prompt = self.prompts.build("", one.grid)
                encoded.prefix_ids = prompt.ids[: prompt.image_end]
                encoded.prefix_kv = self.feed(encoded.prefix_ids, self.empty_cache(), own).cache
                encoded.timings_ms["image_prefill_ms"] = _ms(start)
            out.append(encoded)
        return out

    def prefill(self, image: EncodedImage, question: str, prefix_lm: bool = True) -> tuple[Step, PromptIds]:
        """Next-token logits after the full prompt for ``question`` about ``image``."""
        prompt = self.prompts.build(question, image.inputs.grid)
        head = prompt.ids[: prompt.image_end]
        if (
            image.prefix_kv is not None
            and image.prefix_ids is not None
            and prefix_lm
            and np.array_equal(head, image.prefix_ids)
        ):
            return self.feed(prompt.ids[prompt.image_end :], image.prefix_kv), prompt
        return self.feed(prompt.ids, self.empty_cache(), image.features, prefix_lm), prompt

    def greedy_stepwise(
        self, step: Step, max_new_tokens: int, stop_ids: tuple[int, ...] | None = None
    ) -> tuple[list[int], list[np.ndarray]]:
        """The reference decoding loop: one ``feed`` (embed graph + decoder, K/V as numpy arrays in
        and out) per token. ``greedy`` computes the same thing faster; benches and tests compare them."""
        stop = set(self.bundle.tokens.eos if stop_ids is None else stop_ids)
        tokens: list[int] = []
        logits: list[np.ndarray] = []
        while len(tokens) < max_new_tokens:
            token = int(np.argmax(step.logits))
            tokens.append(token)
            logits.append(step.logits)
            if token in stop or len(tokens) == max_new_tokens:
                break
            step = self.feed(np.array([token], dtype=np.int64), step.cache)
        return tokens, logits

    def greedy(
        self,
        step: Step,
        max_new_tokens: int,
        stop_ids: tuple[int, ...] | None = None,
        constraint: Constraint | None = None,
    ) -> tuple[list[int], list[np.ndarray]]:
        """Greedy decoding from ``step``; returns the new token ids and the logits that chose each one."""
        constraints: list[Constraint | None] | None = None if constraint is None else [constraint]
        tokens, logits = self.greedy_batch(Batch.from_step(step), max_new_tokens, stop_ids, constraints=constraints)
        return tokens[0], logits[0]

    # -- batches ---------------------------------------------------------------------------
    def prefill_batch(
        self, image: EncodedImage, questions: list[str], prefix_lm: bool = True
    ) -> tuple[Batch, list[PromptIds]]:
        """One decoder run for several prompts about ``image`` (left-padded rows)."""
        if not questions:
            raise ValueError("prefill_batch needs at least one prompt")
        prompts = [self.prompts.build(q, image.inputs.grid) for q in questions]
        prefix_ids, prefix_kv = image.prefix_ids, image.prefix_kv
        reuse = (
            prefix_kv is not None
            and prefix_ids is not None
            and prefix_lm
            and all(np.array_equal(p.ids[: p.image_end], prefix_ids) for p in prompts)
        )
        past = prefix_kv if reuse and prefix_kv is not None else self.empty_cache()
        chunks = [p.ids[p.image_end :] if reuse else p.ids for p in prompts]
        features = None if reuse else image.features
        b, s, p = len(chunks), max(len(c) for c in chunks), past.length
        if p + s > self.bundle.text.max_positions:
            raise ValueError(
                f"sequence of {p + s} tokens exceeds the model's {self.bundle.text.max_positions} positions"
            )
        embeds = np.zeros((b, s, self.bundle.text.hidden_size), dtype=np.float32)
        mask = np.full((b, 1, s, p + s), self.mask_value, dtype=np.float32)
        positions = np.full((b, s), p, dtype=np.int64)
        attend = np.ones((b, p + s), dtype=bool)
        for row, ids in enumerate(chunks):
            pad = s - len(ids)
            embeds[row, pad:] = self.embed(ids, features)[0]
            own = self.attention_mask(past, self.prompts.image_mask(ids), prefix_lm)[0, 0]  # [len, p + len]
            mask[row, 0, pad:, :p] = own[:, :p]
            mask[row, 0, pad:, p + pad :] = own[:, p:]
            mask[row, 0, np.arange(pad), p + np.arange(pad)] = 0.0  # padding rows see themselves only
            positions[row, pad:] = np.arange(p, p + len(ids))
            attend[row, p : p + pad] = False
        feeds: dict[str, np.ndarray] = {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": positions}
        for i in range(self.num_layers):
            feeds[f"past_key_{i}"] = np.repeat(past.keys[i], b, axis=0) if b > 1 else past.keys[i]
            feeds[f"past_value_{i}"] = np.repeat(past.values[i], b, axis=0) if b > 1 else past.values[i]
        out = self.backend.run("decoder", feeds)
        batch = Batch(
            logits=out["logits"],
            keys=tuple(out[f"present_key_{i}"] for i in range(self.num_layers)),
            values=tuple(out[f"present_value_{i}"] for i in range(self.num_layers)),
            attend=attend,
            positions=np.array([p + len(c) for c in chunks], dtype=np.int64),
        )
        return batch, prompts

    def step_embeds(self, tokens: np.ndarray) -> np.ndarray:
        """The embeddings [rows, 1, hidden] of one new text token per row (``tokens`` [rows])."""
        if self.table is not None and int(tokens.max()) < self.table.shape[0]:
            return self.table[tokens][:, None, :]
        return np.concatenate([self.embed(t[None]) for t in tokens], axis=0)

    def greedy_batch(
        self,
        batch: Batch,
        max_new_tokens: int,
        stop_ids: tuple[int, ...] | None = None,
        rows: list[int] | None = None,
        constraints: list[Constraint | None] | None = None,
    ) -> tuple[list[list[int]], list[list[np.ndarray]]]:
        """Greedy decoding of the rows ``rows`` (default all) of ``batch`` together; each row stops at
        its own stop token or after ``max_new_tokens``. Returns per row of the batch the new token ids
        and the logits that chose each one (empty for rows not decoded). ``constraints[row]``: that
        row's grammar (grammar.Constraint, fresh); each step masks the tokens it forbids."""
        stop = set(self.bundle.tokens.eos if stop_ids is None else stop_ids)
        tokens: list[list[int]] = [[] for _ in range(batch.size)]
        chosen: list[list[np.ndarray]] = [[] for _ in range(batch.size)]
        live = list(range(batch.size)) if rows is None else list(rows)
        if max_new_tokens <= 0 or not live:
            return tokens, chosen
        if self.step_graph:
            return step_decode.greedy_in_place(self, batch, live, max_new_tokens, stop, constraints)
        t = self.bundle.text
        length = batch.attend.shape[1]
        capacity = length + max_new_tokens
        n = len(live)
        per_row = t.num_kv_heads * capacity * t.head_dim
        # Two buffers per K and V of each layer; step t reads one and writes the other.
        buffers = [[np.empty(n * per_row, dtype=np.float32) for _ in range(2 * self.num_layers)] for _ in range(2)]

        def view(buffer: np.ndarray, rows_: int, length_: int) -> np.ndarray:
            return buffer[: rows_ * t.num_kv_heads * length_ * t.head_dim].reshape(
                rows_, t.num_kv_heads, length_, t.head_dim
            )

        for i in range(self.num_layers):
            view(buffers[0][2 * i], n, length)[...] = batch.keys[i][live]
            view(buffers[0][2 * i + 1], n, length)[...] = batch.values[i][live]
        attend = np.zeros((n, capacity), dtype=bool)
        attend[:, :length] = batch.attend[live]
        positions = batch.positions[live].astype(np.int64)
        logits_buffer = np.empty(n * t.vocab_size, dtype=np.float32)
        logits = batch.logits[live]
        current, other = 0, 1
        while True:
            next_tokens, keep = step_decode.take_greedy(
                logits, range(n), live, tokens, chosen, stop, max_new_tokens, constraints
            )
            if not keep:
                break
            if len(keep) < n:  # finished rows leave the batch: copy the live rows into the other buffers
                for k in range(2 * self.num_layers):
                    view(buffers[other][k], len(keep), length)[...] = view(buffers[current][k], n, length)[keep]
                current, other = other, current
                live = [live[j] for j in keep]
                attend, positions, next_tokens = attend[keep], positions[keep], next_tokens[keep]
                n = len(keep)
            if length + 1 > t.max_positions:
                raise ValueError(f"sequence of {length + 1} tokens exceeds the model's {t.max_positions} positions")
            attend[:, length] = True
            feeds = {
                "inputs_embeds": self.step_embeds(next_tokens),
                "attention_mask": np.where(attend[:, None, None, : length + 1], np.float32(0.0), self.mask_value),
                "position_ids": positions[:, None].copy(),
            }
            logits = logits_buffer[: n * t.vocab_size].reshape(n, t.vocab_size)
            outputs = {"logits": logits}
            for i in range(self.num_layers):
                feeds[f"past_key_{i}"] = view(buffers[current][2 * i], n, length)
                feeds[f"past_value_{i}"] = view(buffers[current][2 * i + 1], n, length)
                outputs[f"present_key_{i}"] = view(buffers[other][2 * i], n, length + 1)
                outputs[f"present_value_{i}"] = view(buffers[other][2 * i + 1], n, length + 1)
            run_into(self.backend, "decoder", feeds, outputs)
            self.decode_runs, self.row_steps = self.decode_runs + 1, self.row_steps + n
            current, other = other, current
            length += 1
            positions += 1
        return tokens, chosen

    def yes_no(self, logits: np.ndarray) -> tuple[float, float]:
        """P(yes | yes or no) and the total probability mass on yes/no answers, from one set of logits."""
        z = logits.astype(np.float64)
        z = z - z.max()
        probs = np.exp(z) / np.exp(z).sum()
        p_yes = float(probs[list(self.bundle.tokens.yes)].sum())
        p_no = float(probs[list(self.bundle.tokens.no)].sum())
        mass = p_yes + p_no
        return (p_yes / mass if mass > 0 else 0.5), mass
