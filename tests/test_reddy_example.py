"""The Reddy 2023 example in ``--tiny`` mode: summary.json structure and a clear bad-input error."""

import importlib
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLAIMS = ["abrupt_icl", "progress_measures_jump", "layer2_ablation", "data_dependence",
          "l_equals_n", "nested_logits"]


def _example():
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module("reddy_data_dependence")


def test_tiny_mode_writes_a_complete_summary(tmp_path):
    argv = ["--tiny", "--hub", str(tmp_path / "hub"), "--out", str(tmp_path / "out"),
            "--threads", "1", "--no-png", "--device", "cpu"]
    assert _example().main(argv) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["error"] is None and summary["mode"] == "tiny"
    assert [c["key"] for c in summary["claims"]] == CLAIMS
    for claim in summary["claims"]:
        assert claim["status"] in ("PASS", "FAIL")
        assert claim["passed"] == (claim["status"] == "PASS")
        assert claim["measured"] and claim["criterion"]
    assert summary["passed"] + summary["failed"] == len(CLAIMS)
    assert len(summary["runs"]) == 8
    for fig in summary["figures"]:
        assert fig["html"] is None or Path(fig["html"]).is_file()
    # A second call reuses every run; --strict turns the tiny FAILs into status 1.
    assert _example().main([*argv, "--strict"]) == (1 if summary["failed"] else 0)
    again = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {r["status"] for r in again["runs"]} == {"reused"}
