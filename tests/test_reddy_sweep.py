"""Reddy 2023's data-dependence sweep: task overrides in the sweep grid, the per-cell final
accuracies, and the command line's ``--task``."""

import dataclasses

import pandas as pd
import pytest
import torch

from induction_lens.analysis import reddy_final_accuracy
from induction_lens.cli import main
from induction_lens.config import ReddyNetSpec, ReddyTaskSpec, RunConfig, TrainConfig
from induction_lens.errors import ConfigError, EvalError
from induction_lens.hub import Hub
from induction_lens.measures.reddy import evaluate_reddy
from induction_lens.presets import get_preset
from induction_lens.runs import EvalSettings, SweepGrid, sweep
from induction_lens.runs import sweeps as sweeps_module
from induction_lens.runs.sweeps import refit_reddy

TASK = ReddyTaskSpec(K=32, L=8, N=4, D=7, n_pos=9, p_C=0.5)
TRAIN = TrainConfig(steps=4, batch_size=16, lr=1e-3, warmup_steps=0, weight_decay=0.0,
                    grad_clip=None, checkpoint_every=2)
TINY = RunConfig(ReddyNetSpec.for_task(TASK, mlp_width=16), TRAIN, TASK)
SETTINGS = EvalSettings(n_examples=16)


def test_task_overrides_make_one_cell_each_with_a_refitted_network():
    grid = SweepGrid(["reddy-icl"], task={"B": [1, 2], "K": [128, 512]})
    cells = grid.cells()
    base = get_preset("reddy-icl")
    assert [(c.config.data.B, c.config.data.K) for c in cells] == [(1, 128), (1, 512),
                                                                   (2, 128), (2, 512)]
    for cell in cells:
        assert cell.config.data == dataclasses.replace(base.data, B=cell.config.data.B,
                                                       K=cell.config.data.K)
        assert cell.config.model == base.model  # K and B do not change the network
        assert cell.params() == {"model": "reddy-icl", "seed": 0, "data": cells[0].data,
                                 "B": cell.config.data.B, "K": cell.config.data.K}
    names = [c.run for c in cells]
    assert names[1] == f"reddy-icl_{cells[0].data}_s0_B1_K512" and len(set(names)) == 4
    # L and D do change it: the readout and the residual width follow the task.
    cell = SweepGrid(["reddy-icl"], task={"L": [16], "D": [15]}).cells()[0]
    assert (cell.config.model.n_labels, cell.config.model.d_model) == (16, 33 + 15)


def test_refit_keeps_the_networks_own_choices():
    cfg = refit_reddy(TINY, dataclasses.replace(TASK, D=11, L=4))
    assert cfg.model == ReddyNetSpec.for_task(cfg.data, mlp_width=16)
    assert cfg.model.d_model == 9 + 11 and cfg.model.n_labels == 4 and cfg.data.D == 11


def test_task_specs_as_data_entries():
    other = dataclasses.replace(TASK, K=64)
    cells = SweepGrid({"tiny": TINY}, data=[TASK, other]).cells()
    assert [c.config.data for c in cells] == [TASK, other]
    assert cells[0].data.startswith("reddy-") and cells[0].data != cells[1].data
    wide = SweepGrid({"tiny": TINY}, data=[dataclasses.replace(TASK, D=11)],
                     task={"L": [4]}).cells()[0].config
    assert wide.model == ReddyNetSpec.for_task(wide.data, mlp_width=16)
    assert (wide.data.D, wide.data.L, wide.model.d_model) == (11, 4, 20)


