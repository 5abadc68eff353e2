"""The appliance runtime imports and runs with torch and transformers absent."""

import subprocess
import sys
import textwrap

from ..support.no_torch import BLOCK


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True)


def test_block_works():
    result = _run("import torch")
    assert result.returncode != 0 and "blocked" in result.stderr


def test_imports_without_torch():
    result = _run("""
        import edge_inspect, edge_inspect.cli, edge_inspect.vlm
        from edge_inspect.vlm import backends, bundle, generate, model, points, preprocess, prompt
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")]
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_runs_a_bundle_without_torch(tiny_bundle):
    result = _run(f"""
        import numpy as np
        from edge_inspect.vlm import load_bundle
        model = load_bundle({str(tiny_bundle)!r})
        image = model.encode(np.zeros((120, 160, 3), np.uint8))
        answer = model.ask_yes_no(image, "Is the label present?")
        points = model.point(image, "Point to the screws.", max_new_tokens=8)
        assert 0.0 <= answer.p_yes <= 1.0 and len(points.answer.points) >= 0
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")]
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
