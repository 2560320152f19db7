"""The trainer applies what it says: schedules, weight decay, checkpoints, CLI options, resume."""

import json
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch

from induction_lens import constants as C
from induction_lens.cli import main
from induction_lens.config import DataSpec, RunConfig, TrainConfig
from induction_lens.hub import Hub, HubError, atomic_write_json
from induction_lens.models import build_model
from induction_lens.presets import get_preset
from induction_lens.train import make_optimizer, train

from .conftest import TINY_DATA, tiny_spec
from .test_data_text import make_text

BASE = TrainConfig(steps=4, batch_size=2, checkpoint_every=2, warmup_steps=2)


def run_cfg(spec=None, data=TINY_DATA, **train_fields) -> RunConfig:
    return RunConfig(spec or tiny_spec(), replace(BASE, **train_fields), data)


def go(cfg, root, run="r", **kwargs):
    return train(cfg, hub=root, run=run, progress=False, device="cpu", **kwargs)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, differing


def test_logged_learning_rate_follows_warmup_then_cosine(tmp_path):
    lr, warm, steps = 0.01, 3, 10
    go(run_cfg(steps=steps, lr=lr, warmup_steps=warm, lr_schedule="cosine",
               checkpoint_every=5), tmp_path)
    # by hand: linear warm-up to lr over 3 updates, then 0.1 + 0.9 * half-cosine over 7
    expected = [lr * (s + 1) / warm for s in range(warm)]
    expected += [lr * (0.1 + 0.45 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))))
                 for s in range(warm, steps)]
    log = Hub(tmp_path).log("r")
    assert log["lr"].tolist() == pytest.approx(expected, rel=1e-12, abs=0)
    assert log["lr"].iloc[warm] == lr and log["lr"].iloc[0] == pytest.approx(lr / 3)
    # the optimizer really used the last of them (it is stored with the last checkpoint)
    groups = Hub(tmp_path).load_optimizer_state("r", steps)["param_groups"]
    assert [g["lr"] for g in groups] == [pytest.approx(expected[-1], rel=1e-12)] * 2


def test_constant_schedule_holds_lr_after_warmup(tmp_path):
    go(run_cfg(steps=5, lr=0.004, warmup_steps=2), tmp_path)
    assert Hub(tmp_path).log("r")["lr"].tolist() == pytest.approx(
        [0.002, 0.004, 0.004, 0.004, 0.004], rel=1e-12)


def test_weight_decay_applies_exactly_to_the_weight_matrices():
    model = build_model(tiny_spec(smeared_keys=True), seed=0)
    cfg = replace(BASE, lr=0.5, weight_decay=0.1)
    optimizer = make_optimizer(model, cfg)
    name_of = {id(p): n for n, p in model.named_parameters()}
    decayed = {name_of[id(p)] for p in optimizer.param_groups[0]["params"]}
    plain = {name_of[id(p)] for p in optimizer.param_groups[1]["params"]}
    mats = ["W_Q", "W_K", "W_V", "W_O"]
    assert decayed == {"embed.W_E", "pos_embed.W_pos", "unembed.W_U",
                       *(f"blocks.{i}.attn.{m}" for i in range(2) for m in mats)}
    vectors = ["ln1.w", "ln1.b", "attn.b_Q", "attn.b_V", "attn.b_O", "attn.smear_alpha"]
    assert plain == {"ln_final.w", "ln_final.b", "unembed.b_U",
                     *(f"blocks.{i}.{v}" for i in range(2) for v in vectors)}
    assert "blocks.0.attn.b_K" not in decayed | plain  # frozen: not optimised at all
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    # with zero gradients AdamW's step is pure decay: p <- p * (1 - lr * wd) on group 0 only
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        want = before[name] * (1 - 0.5 * 0.1) if name in decayed else before[name]
        assert torch.allclose(p.detach(), want, rtol=1e-6, atol=0), name
        assert torch.equal(p.detach(), before[name]) == (name not in decayed), name