@pytest.mark.parametrize("kwargs, match", [
    (dict(models=["attn-only-1l"], task={"B": [1]}), r"\['attn-only-1l'\] are not Reddy"),
    (dict(models=["reddy-icl"], task={"Q": [1]}), r"\['Q'\] are not sweepable"),
    (dict(models=["reddy-icl"], task={"seed": [1]}), "pass ReddyTaskSpec objects"),
    (dict(models=["reddy-icl"], task={"B": []}), r"task\['B'\] is empty"),
    (dict(models=["reddy-icl"], task={"B": [3]}), r"task \{'B': 3\}.*N=8 is not divisible"),
    (dict(models=["reddy-icl"], task={"B": [0]}), r"p_C=0.8 needs B >= 1"),
    (dict(models=["reddy-icl"], task=[("B", 1)]), "SweepGrid.task must map"),
    (dict(models=["attn-only-1l"], data=[TASK]), "some models are not Reddy runs"),
])
def test_bad_task_overrides_fail_at_once(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SweepGrid(**kwargs)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    torch.manual_seed(0)
    hub = tmp_path_factory.mktemp("hub")
    frame, cells = sweep({"tiny": TINY}, hub=hub, task={"B": [1, 2]}, settings=SETTINGS,
                         device="cpu", progress=False, return_cells=True)
    return hub, frame, cells


def test_tiny_grid_trains_and_evaluates_with_the_reddy_metric(swept):
    hub, frame, cells = swept
    assert list(cells["status"]) == ["trained", "trained"]
    assert list(cells["B"]) == [1, 2]
    store = Hub(hub)
    for run, b in zip(cells["run"], [1, 2], strict=True):
        assert store.config(run).data == dataclasses.replace(TASK, B=b)
        assert [e.step for e in store.manifest(run)] == [0, 2, 4]
    rows = frame[frame["metric"] == "ic_accuracy"]
    assert sorted(rows["step"].unique()) == [0, 2, 4] and len(rows) == 6
    assert {"model", "seed", "data", "B"} <= set(frame.columns)


def test_final_accuracy_per_cell_equals_a_fresh_evaluation(swept):
    hub, frame, cells = swept
    final = reddy_final_accuracy(frame)
    assert list(final["run"]) == list(cells["run"]) and list(final["B"]) == [1, 2]
    assert list(final["step"]) == [4, 4]
    assert list(final.columns) == ["run", "model", "seed", "data", "B", "step", "ic_accuracy",
                                   "ic2_accuracy", "iw_accuracy", "train_accuracy"]
    store = Hub(hub)
    for row in final.itertuples():
        model = store.load_model(row.run, device="cpu")
        truth = evaluate_reddy(model, store.config(row.run).data,
                               n_sequences=SETTINGS.n_examples)
        for metric in ("ic_accuracy", "iw_accuracy"):
            assert getattr(row, metric) == pytest.approx(truth[metric], abs=1e-6)


def test_rerun_neither_retrains_nor_reevaluates(swept, monkeypatch):
    hub, frame, _ = swept

    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(sweeps_module, "train", refuse)
    again, cells = sweep({"tiny": TINY}, hub=hub, task={"B": [1, 2]}, settings=SETTINGS,
                         device="cpu", progress=False, return_cells=True)
    assert list(cells["status"]) == ["done", "done"]
    pd.testing.assert_frame_equal(again, frame)


def test_final_accuracy_on_a_hand_made_frame():
    frame = pd.DataFrame({
        "run": ["a"] * 4 + ["b"] * 2, "step": [0, 0, 10, 10, 5, 5],
        "metric": ["ic_accuracy", "iw_accuracy"] * 3, "value": [0.1, 0.2, 0.9, 0.3, 0.5, 0.6],
        "B": [1, 1, 1, 1, 4, 4]})
    final = reddy_final_accuracy(frame)
    assert final.to_dict("records") == [
        {"run": "a", "B": 1, "step": 10, "ic_accuracy": 0.9, "iw_accuracy": 0.3},
        {"run": "b", "B": 4, "step": 5, "ic_accuracy": 0.5, "iw_accuracy": 0.6}]
    with pytest.raises(EvalError, match="no ic_accuracy / iw_accuracy rows"):
        reddy_final_accuracy(frame.assign(metric="icl_score"))
    with pytest.raises(EvalError, match="'step' column"):
        reddy_final_accuracy(frame.drop(columns="step"))


def test_cli_sweep_task_axis(tmp_path, capsys):
    args = ["sweep", "--preset", "reddy-icl", "--task", "B=1,2", "--task", "K=64",
            "--train", "steps=2", "--train", "checkpoint_every=2", "--n-examples", "8",
            "--hub", str(tmp_path / "hub"), "--device", "cpu",
            "--out", str(tmp_path / "out.parquet"), "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "_s0_steps2_checkpoint_every2_B2_K64" in out and "trained" in out
    frame = pd.read_parquet(tmp_path / "out.parquet")
    assert sorted(frame["B"].unique()) == [1, 2] and set(frame["K"]) == {64}
    assert main(["sweep", "--preset", "reddy-icl", "--task", "B", "-q"]) == 2
    assert "--task B=0,1,2,4" in capsys.readouterr().err
