"""The built-in metrics, registered in this one place.

Level: ``runs``. :mod:`induction_lens.runs` calls :func:`register_builtin_metrics` once when it
is imported; nothing else registers as a side effect of an import.

===================  =========  ==================================================================
metric               default    rows
===================  =========  ==================================================================
``losses``           yes        ``loss``, ``icl_score`` (model level), ``loss_by_position``
                                (per ``position``), ``loss_per_example`` (per ``example``)
``prefix_matching``  yes        prefix-matching score per head
``copying``          yes        copying score per head
``previous_token``   yes        previous-token score per head
``qk_trace``         no         QK-eigenvalue trace (``qk_trace``; ``qk_smear_trace``)
``ov_copying``       no         ``ov_copying``, ``ov_positive_fraction`` per head
``composition``      no         ``q/k/v_composition`` per head pair, ``composition_baseline``
``ablation_pattern`` no         pattern-preserving ablation reports (``kind`` = "pattern")
``ablation_full``    no         full ablation reports (``kind`` = "full")
``llc``              no         local learning coefficient (``llc``, ``llc_std``,
                                ``llc_trace_drift``, ``llc_init_loss``; needs devinterp)
``llc_heads``        no         refined LLC of each head (``llc_head`` per head; needs devinterp)
``reddy``            yes [R]    Reddy 2023 runs only: ``{ic,ic2,iw,train}_{accuracy,loss}``,
                                ``ila1``, ``tila2``, ``tla2``, ``cla`` (model level)
``reddy_ablation_*`` no         Reddy 2023 runs only, ``*`` = ``pattern`` or ``full``: each
                                head ablated on the IC set, ``ic_ablated_{accuracy,loss}`` per
                                head, ``ic_clean_{accuracy,loss}`` (``kind`` column)
===================  =========  ==================================================================

[R]: the default for Reddy 2023 runs; the others are the defaults of language-model runs.
"""

import numpy as np
import pandas as pd
from transformer_lens import HookedTransformer

from induction_lens.frame import head_frame
from induction_lens.measures.circuits import PAIR_METRICS
from induction_lens.measures.llc import estimate_llc, head_llc_scores
from induction_lens.measures.losses import summarise_losses
from induction_lens.runs.ablations import ABLATION_SETTINGS, ablation_metric, ablation_run_key
from induction_lens.runs.circuits import (
    PREV_SETTINGS,
    composition_metric,
    ov_metric,
    qk_trace_metric,
)
from induction_lens.runs.context import EvalContext
from induction_lens.runs.reddy import REDDY_ROWS, reddy_ablation_metric, reddy_metric
from induction_lens.runs.registry import MetricFn, register_metric

__all__ = ["DEFAULT_METRICS", "register_builtin_metrics"]

DEFAULT_METRICS: tuple[str, ...] = ("losses", "prefix_matching", "copying", "previous_token")
"""The metrics :func:`~induction_lens.runs.evaluate_run` computes when none are named."""

HEAD_SETTINGS = ("batch_size", "head_examples", "head_seq_len", "head_repeats", "head_seed",
                 "exclude_fraction")
"""The settings the head activation evaluators read."""


