"""Runs: everything that walks the checkpoints of stored runs.

Level: above ``measures`` and ``analysis`` (and ``hub``, ``train``), below ``viz`` and ``cli``.
It may import any lower level, never ``viz`` or ``cli``.

* :mod:`~induction_lens.runs.registry`: the metric registry (a leaf of this folder);
  :mod:`~induction_lens.runs.builtin` registers the built-in metrics, in one place, when this
  package is imported.
* :mod:`~induction_lens.runs.settings` / :mod:`~induction_lens.runs.context`: what metrics
  measure on, built once per run.
* :mod:`~induction_lens.runs.cache`: the one cache format, ``RUN/evals/{metric}.parquet``.
* :mod:`~induction_lens.runs.evaluate`: metrics over checkpoints (:func:`evaluate_run`).
* :mod:`~induction_lens.runs.ablations`, :mod:`~induction_lens.runs.circuits`,
  :mod:`~induction_lens.runs.phases`: ablations, circuit validation and phase windows of runs.
* :mod:`~induction_lens.runs.sweeps` / :mod:`~induction_lens.runs.executors`: grids of runs
  trained and evaluated in process or on Ray (:func:`sweep`).
* :mod:`~induction_lens.runs.demo`: the ``induction-lens demo`` workflow.
"""

from induction_lens.runs.ablations import ablate_run, ablation_path, head_types, with_head_types
from induction_lens.runs.builtin import DEFAULT_METRICS, register_builtin_metrics
from induction_lens.runs.cache import cache_path
from induction_lens.runs.circuits import validate_circuits
from induction_lens.runs.context import EvalContext
from induction_lens.runs.evaluate import evaluate_model, evaluate_run, evaluate_runs
from induction_lens.runs.phases import detect_phase_window
from induction_lens.runs.registry import METRICS, Metric, MetricFn, register_metric
from induction_lens.runs.settings import EvalSettings
from induction_lens.runs.sweeps import SweepGrid, sweep, sweep_cells

register_builtin_metrics()

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "EvalContext",
    "EvalSettings",
    "Metric",
    "SweepGrid",
    "MetricFn",
    "ablate_run",
    "ablation_path",
    "cache_path",
    "detect_phase_window",
    "evaluate_model",
    "evaluate_run",
    "evaluate_runs",
    "head_types",
    "register_metric",
    "sweep",
    "sweep_cells",
    "validate_circuits",
    "with_head_types",
]
