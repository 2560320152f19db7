"""Head ablations: the fast path equals the plain TransformerLens loop, and Argument 3 holds.

The reference implementation lives here, written in the plain TransformerLens idiom of the
paper's appendix "(2) Per-token losses (attention head ablations)": one ``run_with_hooks`` per
head with full logits and per-token losses; zeroing ``hook_z`` zeroes the head's result; for the
pattern-preserving kind a first run records every ``hook_pattern`` and the ablated runs force
them back.
"""

import argparse
import re
import shutil
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch
from jaxtyping import TypeCheckError
from transformer_lens import HookedTransformer, HookedTransformerConfig

from induction_lens.cli import ablate as cli_ablate
from induction_lens.hub import Hub
from induction_lens.measures import ablations as A
from induction_lens.measures._checks import EvalError
from induction_lens.measures.ablations import AblationError, ablate, ablation_metrics
from induction_lens.measures.losses import icl_indices, random_token_indices
from induction_lens.models import build_model, quiet_deprecation
from induction_lens.runs import ablations as RA
from induction_lens.runs.evaluate import EvalSettings

from .conftest import tiny_spec

ATOL = 1e-5  # the bound on |fast - reference| in float32

VARIANTS = {
    "attn-only-LN": {},
    "attn-only-LNPre": {"normalization_type": "LNPre"},
    "attn-only-noLN": {"normalization_type": None},
    "mlp": {"attn_only": False},
    "smeared": {"smeared_keys": True},
    "smeared-mlp": {"smeared_keys": True, "attn_only": False},
    "standard-positions-3l": {"positional_embedding_type": "standard", "n_layers": 3},
    "mlp-3l": {"attn_only": False, "n_layers": 3},
}


# ---------------------------------------------------------------------------- reference
def _zero_heads(z, hook, heads):
    z = z.clone()
    z[:, :, heads] = 0.0
    return z


def _force(pattern, hook, recorded):
    return recorded


