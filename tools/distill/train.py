"""Train a student Molmo2 from records (JSONL from a teacher or the generator, or generated on the fly),
or fine-tune one from a bundle on a station's reviewed records mixed with replay (mixing.py).

Fixed seeds, bfloat16 autocast on CPU, AdamW with warm-up and cosine decay, a progress bar, a
checkpoint every ``save_every`` steps that ``--resume`` continues from, and a JSONL log of the loss
and of periodic evaluations (the learning curve).
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_inspect.vlm.preprocess import ImageSettings, preprocess
from edge_inspect.vlm.prompt import PromptBuilder
from tools.export.onnx_bundle import LINEAGE_FILE
from tools.molmo2.tiny import special_id

from .dataset import Record, read_jsonl, sim_record
from .grounding import COLUMNS, GroundingHead, token_targets
from .mixing import DEFAULT_CORRECTED_WEIGHT, DEFAULT_SHARE, GENERATED, Mix, build_mix, parent_of
from .student import SHAPES, build_student, image_settings, prompt_builder, save_student

TRAIN_SEED_BASE = 1_000_000  # generator seeds used for training start here; evaluation uses lower seeds


@dataclass
class TrainConfig:
    out: str
    shape: str = "demo"
    steps: int = 3000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    data: str | None = None  # JSONL; None = generate parts on the fly
    save_every: int = 250
    eval_every: int = 500
    eval_parts: int = 40
    threads: int = 0
    workers: int = 1  # data worker processes (0: batches made in this process)
    bf16: bool | None = None  # bfloat16 autocast; None: where the CPU computes bfloat16 natively (native_bf16)
    max_minutes: float = 0.0  # stop (with a checkpoint) after this long; 0 = no limit
    grounding: float = 1.0  # weight of the auxiliary grounding loss (0 = off)
    task_weights: dict[str, float] | None = None  # how often each task is drawn (default dataset.TASK_WEIGHTS)
    stop_at: int = 0  # save and stop after this step (a phase of a schedule; --resume continues); 0 = run to steps
    digits: float = 0.0  # weight of the grounding head's coordinate-digit targets (0 = off)
    augment: bool = True  # generated parts: random camera geometry/photometry and phrasings (dataset.sim_record)
    init_from: str | None = (
        None  # a bundle whose weights a new run starts from (from_bundle.py); the grounding head starts fresh
    )
    defect_counts: tuple[int, ...] | None = None  # defect-pointing parts: their number of defects drawn from this list
    defect_kinds: tuple[str, ...] | None = None  # generated parts: the defect kinds drawn (None: the generator's own)
    # Fine-tune (mixing.py): replay sources (GENERATED and/or records files); None: generated parts
    # when ``data`` is an export folder, none for a records file
    replay: list[str] | None = None
    replay_share: float = DEFAULT_SHARE  # share of examples drawn from replay when there is any
    corrected_weight: float = DEFAULT_CORRECTED_WEIGHT  # a corrected reviewed record against a confirmed one


Encoder = Callable[[Record, ImageSettings, PromptBuilder, int], dict[str, np.ndarray]]  # encode_record's signature


def encode_record(rec: Record, settings: ImageSettings, builder: PromptBuilder, eos_id: int) -> dict[str, np.ndarray]:
    rgb = rec.rgb()
    inputs = preprocess(rgb, settings)
    prompt = builder.build(rec.prompt, inputs.grid)
    target = np.concatenate([builder.encode_text(rec.target), [eos_id]]).astype(np.int64)
    ids = np.concatenate([prompt.ids, target])
    labels = np.concatenate([np.full(len(prompt.ids), -100), target])
    if rec.region_masks is not None:
        aux = token_targets(rec.region_masks, rec.region_points or {}, rgb.shape[:2], settings)
        aux_weight = np.ones(len(aux), np.float32)
    else:
        aux = np.zeros((inputs.num_tokens, COLUMNS), np.float32)
        aux_weight = np.zeros(len(aux), np.float32)
    return {
        "pixel_values": inputs.pixel_values,
        "pooling": inputs.pooling,
        "grid": np.array(inputs.grid),
        "ids": ids,
        "labels": labels,
        "mm": builder.image_mask(ids).astype(np.int64),
        "aux": aux,
        "aux_weight": aux_weight,
    }


def collate(items: list[dict[str, np.ndarray]], pad_id: int) -> dict[str, torch.Tensor]:
    length = max(len(it["ids"]) for it in items)
    ids = np.full((len(items), length), pad_id, np.int64)
    labels = np.full((len(items), length), -100, np.int64)
    mm = np.zeros((len(items), length), np.int64)
    attention = np.zeros((len(items), length), np.int64)
    pooling, offset = [], 0
    for i, it in enumerate(items):
        n = len(it["ids"])
        ids[i, :n], labels[i, :n], mm[i, :n], attention[i, :n] = it["ids"], it["labels"], it["mm"], 1
        pooling.append(np.where(it["pooling"] >= 0, it["pooling"] + offset, -1))
        offset += it["pixel_values"].shape[0] * it["pixel_values"].shape[1]
    return {
        "input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels),
        "attention_mask": torch.from_numpy(attention), "mm_token_type_ids": torch.from_numpy(mm),
        "pixel_values": torch.from_numpy(np.concatenate([it["pixel_values"] for it in items])),
        "image_token_pooling": torch.from_numpy(np.concatenate(pooling)),
        "image_grids": torch.from_numpy(np.stack([it["grid"] for it in items])),
        "image_num_crops": torch.tensor([it["pixel_values"].shape[0] for it in items]),
        "aux": torch.from_numpy(np.concatenate([it["aux"] for it in items])),
        "aux_weight": torch.from_numpy(np.concatenate([it["aux_weight"] for it in items])),
    }  # fmt: skip


class RecordSource(torch.utils.data.Dataset):
    """Index → encoded example; generator parts on the fly, or JSONL records (shuffled by epoch)."""

    def __init__(
        self,
        records: list[Record] | None,
        settings: ImageSettings,
        builder: PromptBuilder,
        eos_id: int,
        seed: int,
        task_weights: dict[str, float] | None = None,
        augment: bool = False,
        defect_counts: tuple[int, ...] | None = None,
        mix: Mix | None = None,
        defect_kinds: tuple[str, ...] | None = None,
        encode: Encoder = encode_record,
    ):
        self.records, self.settings, self.builder, self.eos_id, self.seed = records, settings, builder, eos_id, seed
        self.task_weights, self.augment, self.defect_counts, self.mix = task_weights, augment, defect_counts, mix
        self.defect_kinds, self.encode = defect_kinds, encode

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if self.mix is not None:  # a fine-tune: reviewed records and replay
            rec = self.mix.draw(index)
        elif self.records is None:
            rec = sim_record(
                TRAIN_SEED_BASE + self.seed * 10_000_000 + index,
                weights=self.task_weights,
                augment=self.augment,
                defect_counts=self.defect_counts,
                defect_kinds=self.defect_kinds,
            )
        else:
            epoch, k = divmod(index, len(self.records))
            order = np.random.default_rng(self.seed + epoch).permutation(len(self.records))
            rec = self.records[order[k]]
        return self.encode(rec, self.settings, self.builder, self.eos_id)


def native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16 or AMX). Without them autocast emulates
    bfloat16 and a training step ran ~15× slower than in float32 (AVX2 EPYC: 35 s vs 2.4 s)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _start_from_bundle(model: torch.nn.Module, tok, bundle: Path) -> None:
    """Load a new run's weights from an exported bundle of the same shape and tokenizer."""
    from tokenizers import Tokenizer

    from .from_bundle import BundleWeightsError, load_from_bundle

    tokenizer = bundle / "tokenizer.json"
    if not tokenizer.is_file() or Tokenizer.from_file(str(tokenizer)).get_vocab() != tok.get_vocab():
        raise BundleWeightsError(f"{tokenizer}: missing, or not this student's tokenizer")
    difference = load_from_bundle(model, bundle)
    if difference:
        raise BundleWeightsError(f"{bundle}: weights read back differ from the bundle's by {difference:.1e}")
    print(f"weights from {bundle} (re-export identical); the grounding head starts fresh")


