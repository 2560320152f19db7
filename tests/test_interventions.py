"""Training-time interventions: declared in TrainConfig, applied through hooks, resumable."""

from dataclasses import replace

import pytest
import torch

from induction_lens.config import ConfigError, Intervention, RunConfig, TrainConfig
from induction_lens.hub import Hub
from induction_lens.models import build_model, fused_attention
from induction_lens.models.interventions import InterventionHooks, clamp_pattern
from induction_lens.train import train

from .conftest import TINY_DATA, tiny_spec

BASE = TrainConfig(steps=6, batch_size=2, checkpoint_every=2, warmup_steps=2)


def run_cfg(*interventions, **fields) -> RunConfig:
    return RunConfig(tiny_spec(), replace(BASE, interventions=tuple(interventions), **fields),
                     TINY_DATA)


def go(cfg, root, run="r", **kwargs):
    return train(cfg, hub=root, run=run, progress=False, device="cpu", **kwargs)


def tokens(n=3, pos=24, seed=1):
    return torch.randint(0, 50, (n, pos), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- config
def test_interventions_round_trip_through_run_json(tmp_path):
    items = (Intervention("clamp_pattern", 0, 1, pattern="previous_token"),
             Intervention("ablate", 1, 2, start_step=3, ablation="mean"),
             Intervention("freeze", 1, 0, weights="all"))
    cfg = run_cfg(*items, steps=2)
    go(cfg, tmp_path)
    stored = Hub(tmp_path).config("r")
    assert stored.train.interventions == items
    assert RunConfig.from_dict(cfg.to_dict()).train == cfg.train


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"kind": "drop", "layer": 0, "head": 0}, "Intervention.kind='drop'"),
    ({"kind": "ablate", "layer": -1, "head": 0}, "Intervention.layer=-1"),
    ({"kind": "ablate", "layer": 0, "head": 0, "ablation": "noise"}, "Intervention.ablation"),
    ({"kind": "clamp_pattern", "layer": 0, "head": 0, "pattern": "next"},
     "Intervention.pattern"),
    ({"kind": "freeze", "layer": 0, "head": 0, "weights": "ov"}, "Intervention.weights"),
    ({"kind": "freeze", "layer": 0, "head": 0, "start_step": 1.5}, "Intervention.start_step"),
])
def test_bad_interventions_name_the_field(kwargs, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")) as err:
        Intervention(**kwargs)
    assert "\n" not in str(err.value)


def test_duplicate_and_out_of_range_interventions_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="two 'ablate' interventions on L0H1"):
        replace(BASE, interventions=(Intervention("ablate", 0, 1), Intervention("ablate", 0, 1)))
    with pytest.raises(ConfigError, match="must be an Intervention"):
        replace(BASE, interventions=("ablate L0H1",))
    with pytest.raises(ConfigError, match="does not have .2 layers x 4 heads"):
        go(run_cfg(Intervention("ablate", 2, 0)), tmp_path)
    assert not (tmp_path / "r").exists() or "r" not in Hub(tmp_path).runs()