@torch.no_grad()
def reference_ablation(model: HookedTransformer, tokens: torch.Tensor, kind: str,
                       ablations: list[list[tuple[int, int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean per-token losses and ablated-minus-clean ``[ablation, batch, pos - 1]``."""
    clean = model(tokens, return_type="loss", loss_per_token=True)
    forced = []
    if kind == "pattern":
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
        forced = [(name, partial(_force, recorded=cache[name])) for name in cache]
    deltas = []
    for heads in ablations:
        by_layer: dict[int, list[int]] = {}
        for layer, head in heads:
            by_layer.setdefault(layer, []).append(head)
        hooks = [(f"blocks.{layer}.attn.hook_z", partial(_zero_heads, heads=hs))
                 for layer, hs in by_layer.items()]
        ablated = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True,
                                       fwd_hooks=hooks + forced)
        deltas.append(ablated - clean)
    return clean, torch.stack(deltas)


def randomised_model(overrides: dict, seed: int = 1) -> HookedTransformer:
    """A tiny model whose every parameter (biases, LayerNorm gains, smear alphas) is random,
    so that no term of the forward pass is zero by initialisation."""
    model = build_model(tiny_spec(**overrides), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith((".w", "ln_final.w")):
                param.copy_(1 + 0.3 * torch.randn(param.shape, generator=gen))
            elif param.abs().max() == 0 or "smear_alpha" in name:
                param.copy_(0.3 * torch.randn(param.shape, generator=gen))
    return model


def _tokens(n: int, pos: int = 24, d_vocab: int = 50) -> torch.Tensor:
    tokens = torch.randint(1, d_vocab, (n, pos))
    tokens[:, 0] = 0
    return tokens


# ---------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("kind", ["pattern", "full"])
@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_fast_path_equals_reference_every_index(overrides, kind):
    model = randomised_model(overrides)
    tokens = _tokens(5)
    cfg = model.cfg
    heads = [(layer, head) for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]
    clean_ref, delta_ref = reference_ablation(model, tokens, kind, [[h] for h in heads])
    result = ablate(model, tokens, kind, batch_size=2)
    assert result.heads == heads
    assert result.delta.shape == delta_ref.shape == (len(heads), 5, 23)
    assert torch.equal(result.indices[0], torch.arange(1, 24))
    torch.testing.assert_close(result.clean, clean_ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(result.delta, delta_ref, atol=ATOL, rtol=0)
    assert delta_ref.abs().max() > 0.05  # the ablations do change the losses


@pytest.mark.parametrize("kind", ["pattern", "full"])
@pytest.mark.parametrize("normalization", ["RMS", "RMSPre"])
def test_fast_path_equals_reference_on_a_stock_hooked_transformer(normalization, kind):
    """Any standard HookedTransformer: stock attention, RMS norms, GPT-2 positions, MLPs."""
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=24,
                                  d_vocab=50, act_fn="gelu", normalization_type=normalization,
                                  positional_embedding_type="standard", seed=0)
    with quiet_deprecation():
        model = HookedTransformer(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    tokens = _tokens(4)
    heads = [(0, 0), (0, 3), (1, 1)]
    _, delta_ref = reference_ablation(model, tokens, kind, [[h] for h in heads])
    torch.testing.assert_close(ablate(model, tokens, kind, heads).delta, delta_ref, atol=ATOL,
                               rtol=0)


@pytest.mark.parametrize("kind", ["pattern", "full"])
@pytest.mark.parametrize("overrides", [VARIANTS["mlp-3l"], VARIANTS["smeared"]],
                         ids=["mlp-3l", "smeared"])
def test_fast_path_at_chosen_indices_and_stacked_heads(overrides, kind):
    """Per-example indices (the reports' sparse path) and several heads per pass."""
    model = randomised_model(overrides, seed=3)
    tokens = _tokens(7)
    heads = [(layer, head) for layer in range(model.cfg.n_layers) for head in (0, 2, 3)]
    _, delta_ref = reference_ablation(model, tokens, kind, [[h] for h in heads])
    indices = torch.randint(1, 24, (7, 3))
    indices[0] = torch.tensor([1, 23, 23])  # both ends, and a repeated index
    for heads_per_pass in (1, 2, 3):
        result = ablate(model, tokens, kind, heads, indices=indices, batch_size=3,
                        heads_per_pass=heads_per_pass)
        expected = delta_ref.gather(2, (indices - 1).expand(len(heads), -1, -1))
        torch.testing.assert_close(result.delta, expected, atol=ATOL, rtol=0)
        assert torch.equal(result.indices, indices)


@pytest.mark.parametrize("kind", ["pattern", "full"])
def test_joint_ablation_equals_reference(kind):
    model = randomised_model(VARIANTS["mlp-3l"], seed=4)
    tokens = _tokens(4)
    heads = [(0, 1), (1, 0), (1, 3), (2, 2)]
    _, delta_ref = reference_ablation(model, tokens, kind, [heads])
    result = ablate(model, tokens, kind, heads, jointly=True)
    assert result.delta.shape == (1, 4, 23)
    torch.testing.assert_close(result.delta, delta_ref, atol=ATOL, rtol=0)
    sparse = ablate(model, tokens, kind, heads, jointly=True, indices=torch.tensor([5, 20]))
    torch.testing.assert_close(sparse.delta, delta_ref[:, :, [4, 19]], atol=ATOL, rtol=0)


def test_pattern_and_full_ablations_differ_only_downstream():
    """A head of the last layer has no downstream attention: both kinds agree; earlier heads
    change later patterns, so the kinds differ there."""
    model = randomised_model({}, seed=5)
    tokens = _tokens(4)
    full = ablate(model, tokens, "full")
    pattern = ablate(model, tokens, "pattern")
    last = [i for i, (layer, _) in enumerate(full.heads) if layer == model.cfg.n_layers - 1]
    first = [i for i, (layer, _) in enumerate(full.heads) if layer == 0]
    torch.testing.assert_close(full.delta[last], pattern.delta[last], atol=ATOL, rtol=0)
    assert (full.delta[first] - pattern.delta[first]).abs().max() > 1e-2


# ---------------------------------------------------------------------------- by hand
@pytest.mark.parametrize("kind", ["pattern", "full"])
def test_zero_ablating_a_silent_head_changes_nothing(kind):
    model = randomised_model({"attn_only": False, "n_layers": 3}, seed=6)
    with torch.no_grad():
        model.blocks[1].attn.W_O[2] = 0.0  # head (1, 2) writes nothing
    tokens = _tokens(6)
    result = ablate(model, tokens, kind, [(1, 2), (1, 1)])
    _, delta_ref = reference_ablation(model, tokens, kind, [[(1, 2)]])
    # Nothing changes, up to float32 rounding (the reference's recomputed layers run other
    # kernels than its clean run, so it is not bit-exact either).
    assert delta_ref.abs().max() <= 1e-6
    assert result.delta[0].abs().max() <= 1e-6
    assert result.delta[1].abs().max() > 1e-2  # while a live head does change the losses


@pytest.mark.parametrize("normalization", ["LN", "LNPre", None])
def test_last_layer_ablation_subtracts_the_direct_contribution(normalization):
    """In an attention-only model, ablating a last-layer head is removing ``z_h W_O^h`` from
    the final residual stream before the final LayerNorm, computed here by hand."""
    model = randomised_model({"normalization_type": normalization}, seed=7)
    tokens = _tokens(5)
    layer, head = model.cfg.n_layers - 1, 1
    _, cache = model.run_with_cache(tokens)
    resid = cache[f"blocks.{layer}.hook_resid_post"]
    direct = cache[f"blocks.{layer}.attn.hook_z"][:, :, head] @ model.W_O[layer, head]

    def losses(x):
        if normalization is not None:
            x = x - x.mean(-1, keepdim=True)
            x = x / (x.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
            if normalization == "LN":
                x = x * model.ln_final.w + model.ln_final.b
        logits = x @ model.W_U + model.b_U
        logp = logits.log_softmax(-1)[:, :-1]
        return -logp.gather(-1, tokens[:, 1:, None])[..., 0]

    expected = (losses(resid - direct) - losses(resid)).detach()
    for kind in ("pattern", "full"):
        result = ablate(model, tokens, kind, [(layer, head)])
        torch.testing.assert_close(result.delta[0], expected, atol=ATOL, rtol=0)


def test_ablating_every_head_of_a_one_layer_model_leaves_the_direct_path():
    """With every head of a 1-layer attention-only model ablated (and b_O kept), the logits
    are the direct path ``unembed(ln_final(embed + b_O))``: a function of the current token."""
    model = randomised_model({"n_layers": 1}, seed=8)
    tokens = _tokens(4)
    result = ablate(model, tokens, "full", [(0, h) for h in range(4)], jointly=True)
    resid = model.embed(tokens) + model.blocks[0].attn.b_O
    logits = model.unembed(model.ln_final(resid))
    direct = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:],
                                               reduction="none").detach()
    torch.testing.assert_close(result.clean + result.delta[0], direct, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------- reports
def test_reports_equal_their_definitions_on_the_dense_losses():
    """The streamed reports (dense and sparse batches) equal the definitions applied to the
    every-index losses of :func:`ablate`."""
    model = randomised_model({"attn_only": False}, seed=9)
    n = 19
    tokens = _tokens(n)
    rand = random_token_indices(n, 24, seed=3)
    before_after = torch.randn(n, dtype=torch.float64)
    frame = ablation_metrics(model, tokens, "pattern", random_indices=rand,
                             before_after=before_after, context_fraction=0.35, batch_size=4)
    full = ablate(model, tokens, "pattern")
    early, late = icl_indices(24)
    d = full.delta.double()
    unit = before_after / before_after.norm()
    d_rand = d.gather(2, (rand - 1).expand(d.shape[0], -1)[..., None])[..., 0]
    expected = {
        "icl_score_delta": (d[:, :, late - 1] - d[:, :, early - 1]).mean(1),
        "random_token_loss_delta": d_rand.mean(1),
        "before_after_projection": d_rand @ unit,
    }
    for name, values in expected.items():
        got = frame[frame.metric == name].sort_values(["layer", "head"])
        assert list(zip(got["layer"], got["head"], strict=True)) == full.heads
        np.testing.assert_allclose(got.value.to_numpy(), values.numpy(), atol=1e-6, rtol=0)
    ctx = frame[frame.metric == "context_loss_delta"]
    assert len(ctx) == len(full.heads) * 23
    first = ctx[(ctx["layer"] == 1) & (ctx["head"] == 2)].sort_values("position")
    assert first.position.tolist() == list(range(1, 24))
    np.testing.assert_allclose(first.value.to_numpy(),
                               d[full.heads.index((1, 2)), :7].mean(0).numpy(), atol=1e-6)
    clean = full.clean.double()
    model_level = frame[frame.layer.isna()].set_index("metric").value
    assert model_level["clean_icl_score"] == pytest.approx(
        float((clean[:, late - 1] - clean[:, early - 1]).mean()), abs=1e-6)
    assert model_level["clean_random_token_loss"] == pytest.approx(
        float(clean.gather(1, (rand - 1)[:, None]).mean()), abs=1e-6)
    assert list(frame.columns) == ["layer", "head", "metric", "value", "position", "kind"]
    assert set(frame["kind"]) == {"pattern"}


def test_reports_without_window_or_context_average():
    model = randomised_model({}, seed=10)
    frame = ablation_metrics(model, _tokens(6), "full", heads=[(1, 0)], context_fraction=0.0)
    assert set(frame.metric) == {"icl_score_delta", "random_token_loss_delta", "clean_icl_score",
                                 "clean_random_token_loss"}
    assert set(frame["kind"]) == {"full"}


def test_before_after_vector_is_the_normalised_difference():
    start, end = torch.tensor([3.0, 2.0, 1.0]), torch.tensor([3.0, 5.0, 5.0])
    torch.testing.assert_close(A.before_after_vector(start, end),
                               torch.tensor([0.0, 0.6, 0.8], dtype=torch.float64))
    with pytest.raises(AblationError, match="identical"):
        A.before_after_vector(start, start)


def test_memory_budget_sets_the_batch_size():
    model = build_model(tiny_spec(n_ctx=512, d_vocab=50, n_layers=4), seed=0)
    small = A.default_batch_size(model, 512, "pattern", memory_budget=64 * 2**20)
    large = A.default_batch_size(model, 512, "pattern", memory_budget=256 * 2**20)
    assert 1 <= small < large <= 4 * small + 1  # proportional to the budget
    # the pattern-preserving kind also holds every layer's patterns
    assert large <= A.default_batch_size(model, 512, "full", memory_budget=256 * 2**20)
    assert A.default_batch_size(model, 512, "pattern", memory_budget=1) == 1
    assert A.default_batch_size(model, 24, "pattern") == 64  # capped


# ---------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(("call", "message"), [
    (lambda m, t: ablate(m, t, "zero"), r"kind='zero' is not one of \('pattern', 'full'\)"),
    (lambda m, t: ablate(m, t, heads=[(2, 0)]), r"head \(2, 0\) is out of range"),
    (lambda m, t: ablate(m, t, heads=[(0, 4)]), r"head \(0, 4\) is out of range"),
    (lambda m, t: ablate(m, t, heads=[(0, -1)]), r"out of range"),
    (lambda m, t: ablate(m, t, heads=[(0, 1), (0, 1)]), "duplicates"),
    (lambda m, t: ablate(m, t, heads=[]), "heads is empty"),
    (lambda m, t: ablate(m, t, heads=[0]), "must be \\(layer, head\\) pairs"),
    (lambda m, t: ablate(m, torch.zeros(2, 30, dtype=torch.long)), "context is 24"),
    (lambda m, t: ablate(m, t.float()), "integer token ids"),
    (lambda m, t: ablate(m, t[0]), r"shape \[batch, pos\]"),
    (lambda m, t: ablate(m, t + 100), "vocabulary"),
    (lambda m, t: ablate(m, t[:, :1]), "at least 2"),
    (lambda m, t: ablate(m, t, indices=torch.tensor([0, 3])), r"lie in \[1, 23\]"),
    (lambda m, t: ablate(m, t, indices=torch.tensor([24])), r"lie in \[1, 23\]"),
    (lambda m, t: ablate(m, t, indices=torch.ones(5, 2, dtype=torch.long)), "batch=3"),
    (lambda m, t: ablate(m, t, batch_size=0), "batch_size=0"),
    (lambda m, t: ablate(m, t, heads_per_pass=0), "heads_per_pass=0"),
    (lambda m, t: ablation_metrics(m, t, before_after=torch.zeros(3)), "zero"),
    (lambda m, t: ablation_metrics(m, t, before_after=torch.ones(4)), "one entry per example"),
    (lambda m, t: ablation_metrics(m, t, context_fraction=1.5), "context_fraction=1.5"),
])
def test_bad_inputs_give_one_line_errors(call, message):
    model = build_model(tiny_spec(), seed=0)
    tokens = _tokens(3)
    # Under the runtime type checker (pytest --jaxtyping-packages=...), inputs that break the
    # annotations are stopped by it first; without it, the library's own one-line errors.
    with pytest.raises((EvalError, TypeCheckError)) as info:
        call(model, tokens)
    if isinstance(info.value, EvalError):  # AblationError is an EvalError
        assert re.search(message, str(info.value)), str(info.value)
        assert "\n" not in str(info.value)


def test_hooked_and_unsupported_models_are_refused():
    model = build_model(tiny_spec(), seed=0)
    model.add_hook("blocks.0.attn.hook_z", lambda z, hook: z)
    with pytest.raises(AblationError, match="hooks attached.*reset_hooks"):
        ablate(model, _tokens(2))
    model.reset_hooks()
    ablate(model, _tokens(2), heads=[(0, 0)])  # fine once the hooks are gone
    cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=8,
                                  d_vocab=10, attn_only=True, positional_embedding_type="rotary",
                                  rotary_dim=8)
    with quiet_deprecation():
        rotary = HookedTransformer(cfg)
    with pytest.raises(AblationError, match="'rotary'"):
        ablate(rotary, torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises((AblationError, TypeCheckError), match="HookedTransformer"):
        ablate(torch.nn.Linear(2, 2), torch.zeros(1, 4, dtype=torch.long))


# ---------------------------------------------------------------------------- trained model
def _fraction_removed(result, early, late):
    clean_icl = float((result.clean[:, 1] - result.clean[:, 0]).mean())
    delta_icl = (result.delta[:, :, 1] - result.delta[:, :, 0]).mean(1)
    return clean_icl, (delta_icl / -clean_icl).tolist()


@pytest.mark.slow
def test_argument_3_induction_heads_carry_the_in_context_learning(trained_hub):
    """Paper, Argument 3: knocking out the induction heads of a small attention-only model
    removes most of its in-context learning; knocking out any other single head removes little.

    Heads are typed by prefix matching (:func:`induction_lens.analysis.heads.classify_heads`
    without the copying condition: see the note in the closing report). The briefly trained
    laptop 2L model forms several redundant induction heads, so they are ablated together
    (pattern-preserving, the paper's kind); each other head is ablated alone.
    """
    from induction_lens.analysis.heads import classify_heads
    from induction_lens.data import evaluator_token_pool
    from induction_lens.measures.heads import head_scores

    run = "attn-only-2l"
    model = trained_hub.load_model(run)
    pool = evaluator_token_pool(trained_hub.token_frequencies(run), model.cfg.d_vocab)
    types = classify_heads(head_scores(model, token_pool=pool,
                                       dataset_tokens=trained_hub.corpus(run).eval_tokens(10)),
                           copying_threshold=None)
    induction = [(int(r.layer), int(r.head)) for r in types.itertuples()
                 if r.head_type == "induction"]
    others = [(int(r.layer), int(r.head)) for r in types.itertuples()
              if r.head_type != "induction"]
    assert induction and all(layer == 1 for layer, _ in induction)

    tokens = trained_hub.corpus(run).eval_tokens(256)
    early, late = icl_indices(model.cfg.n_ctx)
    icl = torch.tensor([early, late])
    joint = ablate(model, tokens, "pattern", induction, jointly=True, indices=icl)
    clean_icl, (removed,) = _fraction_removed(joint, early, late)
    single = ablate(model, tokens, "pattern", others, indices=icl)
    _, removed_others = _fraction_removed(single, early, late)
    assert clean_icl < -1.0  # the model does learn in context
    assert removed > 0.8, f"induction heads {induction} remove only {removed:.1%}"
    assert max(abs(r) for r in removed_others) < 0.1, dict(zip(others, removed_others,
                                                               strict=True))


# ---------------------------------------------------------------------------- over a run
@pytest.fixture
def hub_copy(trained_hub, tmp_path) -> Hub:
    """A writable copy of the trained runs (the session hub is read-only)."""
    for run in trained_hub.runs():
        shutil.copytree(trained_hub.run_dir(run), tmp_path / run,
                        ignore=shutil.ignore_patterns(".lock", "evals"))
    return Hub(tmp_path)


@pytest.mark.slow
def test_ablate_run_detects_the_window_and_induction_heads_undo_the_phase_change(
        hub_copy, caplog, monkeypatch):
    """Paper, "Ablation attribution to phase change": with the before-and-after vector of the
    detected window, ablating an induction head projects negatively ("removing induction heads
    is like undoing the changes to model behavior that happened during the phase change").
    Without a window (none detected, or ``window=False``) the projection is left out."""
    settings = EvalSettings(n_examples=128)
    frame = RA.ablate_run(hub_copy, "attn-only-2l", "pattern", steps=[800], settings=settings,
                         progress=False)
    start, end = frame.attrs["window"]
    assert 0 < start < end < 800  # the ICL score jumps inside the run, not at its start
    proj = frame[frame.metric == "before_after_projection"]
    induction = proj[proj["layer"] == 1].value  # every layer-1 head is an induction head here
    assert (induction < 0).all()
    assert induction.mean() < proj[proj["layer"] == 0].value.mean()

    no_window = RA.ablate_run(hub_copy, "attn-only-1l", "pattern", steps=[400], window=False,
                             settings=EvalSettings(n_examples=32), progress=False)
    assert no_window.attrs["window"] is None
    assert not no_window.metric.str.endswith("before_after_projection").any()
    monkeypatch.setattr(RA, "detect_phase_change", lambda frame, **kwargs: None)
    undetected = RA.ablate_run(hub_copy, "attn-only-1l", "pattern", steps=[400], force=True,
                              settings=EvalSettings(n_examples=32), progress=False)
    assert not undetected.metric.str.endswith("before_after_projection").any()
    assert "no phase change" in caplog.text


@pytest.mark.slow
def test_ablate_run_writes_the_tidy_parquet_and_reuses_it(hub_copy, monkeypatch, capsys):
    run = "attn-only-2l"
    settings = EvalSettings(n_examples=48)
    frame = RA.ablate_run(hub_copy, run, "pattern", every=8, window=(380, 820),
                         settings=settings, context_fraction=1 / 3, progress=False)
    path = RA.ablation_path(hub_copy, run, "pattern")
    assert path.exists() and path.parent.name == "evals"
    assert list(frame.columns[:9]) == ["run", "step", "train_tokens", "layer", "head",
                                       "metric", "value", "position", "example"]
    assert sorted(frame.step.unique()) == [0, 400, 800]
    assert frame.attrs["window"] == [400, 800]  # snapped to checkpoints
    on_disk = pd.read_parquet(path)
    pd.testing.assert_frame_equal(on_disk, frame)
    proj = frame[frame.metric == "before_after_projection"]
    assert len(proj) == 3 * 8 and proj.value.notna().all()
    tokens = dict(zip(frame.step, frame.train_tokens, strict=False))
    assert tokens[800] == 800 * 32 * 128

    def boom(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(RA, "ablation_metrics", boom)
    cached = RA.ablate_run(hub_copy, run, "pattern", every=8, window=(380, 820),
                          settings=settings, context_fraction=1 / 3, progress=False)
    pd.testing.assert_frame_equal(cached, frame)
    with pytest.raises(AssertionError, match="recomputed"):  # other parameters: recomputed
        RA.ablate_run(hub_copy, run, "pattern", every=8, window=(380, 820),
                     settings=EvalSettings(n_examples=40), context_fraction=1 / 3,
                     progress=False)
    monkeypatch.undo()

    parser = argparse.ArgumentParser()
    cli_ablate.add_parser(parser.add_subparsers())
    args = parser.parse_args(["ablate", run, "--hub", str(hub_copy.root), "--kind", "full",
                              "--every", "16", "--window", "0", "800", "--examples", "16",
                              "--context-fraction", "0", "-q"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "ablation_full.parquet" in out and "icl_score_delta" in out
    assert RA.ablation_path(hub_copy, run, "full").exists()


@pytest.mark.slow
def test_head_types_colour_the_reports(trained_hub):
    from induction_lens.analysis.heads import HEAD_TYPES

    types = RA.head_types(trained_hub, "attn-only-2l")
    assert len(types) == 8 and set(types.head_type) <= set(HEAD_TYPES)
    model = trained_hub.load_model("attn-only-2l")
    frame = ablation_metrics(model, trained_hub.corpus("attn-only-2l").eval_tokens(8),
                             context_fraction=0.0)
    coloured = RA.with_head_types(frame, types)
    assert len(coloured) == len(frame)
    per_head = coloured[coloured["layer"].notna()]
    assert per_head.head_type.notna().all()
    assert coloured[coloured["layer"].isna()].head_type.isna().all()
    expected = dict(zip(zip(types["layer"], types["head"], strict=True), types.head_type,
                        strict=True))
    assert all(expected[(r.layer, r.head)] == r.head_type for r in per_head.itertuples())


def test_ablate_run_rejects_bad_arguments(trained_hub):
    with pytest.raises(AblationError, match="every=0"):
        RA.ablate_run(trained_hub, "attn-only-2l", every=0)
    with pytest.raises(AblationError, match="no checkpoint at steps \\[7\\]"):
        RA.ablate_run(trained_hub, "attn-only-2l", steps=[7])
    with pytest.raises(AblationError, match="start must come before its end"):
        RA.ablate_run(trained_hub, "attn-only-2l", window=(800, 400))
    with pytest.raises((AblationError, TypeCheckError), match="mean"):
        RA.ablate_run(trained_hub, "attn-only-2l", kind="mean")


@pytest.mark.slow
def test_ablation_metric_without_cache_writes_nothing(trained_hub):
    """``cache=False`` reaches the window detection too: a hub you must not write into stays
    untouched, and the detected window still gives the projection."""
    from induction_lens.runs import evaluate_run

    frame = evaluate_run(trained_hub, "attn-only-2l", metrics="ablation_pattern", steps=[800],
                         settings=EvalSettings(n_examples=32, context_fraction=0.0),
                         cache=False, progress=False)
    assert (frame.metric == "before_after_projection").sum() == 8
    assert not (trained_hub.run_dir("attn-only-2l") / "evals").exists()
