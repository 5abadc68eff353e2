"""What ``pytest --appliance-only`` leaves out, as paths under tests/ (tests/conftest.py skips them;
tests/appliance/test_appliance_only.py checks these lists against the modules):
- the export toolchain's modules (tools/): they import torch, transformers or onnx at the top and run on
  Python 3.11 with the 'export' extra;
- the browser tests: Chromium drives the HMI's HTML and JavaScript, which do not change with the Python
  the appliance runs on (the API tests cover the same web app from Python);
- the plant side: `fleet collect` / `fleet serve` run on a central server, not on the appliance."""

from __future__ import annotations

EXPORT_TEST_MODULES = frozenset(
    {
        "distill/test_distill.py",
        "distill/test_finetune.py",
        "distill/test_lifecycle_e2e.py",
        "distill/test_distill_resume_from_bundle.py",
        "distill/test_distill_v2.py",
        "export/test_export_cli.py",
        "export/test_export_errors.py",
        "export/test_lean_decoder.py",
        "export/test_parity.py",
        "export/test_quantize_trt.py",
        "export/test_step_decoder.py",
        "vlm/test_preprocess.py",
        "vlm/test_prompt_layout.py",
    }
)
BROWSER_TEST_MODULES = frozenset({"web/test_accessibility.py", "web/test_setup_browser.py", "web/test_web_browser.py"})
PLANT_TEST_MODULES = frozenset({"fleet", "plant", "security/test_collector_poison.py"})
LEFT_OUT = EXPORT_TEST_MODULES | BROWSER_TEST_MODULES | PLANT_TEST_MODULES