def losses_metric(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
    """Per-token losses (appendix "(1) Per-token losses"): the loss curve value, the ICL score,
    the context-index average and the random-token-per-example vector."""
    s = ctx.settings
    summary = summarise_losses(model, ctx.eval_tokens, random_index=ctx.random_index,
                               indices=s.icl_indices, batch_size=s.batch_size,
                               logits_budget=s.logits_budget)
    by_pos = summary.by_position[1:].double().numpy()
    n = len(summary.per_example)
    return pd.concat([
        pd.DataFrame({"metric": ["loss", "icl_score"],
                      "value": [summary.loss, summary.icl_score]}),
        pd.DataFrame({"metric": "loss_by_position", "value": by_pos,
                      "position": np.arange(1, len(by_pos) + 1)}),
        pd.DataFrame({"metric": "loss_per_example",
                      "value": summary.per_example.double().numpy(),
                      "position": summary.random_index.numpy(), "example": np.arange(n)}),
    ], ignore_index=True)


def head_metric(name: str) -> MetricFn:
    """The metric function of head activation evaluator ``name`` (appendix "(3)")."""
    def fn(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
        if name == "previous_token":
            return head_frame({name: ctx.previous_token_scores(model)})
        return head_frame({name: ctx.repeated_scores(model)[name]})

    fn.__name__ = f"{name}_metric"
    fn.__doc__ = f"Head activation evaluator {name!r} (appendix (3))."
    return fn


LLC_SETTINGS = ("n_examples", "llc_sampler", "llc_lr", "llc_n_beta", "llc_localization",
                "llc_chains", "llc_draws", "llc_batch_size", "llc_examples", "llc_seed")
"""The settings the LLC metrics read (``n_examples``: the evaluation set they sample from)."""


def _llc_options(model: HookedTransformer, ctx: EvalContext) -> dict:
    """The sampling dataset and options of the LLC metrics: the first ``llc_examples`` of the
    evaluation set (fewer when ``n_examples`` is smaller, and then a batch of at most that)."""
    s = ctx.settings
    tokens = ctx.eval_tokens[:s.llc_examples]
    return {"tokens": tokens, "lr": s.llc_lr, "n_beta": s.llc_n_beta,
            "localization": s.llc_localization, "num_chains": s.llc_chains,
            "num_draws": s.llc_draws, "batch_size": min(s.llc_batch_size, len(tokens)),
            "seed": s.llc_seed, "sampler": s.llc_sampler}


def llc_metric(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
    """The local learning coefficient of the checkpoint
    (:func:`~induction_lens.measures.llc.estimate_llc`) with its spread over chains, the
    trace drift (the convergence check) and the loss it is measured from."""
    options = _llc_options(model, ctx)
    res = estimate_llc(model, options.pop("tokens"), **options)
    return pd.DataFrame({"metric": ["llc", "llc_std", "llc_trace_drift", "llc_init_loss"],
                         "value": [res.llc, res.llc_std, res.drift, res.init_loss]})


def llc_heads_metric(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
    """The refined LLC of every head: sampling restricted to that head's weights."""
    options = _llc_options(model, ctx)
    return head_frame({"llc_head": head_llc_scores(model, options.pop("tokens"), **options)})


def register_builtin_metrics() -> None:
    """Register every built-in metric (idempotent: re-registering the same function is a no-op)."""
    register_metric("losses", losses_metric, version="1",
                    settings=("n_examples", "index_seed", "icl_indices", "batch_size",
                              "logits_budget"),
                    description="loss, icl_score, loss_by_position, loss_per_example",
                    rows=("loss", "icl_score", "loss_by_position", "loss_per_example"))
    for name, extra in (("prefix_matching", ()), ("copying", ("copying_bos", "copying_reading")),
                        ("previous_token", ())):
        register_metric(name, _HEAD_FNS[name], version="1", settings=HEAD_SETTINGS + extra,
                        description=f"{name.replace('_', '-')} score per head")
    # The QK trace reads the previous-token examples: their number, and (for runs without a
    # corpus) the seed and token pool of the random stand-in.
    register_metric("qk_trace", qk_trace_metric, version="1", settings=PREV_SETTINGS,
                    default=False,
                    description="QK-eigenvalue trace of the previous-token K-composition term "
                                "(qk_trace; qk_smear_trace for smeared keys)",
                    rows=("qk_smear_trace",))
    register_metric("ov_copying", ov_metric, version="1", settings=(), default=False,
                    description="OV circuit eigenvalues: ov_copying, ov_positive_fraction",
                    rows=("ov_positive_fraction",))
    register_metric("composition", composition_metric, version="1", settings=(),
                    default=False,
                    description="q/k/v_composition per head pair (source_layer/source_head) "
                                "and composition_baseline",
                    rows=PAIR_METRICS + ("composition_baseline",))
    register_metric("reddy", reddy_metric, version="1", settings=("n_examples",), task="reddy",
                    rows=REDDY_ROWS,
                    description="Reddy 2023: ic/ic2/iw/train accuracy and loss, ila1, tila2, "
                                "tla2, cla")
    for kind in ("pattern", "full"):
        register_metric(f"reddy_ablation_{kind}", _REDDY_ABLATION_FNS[kind], version="1",
                        settings=("n_examples",), task="reddy", default=False,
                        description=f"Reddy 2023: {kind} ablation of each head on the IC set, "
                                    "ic_ablated_accuracy / ic_ablated_loss per head, "
                                    "ic_clean_accuracy / ic_clean_loss (kind column)")
        register_metric(f"ablation_{kind}", _ABLATION_FNS[kind], version="2",
                        settings=ABLATION_SETTINGS, default=False, run_key=ablation_run_key,
                        description=f"{kind} ablation of every head: icl_score_delta, "
                                    "before_after_projection, random_token_loss_delta, "
                                    "context_loss_delta, clean_* (kind column)")
    register_metric("llc", llc_metric, version="1", settings=LLC_SETTINGS, default=False,
                    description="local learning coefficient (devinterp SGLD): llc, llc_std, "
                                "llc_trace_drift, llc_init_loss",
                    rows=("llc", "llc_std", "llc_trace_drift", "llc_init_loss"))
    register_metric("llc_heads", llc_heads_metric, version="1", settings=LLC_SETTINGS,
                    default=False,
                    description="refined LLC of every head (sampling one head's weights): "
                                "llc_head per head", rows=("llc_head",))


_HEAD_FNS = {name: head_metric(name) for name in ("prefix_matching", "copying", "previous_token")}
_ABLATION_FNS = {kind: ablation_metric(kind) for kind in ("pattern", "full")}
_REDDY_ABLATION_FNS = {kind: reddy_ablation_metric(kind) for kind in ("pattern", "full")}
