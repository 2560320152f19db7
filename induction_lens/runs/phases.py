"""Phase-change windows of stored runs: evaluate what a signal needs, then detect.

Level: ``runs`` (imports ``analysis.phases`` and ``runs.evaluate``).
"""

from induction_lens.analysis.phases import (
    SIGNALS,
    PhaseWindow,
    SignalParams,
    detect_phase_change,
)
from induction_lens.errors import EvalError
from induction_lens.runs.evaluate import evaluate_run

__all__ = ["detect_phase_window"]


def detect_phase_window(hub, run: str, *, signal: str = "icl_score", every: int = 1,
                        settings=None, cache: bool = True, progress: bool = False,
                        params: SignalParams | None = None) -> PhaseWindow | None:
    """Evaluate a stored run (only what ``signal`` needs) and detect its phase-change window.

    A convenience over :func:`~induction_lens.runs.evaluate.evaluate_run` and
    :func:`detect_phase_change`; with ``cache`` the evaluation is read from / written to
    ``RUN/evals`` (pass ``cache=False`` for a hub you must not write into).

    Args:
        hub: a :class:`~induction_lens.hub.Hub` or its directory.
        run: the run's name.
        signal: "icl_score" (default, the paper's defining measurement), "prefix_matching",
            "loss" or "llc".
        every: evaluate every ``every``-th checkpoint.
        settings: :class:`~induction_lens.runs.evaluate.EvalSettings` (default: laptop sizes).
        cache, progress: see :func:`~induction_lens.runs.evaluate.evaluate_run`.
        params: detection thresholds (default :data:`SIGNAL_PARAMS` of ``signal``).
    """
    if signal not in SIGNALS:
        raise EvalError(f"unknown signal {signal!r}; choose from {list(SIGNALS)}")
    metric = {"prefix_matching": "prefix_matching", "llc": "llc"}.get(signal, "losses")
    frame = evaluate_run(hub, run, metrics=[metric], every=every, settings=settings,
                         cache=cache, progress=progress)
    return detect_phase_change(frame, signal=signal, run=run, params=params)