# --------------------------------------------------------------------------- hooks
def test_clamp_patterns_by_hand():
    prev = clamp_pattern("previous_token", 4)
    assert prev.tolist() == [[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
    assert clamp_pattern("bos", 3).tolist() == [[1, 0, 0], [1, 0, 0], [1, 0, 0]]
    assert clamp_pattern("self", 3).tolist() == torch.eye(3).tolist()
    torch.testing.assert_close(clamp_pattern("uniform", 3), torch.tensor(
        [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]]))


def test_clamped_pattern_is_what_the_fused_model_computes_with():
    """With the fused paths on, the clamp still reaches hook_pattern and the logits equal a
    reference that sets the pattern by hand on TransformerLens's own path."""
    model = build_model(tiny_spec(), seed=0)
    toks = tokens()
    clamp = clamp_pattern("previous_token", 24)
    seen = {}
    with fused_attention(model, True), \
            InterventionHooks(model, (Intervention("clamp_pattern", 0, 2),)) as hooks:
        hooks.before_forward(0)
        probe = model.blocks[0].attn.hook_pattern.register_forward_hook(
            lambda m, i, out: seen.setdefault("pattern", out.detach().clone()))
        clamped = model(toks)
        probe.remove()
    assert torch.equal(seen["pattern"][:, 2], clamp.expand(3, 24, 24))

    def set_pattern(pattern, hook):
        pattern[:, 2] = clamp
        return pattern

    with fused_attention(model, False):
        reference = model.run_with_hooks(toks, fwd_hooks=[("blocks.0.attn.hook_pattern",
                                                           set_pattern)])
        plain = model(toks)
    torch.testing.assert_close(clamped, reference, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(clamped, plain, atol=1e-3)  # the clamp changed something
    assert not model.blocks[0].attn.hook_pattern._forward_hooks  # closed: hooks removed


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_ablated_head_output_by_hand(ablation):
    model = build_model(tiny_spec(), seed=0)
    toks = tokens()
    _, cache = model.run_with_cache(toks, names_filter="blocks.1.attn.hook_z")
    z = cache["blocks.1.attn.hook_z"]
    expected = z.clone()
    expected[:, :, 3] = 0.0 if ablation == "zero" else z[:, :, 3].mean(dim=0)

    def set_z(value, hook):
        return expected

    reference = model.run_with_hooks(toks, fwd_hooks=[("blocks.1.attn.hook_z", set_z)])
    with InterventionHooks(model, (Intervention("ablate", 1, 3, ablation=ablation),)) as hooks:
        hooks.before_forward(0)
        ablated = model(toks)
    torch.testing.assert_close(ablated, reference, rtol=1e-5, atol=1e-5)


def test_hooks_attach_only_from_their_start_step():
    model = build_model(tiny_spec(), seed=0)
    item = Intervention("clamp_pattern", 1, 0, start_step=3)
    with InterventionHooks(model, (item,)) as hooks:
        hooks.before_forward(2)
        assert hooks.active == () and not model.blocks[1].attn.hook_pattern._forward_hooks
        hooks.before_forward(3)
        hooks.before_forward(4)  # attached once, not twice
        assert hooks.active == (item,)
        assert len(model.blocks[1].attn.hook_pattern._forward_hooks) == 1


# --------------------------------------------------------------------------- training
def test_training_applies_each_kind(tmp_path):
    """End to end through train(): weight decay 0, so a head whose Q/K get no gradient keeps
    its initial W_Q exactly. A previous-token clamp in layer 0 cuts its Q/K off the loss; a
    frozen head keeps every frozen slice; an unclamped head moves."""
    init = build_model(tiny_spec(), seed=0).state_dict()
    items = (Intervention("clamp_pattern", 0, 1),
             Intervention("freeze", 1, 2, weights="all"),
             Intervention("ablate", 1, 3))
    res = go(run_cfg(*items, steps=4, weight_decay=0.0), tmp_path)
    final = res.model.state_dict()
    a0, a1 = "blocks.0.attn.", "blocks.1.attn."
    assert torch.equal(final[a0 + "W_Q"][1], init[a0 + "W_Q"][1])
    assert torch.equal(final[a0 + "W_K"][1], init[a0 + "W_K"][1])
    assert not torch.equal(final[a0 + "W_Q"][0], init[a0 + "W_Q"][0])
    for name in ("W_Q", "b_Q", "W_K", "W_V", "b_V", "W_O"):
        assert torch.equal(final[a1 + name][2], init[a1 + name][2]), name
    assert not torch.equal(final[a1 + "W_V"][1], init[a1 + "W_V"][1])
    # a zero-ablated head's output never reaches the loss: its V and O get no gradient
    assert torch.equal(final[a1 + "W_V"][3], init[a1 + "W_V"][3])
    assert torch.equal(final[a1 + "W_O"][3], init[a1 + "W_O"][3])


def test_freeze_holds_under_weight_decay_from_its_step(tmp_path):
    hub = Hub(tmp_path)
    go(run_cfg(Intervention("freeze", 0, 0, start_step=2), steps=6, weight_decay=0.1), tmp_path)
    at2, at6 = hub.load_state_dict("r", 2), hub.load_state_dict("r", 6)
    at0 = hub.load_state_dict("r", 0)
    w = "blocks.0.attn.W_Q"
    assert torch.equal(at2[w][0], at6[w][0])
    assert not torch.equal(at0[w][0], at2[w][0])  # trained freely before its step
    assert not torch.equal(at2[w][1], at6[w][1])


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    items = (Intervention("clamp_pattern", 0, 0, start_step=1),
             Intervention("ablate", 1, 1, start_step=3, ablation="mean"),
             Intervention("freeze", 1, 2, start_step=5))
    straight = go(run_cfg(*items, steps=8), tmp_path / "a")
    go(run_cfg(*items, steps=4), tmp_path / "b")
    resumed = go(run_cfg(*items, steps=8), tmp_path / "b", resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert Hub(tmp_path / "a").log("r")["loss"].tolist() == \
        Hub(tmp_path / "b").log("r")["loss"].tolist()


def test_intervened_run_is_evaluated_like_any_other(tmp_path):
    from induction_lens.runs.evaluate import EvalSettings, evaluate_run

    go(run_cfg(Intervention("ablate", 0, 0), steps=2), tmp_path)
    frame = evaluate_run(tmp_path, "r", metrics=["losses", "prefix_matching"],
                         settings=EvalSettings(n_examples=4, batch_size=4, head_examples=2,
                                               head_seq_len=5),
                         device="cpu", progress=False)
    assert set(frame["step"]) == {0, 2}
    assert {"icl_score", "prefix_matching"} <= set(frame["metric"])


@pytest.mark.slow
def test_beyond_interventions_example_tiny(tmp_path):
    """The example's plumbing in --tiny mode (12 steps: verdicts are not checked)."""
    import importlib
    import json
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    if str(examples) not in sys.path:
        sys.path.insert(0, str(examples))
    module = importlib.import_module("beyond_interventions")
    code = module.main(["--tiny", "--hub", str(tmp_path / "hub"), "--out", str(tmp_path / "out"),
                        "--threads", "1", "--no-png", "-q"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert code == 0 and summary["error"] is None and summary["mode"] == "tiny"
    keys = [c["key"].split("[")[0] for c in summary["claims"]]
    assert keys == ["clamp_prev_earlier", "ablate_l0_no_phase_change",
                    "freeze_l1_qk_no_phase_change", "ablate_one_l0_keeps_phase_change"]
    assert all(isinstance(c["passed"], bool) for c in summary["claims"])
    runs = {r["run"] for r in summary["runs"]}
    assert {"tiny-attn-only-2l-clamp-l0-prev", "tiny-attn-only-2l-freeze-l1-qk"} <= runs
    stored = Hub(tmp_path / "hub").config("tiny-attn-only-2l-clamp-l0-prev").train
    assert [i.kind for i in stored.interventions] == ["clamp_pattern"] * 4
    assert any(f["name"].startswith("llc_") and Path(f["html"]).is_file()
               for f in summary["figures"])
