"""Reddy 2023 runs over training: the registered ``reddy`` metric.

Level: ``runs``. The measurements themselves are :mod:`induction_lens.measures.reddy`: IC, IC2,
IW and training-distribution accuracy and loss, and the progress measures ILA1, TILA2, TLA2,
CLA (our reading of the paper's definitions, documented there). Every checkpoint of a run is
measured on the same test sequences (the task's own seeded test sets).
"""

import pandas as pd
from transformer_lens import HookedTransformer

from induction_lens.errors import EvalError
from induction_lens.measures.reddy import TEST_SETS, evaluate_reddy
from induction_lens.runs.context import EvalContext

__all__ = ["REDDY_ROWS", "reddy_metric"]

REDDY_ROWS: tuple[str, ...] = (*(f"{s}_{m}" for s in TEST_SETS for m in ("accuracy", "loss")),
                               "ila1", "tila2", "tla2", "cla")
"""The ``metric`` values the ``reddy`` metric writes (model-level rows)."""


def reddy_metric(model: HookedTransformer, ctx: EvalContext) -> pd.DataFrame:
    """Accuracies, losses and progress measures of one checkpoint of a Reddy 2023 run, on
    ``settings.n_examples`` sequences of each test set."""
    if ctx.config is None or not ctx.config.is_reddy:
        raise EvalError("the reddy metric measures stored Reddy 2023 runs; evaluate one with "
                        "evaluate_run(hub, run) (its task spec is read from the run)")
    values = evaluate_reddy(model, ctx.config.data, n_sequences=ctx.settings.n_examples)
    return pd.DataFrame({"metric": list(values), "value": [float(v) for v in values.values()]})
