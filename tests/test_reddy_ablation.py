"""Head ablations of Reddy 2023's network on the ablation engine's fast path, with the
classifier as the readout: checked against one ``run_with_hooks`` per head and against a
network whose answer can be written down by hand."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import induction_lens as il
from induction_lens.config import ModelSpec, ReddyNetSpec, ReddyTaskSpec, RunConfig, TrainConfig
from induction_lens.data.reddy import eval_set, make_world
from induction_lens.errors import EvalError
from induction_lens.measures.ablations import AblationError, ablate_readout
from induction_lens.measures.reddy import classifier_readout, head_ablation
from induction_lens.models.reddy import ReddyNetwork
from induction_lens.models.transformer import build_model

TASK = ReddyTaskSpec(K=64, L=16, N=8, B=2, D=15, n_pos=20, p_C=0.5)


def _network(seed: int = 0, init_std: float = 0.5) -> ReddyNetwork:
    """A random network with sharp (far from uniform) attention, so that frozen and recomputed
    patterns differ."""
    torch.manual_seed(seed)
    return ReddyNetwork(replace(ReddyNetSpec.for_task(TASK), init_std=init_std), seed=seed,
                        device="cpu")


def _ic(n: int = 96):
    return eval_set(TASK, make_world(TASK), "ic", n)


@torch.no_grad()
def _reference(net: ReddyNetwork, inputs: torch.Tensor, targets: torch.Tensor, layer: int,
               kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss and correctness with head (layer, 0) zeroed through TransformerLens
    hooks; for "pattern" every attention pattern is forced to the clean run's."""
    _, cache = net.run_with_cache(inputs)
    hooks = [(f"blocks.{layer}.attn.hook_z", lambda z, hook: torch.zeros_like(z))]
    if kind == "pattern":
        for m in range(net.cfg.n_layers):
            clean = cache[f"blocks.{m}.attn.hook_pattern"]
            hooks.append((f"blocks.{m}.attn.hook_pattern", lambda p, hook, c=clean: c))
    logits = net.run_with_hooks(inputs, fwd_hooks=hooks)
    return (F.cross_entropy(logits, targets, reduction="none"),
            (logits.argmax(-1) == targets).float())


@pytest.mark.parametrize("kind", ["pattern", "full"])
def test_fast_path_equals_hooks_one_head_at_a_time(kind):
    torch.set_num_threads(1)
    net, batch = _network(), _ic()
    result = ablate_readout(net, batch.inputs, batch.targets, classifier_readout, kind,
                            batch_size=40)  # 3 batches, the last one short
    assert result.heads == [(0, 0), (1, 0)]
    with torch.no_grad():
        logits = net(batch.inputs)
    clean_loss = F.cross_entropy(logits, batch.targets, reduction="none")
    torch.testing.assert_close(result.clean[:, 0], clean_loss, atol=1e-5, rtol=1e-5)
    assert torch.equal(result.clean[:, 1], (logits.argmax(-1) == batch.targets).float())
    for i, layer in enumerate((0, 1)):
        loss, correct = _reference(net, batch.inputs, batch.targets, layer, kind)
        torch.testing.assert_close(result.ablated[i, :, 0], loss, atol=1e-5, rtol=1e-5)
        assert torch.equal(result.ablated[i, :, 1], correct)


def test_pattern_and_full_differ_upstream_and_agree_in_the_last_layer():
    """Layer 2 is the last attention layer: nothing whose pattern could change follows it, so
    both kinds give the same numbers; ablating layer 1 changes layer 2's pattern only in the
    full kind (a check that the frozen patterns are really used)."""
    net, batch = _network(), _ic()
    pat = ablate_readout(net, batch.inputs, batch.targets, classifier_readout, "pattern")
    full = ablate_readout(net, batch.inputs, batch.targets, classifier_readout, "full")
    torch.testing.assert_close(pat.ablated[1], full.ablated[1], atol=1e-6, rtol=1e-6)
    assert (pat.ablated[0, :, 0] - full.ablated[0, :, 0]).abs().max() > 1e-3


@torch.no_grad()
def test_uniform_layer2_by_hand():
    """Layer 2 with Q = K = 0 attends uniformly whatever its input, so with layer 1 removed
    the last position reads ``x_T + mean_{t<=T} x_t V`` (W_O = I): written out here with
    plain tensor algebra, no hooks."""
    net, batch = _network(), _ic(32)
    net.blocks[1].attn.W_Q.zero_()
    net.blocks[1].attn.W_K.zero_()
    x = batch.inputs
    resid = x[:, -1] + (x @ net.blocks[1].attn.W_V[0]).mean(dim=1)
    logits = net.classifier(resid)
    loss = F.cross_entropy(logits, batch.targets, reduction="none")
    for kind in ("pattern", "full"):
        result = ablate_readout(net, x, batch.targets, classifier_readout, kind, [(0, 0)])
        torch.testing.assert_close(result.ablated[0, :, 0], loss, atol=1e-5, rtol=1e-5)
    # Layer 2 writing nothing (W_V = 0): ablating it changes nothing at all.
    net.blocks[1].attn.W_V.zero_()
    silent = ablate_readout(net, x, batch.targets, classifier_readout, "pattern", [(1, 0)])
    assert torch.equal(silent.delta, torch.zeros_like(silent.delta))