def train(
    cfg: TrainConfig, resume: bool = False, evaluate_fn: Callable | None = None, encode: Encoder = encode_record
) -> Path:
    """Train (or resume) the run ``cfg`` describes; returns its checkpoint folder. ``encode``: turns each
    drawn record into the model's inputs (encode_record; a test wraps it to see what was drawn)."""
    out = Path(cfg.out)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    shape = SHAPES[cfg.shape]
    model, tok = build_student(shape, cfg.seed)
    settings = image_settings(shape)
    builder = prompt_builder(tok)
    eos_id, pad_id = special_id(tok, "<|im_end|>"), special_id(tok, "<|endoftext|>")
    head = GroundingHead(shape.text_hidden)
    params = list(model.named_parameters()) + [(f"grounding.{n}", p) for n, p in head.proj.named_parameters()]
    decay = [p for n, p in params if p.dim() >= 2 and "embed" not in n and "positional" not in n]
    no_decay = [p for n, p in params if not (p.dim() >= 2 and "embed" not in n and "positional" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )

    def add_digit_groups() -> None:  # the digit read-out has its own groups: a run may switch it on when resumed
        optimizer.add_param_group({"params": [head.digits.weight], "weight_decay": cfg.weight_decay})
        optimizer.add_param_group({"params": [head.digits.bias], "weight_decay": 0.0})

    step, elapsed, cpu_before = 0, 0.0, 0.0
    state_path = out / "train_state.pt"
    if resume and state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        # a state saved before the digit read-out existed has only the two base groups
        has_digits = len(state["optimizer"]["param_groups"]) > len(optimizer.param_groups)
        head.load_state_dict(state["grounding_head"], strict=has_digits)
        if has_digits:
            add_digit_groups()
        optimizer.load_state_dict(state["optimizer"])
        if not has_digits:
            add_digit_groups()
        step, elapsed = state["step"], state["elapsed"]
        cpu_before = state.get("cpu_seconds", 0.0)  # a state saved before CPU time was kept has none
        torch.set_rng_state(state["torch_rng"])
    else:
        add_digit_groups()
        if cfg.init_from:
            _start_from_bundle(model, tok, Path(cfg.init_from))
    generated_seed = TRAIN_SEED_BASE + cfg.seed * 10_000_000
    mix, data_lineage = build_mix(
        cfg.data, cfg.replay, cfg.replay_share, cfg.corrected_weight, cfg.seed, generated_seed,
        cfg.task_weights, cfg.augment, cfg.defect_counts, cfg.defect_kinds,
    )  # fmt: skip
    records = read_jsonl(Path(cfg.data), load_masks=False) if cfg.data and mix is None else None
    bf16 = native_bf16() if cfg.bf16 is None else cfg.bf16
    out.mkdir(parents=True, exist_ok=True)  # only now: a bad --init-from or --data leaves no empty run folder behind
    (out / "train_config.json").write_text(
        json.dumps({**asdict(cfg), "bf16_used": bf16, "shape_values": asdict(shape)}, indent=2)
    )

    source = RecordSource(
        records, settings, builder, eos_id, cfg.seed, cfg.task_weights, cfg.augment, cfg.defect_counts, mix,
        cfg.defect_kinds, encode,
    )  # fmt: skip
    lineage = {
        "parent": parent_of(cfg.init_from), **data_lineage, "steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr,
        "seed": cfg.seed, "generated_seeds_from": generated_seed, "drawn": {},
    }  # fmt: skip
    lineage_path = out / LINEAGE_FILE
    if resume and lineage_path.is_file():  # the tally goes on
        lineage["drawn"] = json.loads(lineage_path.read_text()).get("drawn", {})
    drawn: dict[str, int] = lineage["drawn"]

    def tally(step: int) -> None:  # the sources of this step's examples (cheap: no record is made)
        if mix is None:
            name = "generated" if records is None else "records"
            drawn[name] = drawn.get(name, 0) + cfg.batch
            return
        for index in range(step * cfg.batch, (step + 1) * cfg.batch):
            name = mix.pick(index)[0]
            name = name if name in ("reviewed", GENERATED) else f"replay:{Path(name).name}"
            drawn[name] = drawn.get(name, 0) + 1

    def write_lineage() -> None:
        lineage_path.write_text(json.dumps(lineage, indent=2) + "\n")

    write_lineage()
    sampler = range(step * cfg.batch, (cfg.steps + 1) * cfg.batch)
    # workers=0 makes the batches in this process: a forked data worker copies whatever locks other
    # threads of the parent hold, and inside a long-lived process with servers and camera threads (a
    # test run) it hung in torch's fd sharing. The training command runs alone and uses one worker.
    loader = torch.utils.data.DataLoader(
        source,
        batch_size=cfg.batch,
        sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=functools.partial(collate, pad_id=pad_id),
        prefetch_factor=4 if cfg.workers else None,
        persistent_workers=False,
    )
    log = open(out / "log.jsonl", "a")
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    started = time.perf_counter() - elapsed
    cpu_started = time.process_time() - cpu_before  # this process's CPU time, all threads: the budget's measure

    def cpu_minutes() -> float:
        return (time.process_time() - cpu_started) / 60

    losses: list[float] = []
    aux_losses: list[float] = []

    def save() -> None:
        write_lineage()
        torch.save(
            {
                "model": model.state_dict(),
                "grounding_head": head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed": time.perf_counter() - started,
                "cpu_seconds": cpu_minutes() * 60,
                "torch_rng": torch.get_rng_state(),
            },
            state_path,
        )

    for batch in loader:
        if step >= cfg.steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        aux, aux_weight = batch.pop("aux"), batch.pop("aux_weight")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            image = model.model.get_image_features(
                batch.pop("pixel_values"), batch.pop("image_token_pooling"), batch.pop("image_grids")
            )
            batch.pop("image_num_crops")
            lm_loss = model(**batch, mm_encoder_outputs={"image": image}).loss
            aux_loss = (
                head.loss(torch.cat(image.pooler_output), aux, aux_weight, cfg.digits) if cfg.grounding else lm_loss * 0
            )
            loss = lm_loss + cfg.grounding * aux_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tally(step)
        step += 1
        losses.append(lm_loss.item())
        aux_losses.append(aux_loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", grounding=f"{np.mean(aux_losses[-20:]):.3f}")
        minutes = (time.perf_counter() - started) / 60
        if step % 10 == 0:
            log.write(
                json.dumps(
                    {
                        "step": step,
                        "minutes": round(minutes, 2),
                        "cpu_minutes": round(cpu_minutes(), 2),
                        "loss": float(np.mean(losses[-10:])),
                        "grounding_loss": float(np.mean(aux_losses[-10:])),
                        "lr": lr_at(step, cfg),
                        "drawn": dict(drawn),
                    }
                )
                + "\n"
            )
            log.flush()
        if step % cfg.save_every == 0 or step == cfg.steps:
            save()
        if evaluate_fn and (step % cfg.eval_every == 0 or step == cfg.steps):
            model.eval()
            metrics = evaluate_fn(model, tok, settings, builder, cfg.eval_parts)
            model.train()
            log.write(json.dumps({"step": step, "minutes": round(minutes, 2), "eval": metrics}) + "\n")
            log.flush()
            bar.write(f"step {step} ({minutes:.1f} min): {json.dumps(metrics)}")
        if cfg.max_minutes and minutes >= cfg.max_minutes:
            save()
            bar.write(f"stopping after {minutes:.1f} minutes at step {step}")
            break
        if cfg.stop_at and step >= cfg.stop_at:
            save()
            bar.write(f"stopping at step {step} (--stop-at); --resume continues")
            break
    bar.close()
    log.close()
    model.eval()
    write_lineage()
    checkpoint = save_student(model, tok, shape, out / "checkpoint")
    (checkpoint / LINEAGE_FILE).write_text(lineage_path.read_text())  # tools.export puts it in the manifest
    return checkpoint
