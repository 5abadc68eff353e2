"""The image-token layout matches transformers' Molmo2Processor for every layout setting."""

from types import SimpleNamespace

import pytest

from edge_inspect.vlm.prompt import PromptSettings, image_token_text

pytest.importorskip("transformers", reason="the HF reference needs the 'export' extra")
from transformers.models.molmo2.processing_molmo2 import Molmo2Processor  # noqa: E402


@pytest.mark.parametrize("cols", [True, False])
@pytest.mark.parametrize("single_cols", [None, True, False])
@pytest.mark.parametrize("single_start", [True, False])
@pytest.mark.parametrize("grid", [(14, 14, 14, 14), (4, 4, 6, 12), (7, 7, 21, 14)])
def test_image_tokens_match_hf(cols, single_cols, single_start, grid):
    hf_self = SimpleNamespace(
        image_use_col_tokens=cols, use_single_crop_col_tokens=single_cols, use_single_crop_start_token=single_start
    )
    expected = Molmo2Processor.replace_image_token(hf_self, {"image_grids": [list(grid)]}, 0)
    settings = PromptSettings(
        chat_template="",
        bos_token="<|endoftext|>",
        image_use_col_tokens=cols,
        use_single_crop_col_tokens=single_cols,
        use_single_crop_start_token=single_start,
    )
    assert image_token_text(grid, settings) == expected


def test_prompt_ids_match_hf_tokenizer(tiny_checkpoint, tiny_bundle):
    """Template rendering and tokenization agree with transformers' apply_chat_template + tokenizer."""
    from transformers import AutoTokenizer

    from edge_inspect.vlm import load_bundle

    model = load_bundle(tiny_bundle)
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    grid = (4, 4, 6, 6)
    question = "Point to any scratches."
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    text = tok.bos_token + text if not text.startswith(tok.bos_token) else text
    hf_self = SimpleNamespace(
        image_use_col_tokens=True, use_single_crop_col_tokens=False, use_single_crop_start_token=True
    )
    text = text.replace("<|image|>", Molmo2Processor.replace_image_token(hf_self, {"image_grids": [list(grid)]}, 0))
    expected = tok(text, add_special_tokens=True)["input_ids"]
    prompt = model.engine.prompts.build(question, grid)
    assert prompt.ids.tolist() == expected
    assert model.engine.prompts.reusable_prefix
    # built once per question and grid: the second call returns the same read-only ids
    again = model.engine.prompts.build(question, grid)
    assert again is prompt and not prompt.ids.flags.writeable
    assert model.engine.prompts.build(question, (4, 4, 6, 8)).ids.tolist() != expected