def test_weight_decay_schedule_reaches_the_optimizer(tmp_path):
    go(run_cfg(steps=4, checkpoint_every=1, weight_decay=0.01, weight_decay_steps=((2, 0.5),),
               keep_optimizer_states=10), tmp_path)
    hub = Hub(tmp_path)
    # checkpoint s holds the groups of update s-1: decay 0.01 for updates 0-1, 0.5 from 2
    for step, want in [(1, 0.01), (2, 0.01), (3, 0.5), (4, 0.5)]:
        groups = hub.load_optimizer_state("r", step)["param_groups"]
        assert [g["weight_decay"] for g in groups] == [want, 0.0], step


def test_log_checkpoint_schedule_writes_exactly_its_steps(tmp_path):
    go(run_cfg(steps=20, batch_size=1, checkpoint_schedule="log", warmup_steps=0), tmp_path)
    ckpts = Hub(tmp_path).checkpoints("r")
    assert ckpts["step"].tolist() == [0, 1, 2, 4, 8, 16, 20]  # 2^k, plus 0 and the last
    assert ckpts["tokens"].tolist() == [s * 1 * 24 for s in [0, 1, 2, 4, 8, 16, 20]]
    assert sorted(p.name for p in (tmp_path / "r" / C.CHECKPOINT_DIR).iterdir()) == sorted(
        [f"step_{s:08d}.safetensors" for s in [0, 1, 2, 4, 8, 16, 20]]
        + ["step_00000020.optim.safetensors"])


def test_cli_options_reach_run_json_and_the_model(tmp_path):
    hub_dir = tmp_path / "hub"
    assert main(["train", "--preset", "attn-only-1l", "--steps", "2", "--lr", "0.002",
                 "--seed", "7", "--batch-size", "3", "--warmup-steps", "1",
                 "--checkpoint-schedule", "log", "--data-seed", "5", "--hub", str(hub_dir),
                 "--run", "o", "--device", "cpu", "-q"]) == 0
    hub = Hub(hub_dir)
    stored = hub.info("o")["config"]
    assert {k: stored["train"][k] for k in ("steps", "lr", "seed", "batch_size",
                                            "warmup_steps", "checkpoint_schedule")} == {
        "steps": 2, "lr": 0.002, "seed": 7, "batch_size": 3, "warmup_steps": 1,
        "checkpoint_schedule": "log"}
    assert stored["data"]["seed"] == 5 and stored["preset"] == "attn-only-1l"
    spec = get_preset("attn-only-1l").model
    assert hub.checkpoints("o")["tokens"].tolist() == [0, 3 * spec.n_ctx, 6 * spec.n_ctx]
    assert hub.log("o")["lr"].tolist() == [0.002, 0.002]
    init = hub.load_state_dict("o", 0)
    assert_same_weights(init, build_model(spec, seed=7).state_dict())  # --seed reached it
    assert not torch.equal(init["embed.W_E"], build_model(spec, seed=0).state_dict()["embed.W_E"])


def test_resuming_a_cosine_run_with_other_steps_is_refused(tmp_path):
    go(run_cfg(steps=4, lr_schedule="cosine"), tmp_path)
    with pytest.raises(HubError, match=r"cosine learning-rate schedule decays over steps=4.*"
                                       r"--steps 4"):
        go(run_cfg(steps=6, lr_schedule="cosine"), tmp_path, resume=True)
    go(run_cfg(steps=4, lr_schedule="cosine"), tmp_path, resume=True)  # same steps: a no-op
    assert Hub(tmp_path).checkpoints("r")["step"].tolist() == [0, 2, 4]
    assert Hub(tmp_path).config("r").train.steps == 4


class Interrupted(Exception):
    pass


def stop_at(step):
    def callback(done, tokens, model):
        if done == step:
            raise Interrupted(f"stopped after checkpoint {done}")
    return callback