def test_head_ablation_frame_matches_the_reference():
    net, batch = _network(), _ic()
    frame = head_ablation(net, batch)
    assert set(frame["kind"]) == {"pattern"}
    per_head = frame.dropna(subset=["layer"]).set_index(["metric", "layer"])["value"]
    for layer in (0, 1):
        loss, correct = _reference(net, batch.inputs, batch.targets, layer, "pattern")
        assert per_head[("ablated_accuracy", layer)] == pytest.approx(correct.mean().item())
        assert per_head[("ablated_loss", layer)] == pytest.approx(loss.mean().item(), rel=1e-5)
    clean = frame[frame["layer"].isna()].set_index("metric")["value"]
    with torch.no_grad():
        logits = net(batch.inputs)
    acc = (logits.argmax(-1) == batch.targets).float().mean().item()
    assert clean["clean_accuracy"] == pytest.approx(acc)
    assert clean["clean_loss"] == pytest.approx(F.cross_entropy(logits, batch.targets).item(),
                                                rel=1e-5)


def test_bad_inputs_get_clear_errors():
    net, batch = _network(), _ic(8)
    x, y = batch.inputs, batch.targets
    with pytest.raises(AblationError, match="residual stream"):
        ablate_readout(net, x[..., :-1], y, classifier_readout)
    with pytest.raises(AblationError, match="residual stream"):
        ablate_readout(net, x.long(), y, classifier_readout)
    with pytest.raises(AblationError, match="targets"):
        ablate_readout(net, x, y[:-1], classifier_readout)
    with pytest.raises(AblationError, match="position"):
        ablate_readout(net, x, y, classifier_readout, position=x.shape[1])
    with pytest.raises(AblationError, match="kind"):
        ablate_readout(net, x, y, classifier_readout, "mean")  # type: ignore[arg-type]
    with pytest.raises(AblationError, match="out of range"):
        ablate_readout(net, x, y, classifier_readout, heads=[(2, 0)])
    with pytest.raises(AblationError, match="n_ctx"):
        ablate_readout(net, torch.zeros(2, net.cfg.n_ctx + 1, net.cfg.d_model),
                       torch.zeros(2, dtype=torch.long), classifier_readout)
    lm = build_model(ModelSpec(n_layers=1, d_model=TASK.n_pos + TASK.D, n_heads=1,
                               d_head=TASK.n_pos + TASK.D, n_ctx=32, d_vocab=50),
                     device="cpu")
    with pytest.raises(EvalError, match="classifier"):
        head_ablation(lm, batch)
    net.blocks[0].attn.hook_z.add_hook(lambda z, hook: z)
    with pytest.raises(AblationError, match="hooks"):
        head_ablation(net, batch)
    net.reset_hooks()


def test_registered_metric_over_a_run(tmp_path):
    torch.set_num_threads(1)
    train = TrainConfig(steps=4, batch_size=16, lr=1e-3, warmup_steps=0, grad_clip=None,
                        weight_decay=0.0, checkpoint_every=2, optimizer="adamw")
    cfg = RunConfig(ReddyNetSpec.for_task(TASK), train, TASK, preset=None)
    il.train(cfg, hub=tmp_path, run="r", device="cpu", progress=False)
    settings = il.runs.EvalSettings(n_examples=64)
    frame = il.evaluate_run(tmp_path, "r", metrics="reddy_ablation_pattern", settings=settings,
                            device="cpu", progress=False)
    assert sorted(frame["step"].unique()) == [0, 2, 4]
    assert set(frame["metric"]) == {"ic_ablated_accuracy", "ic_ablated_loss",
                                    "ic_clean_accuracy", "ic_clean_loss"}
    last = frame[frame["step"] == 4]
    model = il.Hub(tmp_path).load_model("r", device="cpu")
    direct = head_ablation(model, eval_set(TASK, make_world(TASK), "ic", 64))
    keys = ["metric", "layer", "head"]
    got = last[keys + ["value"]].astype({"layer": "Int64", "head": "Int64"})
    want = direct.assign(metric="ic_" + direct["metric"])[keys + ["value"]]
    both = got.merge(want.astype({"layer": "Int64", "head": "Int64"}), on=keys)
    assert len(both) == len(direct) == 6
    assert both["value_x"].tolist() == pytest.approx(both["value_y"].tolist())
    # The clean accuracy is the reddy metric's IC accuracy on the same sequences.
    reddy = il.evaluate_run(tmp_path, "r", metrics="ic_accuracy", settings=settings,
                            device="cpu", progress=False)
    assert (reddy[reddy["step"] == 4]["value"].item()
            == pytest.approx(last[last["metric"] == "ic_clean_accuracy"]["value"].item()))
    with pytest.raises(EvalError, match="other runs than reddy"):
        il.evaluate_run(tmp_path, "r", metrics="ablation_pattern", settings=settings,
                        device="cpu", progress=False)
