"""Bad checkpoints: each is refused with exit 2 and one line naming the file, before any weights are
allocated; a failed export leaves nothing behind and never destroys an existing bundle."""

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..support.errors import assert_one_line_error
from ..support.paths import REPO_ROOT

pytest.importorskip("torch", reason="the export toolchain needs the 'export' extra")
from safetensors.numpy import load_file, save_file  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

# Runs the export CLI and records the process's peak resident memory beside the output.
RUNNER = (
    "import resource, runpy, sys\n"
    "sys.argv = ['tools.export', *sys.argv[2:]]\n"
    "try:\n    runpy.run_module('tools.export', run_name='__main__')\n"
    "finally:\n    open(sys.argv_rss, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
)


def _export(ckpt: Path, out: Path, *extra: str):
    rss = out.parent / "peak_rss_kb"
    code = RUNNER.replace("sys.argv_rss", repr(str(rss)))
    result = subprocess.run(
        [sys.executable, "-c", code, "x", "onnx", "--checkpoint", str(ckpt), "--out", str(out), *extra],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    result.peak_mb = int(rss.read_text()) / 1024
    return result


@pytest.fixture
def ckpt(tiny_checkpoint, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_other_model_type_is_refused_before_loading(ckpt, tmp_path):
    _edit_json(ckpt / "config.json", lambda c: c.update(model_type="llama"))
    result = _export(ckpt, tmp_path / "b")
    assert_one_line_error(result, "config.json", "model_type 'llama'")
    assert not (tmp_path / "b").exists()


def test_config_far_larger_than_weights_allocates_nothing(ckpt, tmp_path):
    """A config that implies ~5 GB of weights beside 1 MB of tensors: refused from the headers."""
    _edit_json(ckpt / "config.json", lambda c: c["text_config"].update(hidden_size=8192, intermediate_size=24576))
    result = _export(ckpt, tmp_path / "b")
    assert_one_line_error(result, "model.safetensors", "shape", "config.json")
    assert result.peak_mb < 1500, result.peak_mb  # imports only; the model would need ~5,000 MB


def test_shape_mismatch(ckpt, tmp_path):
    _edit_json(ckpt / "config.json", lambda c: c["text_config"].update(intermediate_size=256))
    assert_one_line_error(_export(ckpt, tmp_path / "b"), "model.safetensors", "shape")


def test_truncated_safetensors(ckpt, tmp_path):
    path = ckpt / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    assert_one_line_error(_export(ckpt, tmp_path / "b"), "model.safetensors", "truncated")
    path.write_bytes(data[:4])
    assert_one_line_error(_export(ckpt, tmp_path / "b"), "model.safetensors", "truncated")


def test_missing_weight(ckpt, tmp_path):
    tensors = load_file(ckpt / "model.safetensors")
    dropped = next(k for k in tensors if "blocks.1" in k)
    del tensors[dropped]
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    assert_one_line_error(_export(ckpt, tmp_path / "b"), "model.safetensors", "missing")


def test_missing_weights_file(ckpt, tmp_path):
    (ckpt / "model.safetensors").unlink()
    assert_one_line_error(_export(ckpt, tmp_path / "b"), "model.safetensors", "missing")


def test_garbage_tokenizer(ckpt, tmp_path):
    (ckpt / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "nonsense"}}')
    assert_one_line_error(_export(ckpt, tmp_path / "b"), "tokenizer.json")
    (ckpt / "tokenizer.json").write_bytes(b"\x00\xff garbage")
    assert_one_line_error(_export(ckpt, tmp_path / "b"), "tokenizer.json")


def test_overlap_margins_leaving_no_window(ckpt, tmp_path):
    _edit_json(ckpt / "preprocessor_config.json", lambda c: c.update(overlap_margins=[4, 4]))  # 8-patch crop
    assert_one_line_error(_export(ckpt, tmp_path / "b"), "preprocessor_config.json", "overlap_margins", "no window")
    assert not (tmp_path / "b").exists()


def _word_tokenizer(words: list[str]) -> Tokenizer:
    """A word-level tokenizer whose unknown token (id 0) stands in for every word it lacks."""
    vocab = {w: i for i, w in enumerate(["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def test_yes_no_ids_never_include_the_unknown_token():
    from tools.molmo2.checkpoint import NO_WORDS, YES_WORDS, _reserved_ids, single_token_ids

    tok = _word_tokenizer(["Yes", "No", "screw"])
    reserved = _reserved_ids(tok, {"pad_token": "<|endoftext|>"})
    assert 0 in reserved
    assert single_token_ids(tok, YES_WORDS, 100, reserved) == [tok.token_to_id("Yes")]
    assert single_token_ids(tok, NO_WORDS, 100, reserved) == [tok.token_to_id("No")]
    assert single_token_ids(tok, YES_WORDS, 100) == [tok.token_to_id("Yes")]  # decoding rules out <unk> too


def test_tokenizer_without_yes_no_is_refused(ckpt, tmp_path):
    _word_tokenizer(["screw", "scratch"]).save(str(ckpt / "tokenizer.json"))
    assert_one_line_error(_export(ckpt, tmp_path / "b"), "tokenizer.json", "Yes")
    assert not (tmp_path / "b").exists()


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_failed_export_leaves_nothing_and_keeps_a_good_bundle(ckpt, tmp_path, tiny_bundle, capsys):
    from tools.export import __main__ as cli
    from tools.molmo2.errors import CheckpointError

    def broken(model, out, **options):
        (out / "vision.onnx").write_bytes(b"half written")
        raise CheckpointError(f"{out / 'decoder.onnx'}: simulated failure while writing")

    def failing(argv):  # the onnx command as the command line runs it, its graphs failing half written
        return cli.run_command(
            cli.build_parser().parse_args(argv), functools.partial(cli._cmd_onnx, write_graphs=broken)
        )

    target = tmp_path / "out" / "bundle"
    assert failing(["onnx", "--checkpoint", str(ckpt), "--out", str(target)]) == 2
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []  # no debris

    good = Path(shutil.copytree(tiny_bundle, tmp_path / "good"))
    before = _tree(good)
    assert failing(["onnx", "--checkpoint", str(ckpt), "--out", str(good), "--overwrite"]) == 2
    assert _tree(good) == before  # --overwrite did not destroy the good bundle
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert capsys.readouterr().err.count("tools.export: error: ") == 2  # one line per failed run

    # a re-run is not blocked by anything the failures left
    assert cli.main(["onnx", "--checkpoint", str(ckpt), "--out", str(target)]) == 0
    assert cli.main(["onnx", "--checkpoint", str(ckpt), "--out", str(good), "--overwrite"]) == 0
    assert (
        json.loads((good / "manifest.json").read_text())["files"]
        == json.loads((target / "manifest.json").read_text())["files"]
    )