def test_interrupted_right_after_the_first_checkpoint_resumes(tmp_path):
    """The first checkpoint stores a typed, empty log (it used to store one without columns,
    and resuming failed with KeyError: 'step')."""
    with pytest.raises(Interrupted):
        go(run_cfg(steps=4), tmp_path / "a", on_checkpoint=stop_at(0))
    hub = Hub(tmp_path / "a")
    assert hub.checkpoints("r")["step"].tolist() == [0]
    log = hub.log("r")
    assert list(log.columns) == list(C.LOG_COLUMNS) and log.empty
    assert str(log["step"].dtype) == "int64"
    resumed = go(run_cfg(steps=4), tmp_path / "a", resume=True)
    straight = go(run_cfg(steps=4), tmp_path / "b")
    assert_same_weights(resumed.model.state_dict(), straight.model.state_dict())
    assert hub.log("r")["loss"].tolist() == straight.log["loss"].tolist()


def test_old_run_with_a_column_less_step0_log_resumes(tmp_path):
    """A run written by an earlier version (format-1 manifest, empty log without columns)."""
    with pytest.raises(Interrupted):
        go(run_cfg(steps=4), tmp_path / "a", on_checkpoint=stop_at(0))
    run = tmp_path / "a" / "r"
    pd.DataFrame().to_parquet(run / C.TRAIN_LOG, index=False)
    manifest = json.loads((run / C.MANIFEST).read_text())
    atomic_write_json(run / C.MANIFEST, {"format": 1, "checkpoints": manifest["checkpoints"]})
    resumed = go(run_cfg(steps=4), tmp_path / "a", resume=True)
    straight = go(run_cfg(steps=4), tmp_path / "b")
    assert_same_weights(resumed.model.state_dict(), straight.model.state_dict())
    assert Hub(tmp_path / "a").log("r")["step"].tolist() == [1, 2, 3, 4]


def test_resuming_a_natural_text_run_reuses_its_tokenizer_and_batches(tmp_path, monkeypatch):
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text(make_text(3, 40))
    data = DataSpec(source="files", files=(str(corpus_file),))
    spec = tiny_spec(d_vocab=300, n_ctx=32)
    go(run_cfg(spec, data, steps=2), tmp_path / "a")
    tokenizer = (tmp_path / "a" / "r" / C.TOKENIZER).read_bytes()
    assert Hub(tmp_path / "a").file_hashes("r")[C.TOKENIZER]  # recorded and verified
    straight = go(run_cfg(spec, data, steps=4), tmp_path / "b")

    import induction_lens.data.text as text_module

    def no_training(*args, **kwargs):
        raise AssertionError("resume trained a new tokenizer instead of reusing the run's")

    monkeypatch.setattr(text_module, "train_bpe", no_training)
    monkeypatch.setattr(text_module, "gpt2_tokenizer", no_training)
    resumed = go(run_cfg(spec, data, steps=4), tmp_path / "a", resume=True)
    assert (tmp_path / "a" / "r" / C.TOKENIZER).read_bytes() == tokenizer
    a, b = Hub(tmp_path / "a").corpus("r"), Hub(tmp_path / "b").corpus("r")
    for step in range(4):
        assert torch.equal(a.batch(step, 2), b.batch(step, 2)), step
    assert_same_weights(resumed.model.state_dict(), straight.model.state_dict())
    assert Hub(tmp_path / "a").log("r")["loss"].tolist() == straight.log["loss"].tolist()


def test_resume_with_a_corrupted_tokenizer_is_refused(tmp_path):
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text(make_text(4, 20))
    data = DataSpec(source="files", files=(str(corpus_file),))
    spec = tiny_spec(d_vocab=300, n_ctx=32)
    go(run_cfg(spec, data, steps=2), tmp_path / "hub")
    path = tmp_path / "hub" / "r" / C.TOKENIZER
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(HubError, match="tokenizer.json is corrupted"):
        go(run_cfg(spec, data, steps=4), tmp_path / "hub", resume=True)
    assert Hub(tmp_path / "hub").checkpoints("r")["step"].tolist() == [0, 2]
