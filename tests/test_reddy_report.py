"""The report of Reddy 2023 runs: its own rows (accuracies, progress measures), from the
cached ``reddy`` metric; language-model and Reddy runs are not mixed."""

import pytest

from induction_lens.config import ModelSpec, ReddyNetSpec, ReddyTaskSpec, RunConfig, TrainConfig
from induction_lens.hub import Hub
from induction_lens.runs import evaluate_run
from induction_lens.runs.evaluate import EvalSettings
from induction_lens.train import train
from induction_lens.viz import reddy_transition
from induction_lens.viz.report import REDDY_ROWS, ReportError, build_report

TASK = ReddyTaskSpec(K=32, L=8, N=4, D=7, n_pos=9, p_C=0.5)
CFG = RunConfig(ReddyNetSpec.for_task(TASK, mlp_width=16),
                TrainConfig(steps=16, batch_size=16, lr=1e-3, warmup_steps=0, weight_decay=0.0,
                            grad_clip=None, checkpoint_every=2), TASK)
SETTINGS = EvalSettings(n_examples=16)


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Hub:
    root = tmp_path_factory.mktemp("reddy_report_hub")
    train(CFG, hub=root, run="reddy-tiny", progress=False, device="cpu")
    return Hub(root)


def test_reddy_report_draws_the_reddy_rows(hub, tmp_path):
    report = build_report(hub, ["reddy-tiny"], tmp_path / "r.html", settings=SETTINGS,
                          device="cpu")
    assert report.rows == [r.key for r in REDDY_ROWS] == ["reddy_accuracy", "reddy_progress"]
    assert report.figures == 2 and report.notes == []
    page = report.path.read_text()
    assert "Accuracy over training" in page and "Progress measures" in page
    assert "K=32 L=8 N=4 B=1" in page and "Model Analysis Table" not in page
    # Only the reddy metric was evaluated (cached), never the language-model metrics.
    evals = sorted(p.name for p in (hub.root / "reddy-tiny" / "evals").glob("*.parquet"))
    assert evals == ["reddy.parquet"]
    frame = evaluate_run(hub, "reddy-tiny", metrics=["reddy"], settings=SETTINGS)
    change = reddy_transition(frame)
    assert list(report.windows["detected"]) == [change is not None]
    again = build_report(hub, ["reddy-tiny"], tmp_path / "r2.html", settings=SETTINGS,
                         device="cpu")
    assert again.figures == 2


def test_language_and_reddy_runs_are_not_mixed(hub, tmp_path):
    spec = ModelSpec(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=64, d_vocab=32)
    train(spec, hub=hub.root, run="lm", progress=False, device="cpu",
          train=TrainConfig(steps=2, batch_size=2, warmup_steps=0, checkpoint_every=2))
    with pytest.raises(ReportError, match=r"\['reddy-tiny'\] are Reddy 2023 runs.*one report "
                                          "per kind"):
        build_report(hub, ["lm", "reddy-tiny"], tmp_path / "mixed.html", settings=SETTINGS)
