"""The model API the appliance uses: load a bundle, encode a frame, ask it things."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from . import step_decode
from .backends import DECODE_STEP_THREADS, OnnxRuntimeBackend, ProviderError
from .bundle import Bundle, BundleError, load_bundle_files
from .generate import EncodedImage, Engine
from .grammar import Constraint, Vocabulary, object_label
from .points import PointAnswer, parse_points
from .preprocess import preprocess, to_rgb
from .prompt import PromptBuilder


@dataclass(frozen=True)
class Generation:
    text: str
    token_ids: list[int]
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class YesNo:
    """A yes/no answer scored from one forward pass.

    ``p_yes`` is P(yes | yes or no); ``margin`` = |2·p_yes − 1| (0 = coin toss, 1 = certain);
    ``mass`` is how much of the next-token probability falls on yes/no tokens at all.
    """

    answer: bool
    p_yes: float
    margin: float
    mass: float
    timings_ms: dict[str, float] = field(default_factory=dict)

    def uncertain(self, min_margin: float) -> bool:
        return self.margin < min_margin


@dataclass(frozen=True)
class Pointing:
    answer: PointAnswer
    text: str
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Answers:
    """Every prompt about one image from one batched prefill: yes/no scores and pointing answers,
    in the order asked. ``timings_ms`` covers the whole batch (one prefill, one decode loop)."""

    yes_no: list[YesNo]
    pointing: list[Pointing]
    timings_ms: dict[str, float] = field(default_factory=dict)


class VisionLanguageModel:
    """A Molmo2 bundle running outside PyTorch."""

    def __init__(
        self,
        bundle: Bundle,
        providers: str | Sequence[str] = "cpu",
        threads: int = 0,
        backend: str = "onnxruntime",
        step_threads: int = DECODE_STEP_THREADS,
        spin: bool | None = None,
        build_engines: bool = False,
        agreement: step_decode.Agreement = step_decode.LOAD_CHECK,
        step_graph: bool = True,
        step_blocks: bool = True,
        max_batch: int | None = None,
    ):
        """``agreement``, ``step_graph``, ``step_blocks``: the decode-step graph's load check and its use
        (Engine); ``max_batch``: the most prompts one decoder run takes, more are answered one by one
        (None: the backend's limit, as TensorRT engines built for one row have, or none)."""
        self.bundle = bundle
        try:
            tokenizer = Tokenizer.from_file(str(bundle.path / "tokenizer.json"))
        except Exception as err:  # tokenizers raises a plain Exception subclass
            raise BundleError(f"{bundle.path / 'tokenizer.json'}: cannot be read: {err}") from None
        self.tokenizer = tokenizer
        self.fallback_reason: str | None = None  # why native TensorRT was not used, when it was asked for
        self.backend = self._make_backend(backend, providers, threads, step_threads, spin, build_engines)
        self.engine = Engine(
            bundle, self.backend, PromptBuilder(tokenizer, bundle.prompt), agreement, step_graph, step_blocks
        )
        limits = [n for n in (max_batch, getattr(self.backend, "max_batch", None)) if n is not None]
        self.max_batch: int | None = min(limits) if limits else None  # the backend's: TensorRT engines' profile
        self._vocabulary: Vocabulary | None = None

    @property
    def vocabulary(self) -> Vocabulary:
        """The answer grammars' view of this bundle's tokenizer, read once (on first use)."""
        if self._vocabulary is None:
            # A Molmo2 bundle answers in Molmo2's coords form (points.format_molmo2_points).
            dialect = "molmo2" if self.bundle.manifest.get("source", {}).get("model_type") == "molmo2" else None
            self._vocabulary = Vocabulary(
                self.tokenizer, self.bundle.text.vocab_size, tuple(self.bundle.tokens.eos), dialect
            )
        return self._vocabulary

    def point_constraint(self, max_points: int | None = None, prompt: str | None = None) -> Constraint:
        """A fresh pointing-answer constraint: the answer always parses, with at most ``max_points``;
        in the bundle's dialect, labelled with the object ``prompt`` names (grammar.object_label)."""
        label = object_label(prompt) if prompt is not None else None
        return Constraint(self.vocabulary.pointing(max_points, label))

    def _make_backend(
        self, backend: str, providers, threads: int, step_threads: int, spin: bool | None, build_engines: bool
    ):
        if backend not in ("onnxruntime", "tensorrt", "auto"):
            raise ProviderError(f"backend {backend!r}: choose onnxruntime, tensorrt or auto")
        if backend in ("tensorrt", "auto"):
            from .engines import compatibility, detect_environment, read_metadata

            metadata = read_metadata(self.bundle.path)
            reason = compatibility(metadata, detect_environment(), self.bundle.sha256)
            if reason is None and metadata is not None:
                from .trt_backend import TensorRTBackend

                return TensorRTBackend(self.bundle, metadata)
            self.fallback_reason = reason
            if backend == "tensorrt":
                warnings.warn(f"TensorRT engines refused: {reason}; using ONNX Runtime", stacklevel=3)
        runtime = OnnxRuntimeBackend(
            self.bundle, providers=providers, threads=threads, step_threads=step_threads, spin=spin,
            build_engines=build_engines,
        )  # fmt: skip
        if runtime.engines_missing and self.fallback_reason is None:
            self.fallback_reason = runtime.engines_missing  # a degraded backend: the alarm, the warning bit
        return runtime

    @property
    def sha256(self) -> str:
        return self.bundle.sha256

    def encode(self, frame: np.ndarray, order: str = "rgb", reuse_prefix: bool = True) -> EncodedImage:
        """Preprocess and run the vision graph once; the result serves every prompt about this frame.

        ``order`` is the channel order of ``frame`` ("bgr" for OpenCV captures)."""
        start = time.perf_counter()
        inputs = preprocess(to_rgb(frame, order), self.bundle.image)
        preprocess_ms = (time.perf_counter() - start) * 1000.0
        encoded = self.engine.encode_image(inputs, reuse_prefix=reuse_prefix)
        encoded.timings_ms["preprocess_ms"] = preprocess_ms
        return encoded

    def encode_many(
        self, frames: Sequence[np.ndarray], order: str = "rgb", reuse_prefix: bool = True
    ) -> list[EncodedImage]:
        """``encode`` for several frames (the views of one part), their vision graphs in one run
        (Engine.encode_images). A backend built for one image at a time (TensorRT engines) encodes
        them one after the other."""
        if len(frames) < 2 or getattr(self.backend, "max_batch", None) is not None:
            return [self.encode(frame, order, reuse_prefix) for frame in frames]
        inputs, ms = [], []
        for frame in frames:
            start = time.perf_counter()
            inputs.append(preprocess(to_rgb(frame, order), self.bundle.image))
            ms.append((time.perf_counter() - start) * 1000.0)
        encoded = self.engine.encode_images(inputs, reuse_prefix=reuse_prefix)
        for one, preprocess_ms in zip(encoded, ms, strict=True):
            one.timings_ms["preprocess_ms"] = preprocess_ms
        return encoded

    def generate(
        self, image: EncodedImage, prompt: str, max_new_tokens: int = 64, constraint: Constraint | None = None
    ) -> Generation:
        start = time.perf_counter()
        step, _ = self.engine.prefill(image, prompt)
        prefill_ms = (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        tokens, _ = self.engine.greedy(step, max_new_tokens, constraint=constraint)
        decode_ms = (time.perf_counter() - start) * 1000.0
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return Generation(
            text=text,
            token_ids=tokens,
            timings_ms={"prefill_ms": prefill_ms, "decode_ms": decode_ms, "tokens": len(tokens)},
        )

    def point(
        self,
        image: EncodedImage,
        prompt: str,
        max_new_tokens: int = 128,
        constrained: bool = True,
        max_points: int | None = None,
    ) -> Pointing:
        """Ask a pointing/counting question; the answer's points are normalized to the image.
        ``constrained``: decode within the pointing grammar (grammar.py), at most ``max_points``."""
        constraint = self.point_constraint(max_points, prompt) if constrained else None
        gen = self.generate(image, prompt, max_new_tokens, constraint)
        return Pointing(answer=parse_points(gen.text), text=gen.text, timings_ms=gen.timings_ms)

    def ask_yes_no(self, image: EncodedImage, question: str) -> YesNo:
        """Score yes vs no from the next-token logits after the question: one forward pass, no decoding."""
        start = time.perf_counter()
        step, _ = self.engine.prefill(image, question)
        p_yes, mass = self.engine.yes_no(step.logits)
        ms = (time.perf_counter() - start) * 1000.0
        return YesNo(
            answer=p_yes >= 0.5, p_yes=p_yes, margin=abs(2 * p_yes - 1), mass=mass, timings_ms={"prefill_ms": ms}
        )

    def _yes_no(self, logits: np.ndarray, timings: dict[str, float]) -> YesNo:
        p_yes, mass = self.engine.yes_no(logits)
        return YesNo(answer=p_yes >= 0.5, p_yes=p_yes, margin=abs(2 * p_yes - 1), mass=mass, timings_ms=timings)

    def ask(
        self,
        image: EncodedImage,
        questions: Sequence[str] = (),
        point_prompts: Sequence[str] = (),
        max_new_tokens: int = 128,
        constrained: bool = True,
        max_points: list[int | None] | None = None,
    ) -> Answers:
        """All prompts about ``image`` at once: the yes/no questions and the pointing prompts share one
        prefill (one decoder run, rows left-padded); the pointing rows are then decoded together, each
        stopping at its own end token. Each answer equals what ``ask_yes_no`` / ``point`` give alone
        (up to float rounding of the batched matrix products). ``constrained``: pointing answers are
        decoded within the pointing grammar, prompt i with at most ``max_points[i]`` points."""
        questions, point_prompts = list(questions), list(point_prompts)
        caps: list[int | None] = list(max_points) if max_points is not None else [None] * len(point_prompts)
        if not questions and not point_prompts:
            return Answers([], [], {"prefill_ms": 0.0, "decode_ms": 0.0, "tokens": 0})
        if self.max_batch is not None and len(questions) + len(point_prompts) > self.max_batch:
            return self._ask_one_by_one(image, questions, point_prompts, max_new_tokens, constrained, caps)
        start = time.perf_counter()
        batch, _ = self.engine.prefill_batch(image, questions + point_prompts)
        prefill_ms = (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        point_rows = list(range(len(questions), batch.size))
        constraints = [None] * len(questions) + [
            self.point_constraint(c, p) if constrained else None for c, p in zip(caps, point_prompts, strict=True)
        ]
        tokens, _ = self.engine.greedy_batch(batch, max_new_tokens, rows=point_rows, constraints=constraints)
        decode_ms = (time.perf_counter() - start) * 1000.0
        n_tokens = sum(len(tokens[r]) for r in point_rows)
        shared = {"prefill_ms": prefill_ms, "batch": float(batch.size)}
        yes_no = [self._yes_no(batch.logits[r], dict(shared)) for r in range(len(questions))]
        pointing = []
        for r in point_rows:
            text = self.tokenizer.decode(tokens[r], skip_special_tokens=True)
            pointing.append(
                Pointing(
                    answer=parse_points(text),
                    text=text,
                    timings_ms={**shared, "decode_ms": decode_ms, "tokens": len(tokens[r])},
                )
            )
        return Answers(yes_no, pointing, {"prefill_ms": prefill_ms, "decode_ms": decode_ms, "tokens": n_tokens})

    def _ask_one_by_one(
        self,
        image: EncodedImage,
        questions: list[str],
        point_prompts: list[str],
        max_new_tokens: int,
        constrained: bool,
        caps: list[int | None],
    ) -> Answers:
        yes_no = [self.ask_yes_no(image, q) for q in questions]
        pointing = [
            self.point(image, p, max_new_tokens, constrained, cap) for p, cap in zip(point_prompts, caps, strict=True)
        ]
        timings = {
            "prefill_ms": sum(a.timings_ms["prefill_ms"] for a in yes_no + pointing),
            "decode_ms": sum(p.timings_ms["decode_ms"] for p in pointing),
            "tokens": sum(p.timings_ms["tokens"] for p in pointing),
        }
        return Answers(yes_no, pointing, timings)


def load_bundle(
    path: str | Path,
    providers: str | Sequence[str] = "cpu",
    threads: int = 0,
    backend: str = "onnxruntime",
    step_threads: int = DECODE_STEP_THREADS,
    spin: bool | None = None,
    build_engines: bool = False,
    agreement: step_decode.Agreement = step_decode.LOAD_CHECK,
    step_graph: bool = True,
    step_blocks: bool = True,
) -> VisionLanguageModel:
    """Verify and load a model bundle. Raises ``BundleError`` with a one-line reason.

    ``backend``: "onnxruntime" (with ``providers``), "tensorrt" (the bundle's engines; refused with
    a warning and replaced by ONNX Runtime when they do not fit this machine) or "auto".
    ``agreement``: the bounds of the decode-step graph's load check (step_decode.LOAD_CHECK);
    ``step_graph``: False decodes through the decoder graph even where the step graph passes it;
    ``step_blocks``: False feeds the step graph one token a run even where it takes blocks."""
    return VisionLanguageModel(
        load_bundle_files(path),
        providers=providers,
        threads=threads,
        backend=backend,
        step_threads=step_threads,
        spin=spin,
        build_engines=build_engines,
        agreement=agreement,
        step_graph=step_graph,
        step_blocks=step_blocks,
    )
