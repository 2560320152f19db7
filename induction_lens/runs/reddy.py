"""Reddy 2023 runs over training: the registered ``reddy`` and ``reddy_ablation_*`` metrics.

Level: ``runs``. The measurements themselves are :mod:`induction_lens.measures.reddy`: IC, IC2,
IW and training-distribution accuracy and loss, and the progress measures ILA1, TILA2, TLA2,
CLA (our reading of the paper's definitions, documented there); and each head's ablation read
through the classifier on the IC test set (:func:`~induction_lens.measures.reddy.
head_ablation`, the language models' ablation engine). Every checkpoint of a run is measured
on the same test sequences (the task's own seeded test sets).
"""

import pandas as pd
from transformer_lens import HookedTransformer

from induction_lens.data.reddy import eval_set, make_world
from induction_lens.errors import EvalError
from induction_lens.measures.ablations import AblationKind, check_kind
from induction_lens.measures.reddy import TEST_SETS, evaluate_reddy, head_ablation
from induction_lens.runs.context import EvalContext

__all__ = ["REDDY_ABLATION_ROWS", "REDDY_ROWS", "reddy_ablation_metric", "reddy_metric"]

REDDY_ROWS: tuple[str, ...] = (*(f"{s}_{m}" for s in TEST_SETS for m in ("accuracy", "loss")),
                               "ila1", "tila2", "tla2", "cla")
"""The ``metric`` values the ``reddy`` metric writes (model-level rows)."""


REDDY_ABLATION_ROWS: tuple[str, ...] = ("ic_ablated_accuracy", "ic_ablated_loss",
                                        "ic_clean_accuracy", "ic_clean_loss")
"""The ``metric`` values the ``reddy_ablation_{pattern,full}`` metrics write (per head the
first two, model level the others); the kind is the ``kind`` column."""


def _check_reddy(ctx: EvalContext, name: str) -> None:
    if ctx.config is None or not ctx.config.is_reddy:
        raise EvalError(f"the {name} metric measures stored Reddy 2023 runs; evaluate one with "
                        "evaluate_run(hub, run) (its task spec is read from the run)")


def reddy_metric(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
    """Accuracies, losses and progress measures of one checkpoint of a Reddy 2023 run, on
    ``settings.n_examples`` sequences of each test set."""
    _check_reddy(ctx, "reddy")
    values = evaluate_reddy(model, ctx.config.data, n_sequences=ctx.settings.n_examples)
    return pd.DataFrame({"metric": list(values), "value": [float(v) for v in values.values()]})


def reddy_ablation_metric(kind: AblationKind):
    """The registered metric ``reddy_ablation_{kind}``: every head of one checkpoint ablated
    (``kind`` "pattern": pattern-preserving; "full") on ``settings.n_examples`` sequences of
    the IC test set, IC accuracy and loss read through the classifier
    (:func:`~induction_lens.measures.reddy.head_ablation`; rows :data:`REDDY_ABLATION_ROWS`)."""
    kind = check_kind(kind)

    def fn(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
        _check_reddy(ctx, f"reddy_ablation_{kind}")
        task = ctx.config.data
        frame = head_ablation(model, eval_set(task, make_world(task), "ic",
                                              ctx.settings.n_examples), kind=kind)
        frame["metric"] = "ic_" + frame["metric"]
        return frame

    fn.__name__ = f"reddy_ablation_{kind}_metric"
    fn.__doc__ = (f"Each head's {kind} ablation of a Reddy 2023 checkpoint: IC accuracy and "
                  "loss through the classifier.")
    return fn
