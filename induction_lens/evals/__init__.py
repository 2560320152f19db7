"""Evaluators: one module per measurement family, each returning a tidy long-form DataFrame.

Schema shared by every evaluator (``ARCHITECTURE.md``): ``run, step, tokens, layer, head,
metric, value`` plus ``position`` (a context index) or ``example`` where a value belongs to
one; model-level metrics have null ``layer``/``head``.

* :mod:`~induction_lens.evals.losses`: per-token losses, ICL score, loss heatmaps, PCA.
* :mod:`~induction_lens.evals.heads`: prefix-matching, copying and previous-token scores.
* :mod:`~induction_lens.evals.phases`: phase-change windows and their co-occurrence.
* :mod:`~induction_lens.evals.circuits`: QK-eigenvalue trace, OV copying, composition scores.
* :mod:`~induction_lens.evals.sweep`: any of them over the checkpoints of runs, cached.

Importing this package registers every built-in metric with the sweep.
"""

from induction_lens.evals import circuits as _circuits  # noqa: F401  (registers its metrics)
