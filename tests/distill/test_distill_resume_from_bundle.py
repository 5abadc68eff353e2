"""Training that goes on from a shipped bundle: weights read back from the ONNX graphs, a new run
started from them, and defect-pointing parts drawn with a chosen number of defects."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ..support.paths import REPO_ROOT

torch = pytest.importorskip("torch", reason="distillation needs the 'export' extra")

from tools.distill.from_bundle import BundleWeightsError, load_from_bundle  # noqa: E402
from tools.distill.student import SHAPES, build_student  # noqa: E402
from tools.export.onnx_bundle import export_graphs  # noqa: E402


def _trained_like(seed: int):
    """A test-shape student whose every parameter differs from a fresh build (norms and biases too)."""
    model, tok = build_student(SHAPES["test"], seed)
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return model, tok


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, tok = _trained_like(3)
    folder = tmp_path_factory.mktemp("bundle")
    export_graphs(model, folder)
    (folder / "tokenizer.json").write_text(tok.to_str())
    return model, folder


def test_weights_read_back_from_a_bundle_equal_the_exported_model(exported):
    source, folder = exported
    model, _ = build_student(SHAPES["test"], 7)  # other seed: other starting weights
    assert not torch.equal(model.state_dict()["lm_head.weight"], source.state_dict()["lm_head.weight"])
    assert load_from_bundle(model, folder) == 0.0
    for name, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_a_bundle_of_another_shape_is_refused(exported):
    _, folder = exported
    model, _ = build_student(SHAPES["demo"], 0)
    with pytest.raises(BundleWeightsError, match="not of this student shape|has shape"):
        load_from_bundle(model, folder)


def test_a_folder_without_graphs_is_named(tmp_path):
    model, _ = build_student(SHAPES["test"], 0)
    with pytest.raises(BundleWeightsError, match="vision.onnx: missing"):
        load_from_bundle(model, tmp_path)


def test_a_new_run_starts_from_the_bundle(exported, tmp_path):
    """--init-from: at learning rate 0 the run's checkpoint is the bundle's model, weight for weight."""
    from tools.distill.train import TrainConfig, train
    from tools.molmo2.checkpoint import load_checkpoint

    source, folder = exported
    cfg = TrainConfig(
        out=str(tmp_path / "run"),
        shape="test",
        steps=1,
        batch=2,
        lr=0.0,
        warmup=1,
        save_every=1,
        eval_every=1000,
        workers=0,
        init_from=str(folder),
    )
    checkpoint = train(cfg)
    loaded = load_checkpoint(checkpoint).state_dict()
    for name, value in source.state_dict().items():
        assert torch.equal(loaded[name], value), name
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["init_from"] == str(folder)


def test_init_from_a_bundle_with_another_tokenizer_exits_with_a_message(exported, tmp_path):
    _, folder = exported
    other = tmp_path / "other"
    other.mkdir()
    for name in ("vision.onnx", "embed.onnx", "decoder.onnx", "decoder_step.onnx", "decoder.weights"):
        if (folder / name).is_file():
            (other / name).write_bytes((folder / name).read_bytes())
    (other / "tokenizer.json").write_text(
        json.dumps({"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}})
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.distill",
            "train",
            "--out",
            str(tmp_path / "run"),
            "--shape",
            "test",
            "--steps",
            "1",
            "--init-from",
            str(other),
            "--workers",
            "0",
            "--eval-parts",
            "0",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "not this student's tokenizer" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing left behind


def test_defect_counts_choose_how_many_defects_a_part_has():
    from tools.distill.dataset import sim_record

    for counts in ((3,), (0,), (2,)):
        got = [len(sim_record(1_000_000 + i, task="defects", defect_counts=counts).points) for i in range(12)]
        assert got == [counts[0]] * 12, (counts, got)
    # other tasks keep the generator's draw
    for i in range(4):
        chosen = sim_record(1_000_000 + i, task="screws", defect_counts=(3,))
        assert np.array_equal(chosen.rgb(), sim_record(1_000_000 + i, task="screws").rgb())


def test_defect_counts_are_checked_on_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tools.distill", "train", "--out", str(tmp_path / "run"), "--defect-counts", "1,x"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "defect counts must be whole numbers" in result.stderr
