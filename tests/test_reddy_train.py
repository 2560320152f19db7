"""Training Reddy 2023's network into the hub: checkpoints, reload, bit-identical resume."""

from dataclasses import replace

import pytest
import torch

import induction_lens as il
from induction_lens.config import (
    ConfigError,
    DataSpec,
    ModelSpec,
    ReddyNetSpec,
    ReddyTaskSpec,
    RunConfig,
    TrainConfig,
)
from induction_lens.presets import get_preset, list_presets
from induction_lens.train_reddy import resolve_reddy_config

TASK = ReddyTaskSpec(K=32, L=8, N=4, D=7, n_pos=9, p_C=0.5)


def _cfg(optimizer: str = "sgd", steps: int = 6) -> RunConfig:
    train = TrainConfig(steps=steps, batch_size=16, lr=0.05 if optimizer == "sgd" else 1e-3,
                        warmup_steps=0, grad_clip=None, weight_decay=1e-4, checkpoint_every=2,
                        optimizer=optimizer)
    return RunConfig(ReddyNetSpec.for_task(TASK), train, TASK, preset=None)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_train_writes_checkpoints_and_resume_is_bit_identical(tmp_path, optimizer):
    torch.set_num_threads(1)
    straight = il.train(_cfg(optimizer), hub=tmp_path, run="straight", device="cpu",
                        progress=False)
    hub = il.Hub(tmp_path)
    assert hub.checkpoints("straight")["step"].tolist() == [0, 2, 4, 6]
    assert straight.log["tokens"].iloc[-1] == 6 * 16 * TASK.seq_len
    loaded = hub.load_model("straight", device="cpu")
    assert type(loaded).__name__ == "ReddyNetwork"
    assert _same_state(loaded.state_dict(), straight.model.state_dict())
    assert not _same_state(hub.load_state_dict("straight", 0), hub.load_state_dict("straight"))

    il.train(_cfg(optimizer, steps=4), hub=tmp_path, run="split", device="cpu", progress=False)
    resumed = il.train(_cfg(optimizer), hub=tmp_path, run="split", resume=True, device="cpu",
                       progress=False)
    assert _same_state(resumed.model.state_dict(), straight.model.state_dict())
    assert resumed.log["loss"].tolist() == straight.log["loss"].tolist()
    assert hub.config("split").is_reddy and hub.config("split").data == TASK


def test_preset_by_name_and_cli_default_data(tmp_path):
    cfg = resolve_reddy_config("reddy-icl", data=DataSpec(seed=3), steps=2)
    assert cfg.data == replace(get_preset("reddy-icl").data, seed=3) and cfg.train.steps == 2
    assert get_preset("reddy-icl", "paper").train.optimizer == "sgd"
    assert get_preset("reddy-icl", "paper").train.lr == 0.01
    assert get_preset("reddy-icl", "paper").model.d_model == 128
    names = set(list_presets()["name"])
    assert {"reddy-icl", "reddy-iwl", "reddy-l-eq-n"} <= names
    with pytest.raises(ConfigError, match="does not apply to a Reddy run"):
        resolve_reddy_config("reddy-icl", data="shakespeare")


def test_runconfig_round_trip_and_pairing():
    cfg = _cfg()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    lm = get_preset("attn-only-2l")
    assert RunConfig.from_dict(lm.to_dict()) == lm
    with pytest.raises(ConfigError, match="needs a ReddyTaskSpec"):
        RunConfig(ReddyNetSpec.for_task(TASK), cfg.train, DataSpec())
    with pytest.raises(ConfigError, match="d_model"):
        RunConfig(ReddyNetSpec(), cfg.train, TASK)
    with pytest.raises(ConfigError, match="n_labels"):
        RunConfig(ReddyNetSpec.for_task(TASK, n_labels=9), cfg.train, TASK)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(steps=1, batch_size=1, optimizer="lion")  # type: ignore[arg-type]


def test_language_model_refuses_sgd(tmp_path):
    spec = ModelSpec(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=16, d_vocab=20)
    train = TrainConfig(steps=1, batch_size=2, optimizer="sgd")
    with pytest.raises(ConfigError, match="only supported for Reddy runs"):
        il.train(spec, train=train, data=DataSpec(min_segment=2, max_segment=4), hub=tmp_path,
                 run="x", progress=False)


def test_induction_head_sweep_rows():
    from induction_lens.train_reddy import induction_head_sweep

    frame = induction_head_sweep(TASK, [(0.0, 0.0, 0.0), (2.0, 0.0, 0.0)], learn_beta1=False,
                                 steps=4, lr=0.1, batch_size=8, n_eval=16, record_every=2)
    assert len(frame) == 2 * 3 and frame["step"].tolist() == [0, 2, 4] * 2
    assert (frame.loc[frame["beta1_0"] == 2.0, "beta1"] == 2.0).all()  # frozen
    start = frame[frame["step"] == 0]
    assert torch.allclose(torch.tensor(start["loss"].to_numpy()),
                          torch.full((2,), torch.log(torch.tensor(8.0)).item(),
                                     dtype=torch.float64), atol=1e-6)  # xi = 0: uniform on L
    with pytest.raises(ConfigError, match="inits"):
        induction_head_sweep(TASK, [])
