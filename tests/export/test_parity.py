"""The exported bundle on ONNX Runtime computes what transformers computes.

A small random Molmo2ForConditionalGeneration (fan-in re-initialized, so image features matter),
saved as a hub-style checkpoint with legacy config keys and a locally made tokenizer, exported
with tools/export; compared with PyTorch given ``mm_token_type_ids``.
"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity needs the 'export' extra (torch, transformers)")

from edge_inspect.vlm import load_bundle  # noqa: E402
from tools.export.hf_reference import HFImageProcessor, hf_inputs  # noqa: E402
from tools.molmo2.checkpoint import load_checkpoint  # noqa: E402

TOLERANCE = 1e-4
DECODE_STEPS = 16
# Two image sizes whose crop tilings differ (max_crops 4, 112 px crops).
IMAGES = [(100, 150), (300, 200), (90, 300)]


@pytest.fixture(scope="module")
def hf_model(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def model(tiny_bundle):
    return load_bundle(tiny_bundle)


def _frame(h, w, seed=3):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_checkpoint_uses_released_key_names(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert "vit_config" in config and "image_default_input_size" in config["vit_config"]
    assert "vit_layers" in config["adapter_config"]


def test_image_features_are_not_negligible(model):
    features = model.encode(_frame(100, 150)).features
    assert np.abs(features).mean() > 0.1  # HF's std-0.02 init would give ~1e-6


@pytest.mark.parametrize("h,w", IMAGES)
def test_prefill_and_decode_logits_match_pytorch(model, hf_model, tiny_checkpoint, h, w):
    frame = _frame(h, w)
    image = model.encode(frame)
    question = "Point to the screws."
    step, prompt = model.engine.prefill(image, question)
    tokens, logits = model.engine.greedy(step, DECODE_STEPS + 1, stop_ids=())

    inputs = hf_inputs(HFImageProcessor.from_checkpoint(tiny_checkpoint), frame, model.engine, question)
    assert np.array_equal(inputs["input_ids"][0].numpy(), prompt.ids)
    with torch.no_grad():
        out = hf_model(**inputs, use_cache=True)
        diffs = [float(np.abs(out.logits[0, -1].numpy() - logits[0]).max())]
        past = out.past_key_values
        for i in range(DECODE_STEPS):
            out = hf_model(input_ids=torch.tensor([[tokens[i]]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            diffs.append(float(np.abs(out.logits[0, -1].numpy() - logits[i + 1]).max()))
    print(f"{w}x{h} tiling {image.inputs.tiling}: max |dlogit| prefill {diffs[0]:.2e}, decode {max(diffs[1:]):.2e}")
    assert len(diffs) == DECODE_STEPS + 1
    assert max(diffs) <= TOLERANCE, diffs


def test_sizes_cover_different_tilings(model):
    tilings = {model.encode(_frame(h, w)).inputs.tiling for h, w in IMAGES}
    assert len(tilings) >= 2, tilings


@pytest.mark.parametrize("h,w", IMAGES[:2])
def test_greedy_tokens_match_generate(model, hf_model, tiny_checkpoint, h, w):
    frame = _frame(h, w, seed=5)
    question = "Is the label present?"
    step, _ = model.engine.prefill(model.encode(frame), question)
    ours, _ = model.engine.greedy(step, DECODE_STEPS, stop_ids=())
    inputs = hf_inputs(HFImageProcessor.from_checkpoint(tiny_checkpoint), frame, model.engine, question)
    with torch.no_grad():
        out = hf_model.generate(**inputs, max_new_tokens=DECODE_STEPS, do_sample=False, eos_token_id=None)
    theirs = out[0, inputs["input_ids"].shape[1] :].tolist()
    assert len(ours) == DECODE_STEPS and ours == theirs


def test_causal_only_mask_is_wrong(model, hf_model, tiny_checkpoint):
    """Without the prefix-LM image block the prefill differs from PyTorch far beyond tolerance."""
    frame = _frame(300, 200)
    question = "Point to any scratches."
    image = model.encode(frame)
    right, _ = model.engine.prefill(image, question, prefix_lm=True)
    wrong, _ = model.engine.prefill(image, question, prefix_lm=False)
    inputs = hf_inputs(HFImageProcessor.from_checkpoint(tiny_checkpoint), frame, model.engine, question)
    with torch.no_grad():
        reference = hf_model(**inputs).logits[0, -1].numpy()
    right_diff = np.abs(reference - right.logits).max()
    wrong_diff = np.abs(reference - wrong.logits).max()
    print(f"prefix-LM mask: {right_diff:.2e}; causal-only mask: {wrong_diff:.3f}")
    assert right_diff <= TOLERANCE
    assert wrong_diff > 100 * TOLERANCE


def test_image_prefix_reuse_is_exact(model):
    frame = _frame(300, 200, seed=9)
    reused = model.encode(frame, reuse_prefix=True)
    fresh = model.encode(frame, reuse_prefix=False)
    assert reused.prefix_kv is not None and fresh.prefix_kv is None
    prompts = ["Point to any scratches.", "Is the label present?", "How many screws are there?"]
    for prompt in prompts:
        a, _ = model.engine.prefill(reused, prompt)
        b, _ = model.engine.prefill(fresh, prompt)
        assert a.cache.length == b.cache.length
        assert np.abs(a.logits - b.logits).max() <= 1e-5, prompt


def test_decoder_is_the_lean_graph_and_unsupported_checkpoints_fall_back(tiny_bundle, hf_model):
    """The bundle's decoder is written op by op (no Shape arithmetic per step); a checkpoint the lean
    graph cannot express is refused by it, so the export takes the traced graph."""
    import copy

    import onnx

    from tools.export.lean_decoder import LeanUnsupported, spec_from_model

    ops = [n.op_type for n in onnx.load(str(tiny_bundle / "decoder.onnx")).graph.node]
    assert "Shape" not in ops and "Expand" not in ops
    other = copy.deepcopy(hf_model)
    other.config.text_config.hidden_act = "gelu"
    with pytest.raises(LeanUnsupported):
        spec_from_model(other)
