"""Phase-change windows: where in training the ICL score, the prefix-matching score, the local
learning coefficient and the loss curve change abruptly, and whether those windows co-occur.

The paper (Argument 1, "Looking at the Phase Change More Closely") observes that in one
narrow window of training "capacity for in-context learning sharply improves", "induction
heads form" and the "loss undergoes a small 'bump' (that is, the loss curve undergoes a period
of visibly steeper improvement than the parts of the curve before and after)", and that
one-layer models have no such window. It marks the window by eye; this module makes it a
documented measurement, with two detectors, each matched to what the paper says of its signal.

**Level changes** (ICL score, prefix matching, LLC): :mod:`induction_lens.analysis.changepoint`.
"Before this window there is less than 0.15 nats of in-context learning ... and then is
constant for the rest of training": the curve sits on a plateau, changes abruptly in a short
window, and the change is large against the run's own checkpoint-to-checkpoint noise. The
detector (:func:`~induction_lens.analysis.changepoint.detect_change`) fits a continuous
piecewise-linear curve, takes its steepest stretches as candidates and accepts one when it is
large (``min_ratio`` times the noise and ``min_change`` signal units), short (``max_width`` of
the run) and preceded by a plateau (the tenth of the run before it moves by at most a quarter
of the change). The descent of every model from random initialisation has no plateau before
it, so it is never a phase change. Its defaults were fixed on synthetic curves with known
truth before any run was looked at (``tests/test_changepoint.py``).

**The loss bump** (:func:`fit_window`). A loss curve has no plateau before its bump: the bump
is "a period of visibly steeper improvement than the parts of the curve before and after", in
the paper's plot of loss against ln(tokens), where an ordinary learning curve is convex. The
curve is fitted by least squares with a linear trend plus a logistic step::

    y(x) ~ a + c x + b expit((x - t0) / w)

over a grid of step centres ``t0`` (four per checkpoint interval) and widths ``w`` (32 values,
log-spaced from a twentieth of the smallest checkpoint spacing, a step between two checkpoints,
to half the run); at each grid point the linear parameters ``a, c, b`` are solved exactly. The
trend absorbs the steady descent; the step is the bump. Only steps going in the expected
direction (``DetectionParams.direction``: the sign of ``b``) are admissible, and among them the
one with the least squared error wins.

Its **window** is the pair of checkpoints bracketing the step's 10%-90% rise: the last
checkpoint at or before ``t0 - ln(9) w`` and the first at or after ``t0 + ln(9) w``; each side
keeps at least ``min_outside`` checkpoints, the window's end checkpoint included. The fit is a
bump only if all of these hold (:class:`DetectionParams`):

* **size**: the fitted change across the window (trend included, times ``direction``) is at
  least ``min_change`` (signal units);
* **significance**: the change is at least ``min_snr`` times the residual noise of the fit
  (root mean square residual with ``n - 5`` degrees of freedom: ``a, c, b, t0, w``);
* **concentration**: the change is at least ``min_concentration`` of the fitted curve's whole
  range (0 for the loss: the paper's bump is small next to the total loss decrease);
* **narrowness**: the window spans at most ``max_width`` of the run's x range;
* **abruptness**: the slope during the window is at least ``min_abruptness`` times the steepest
  slope before or after it, the outer slopes being least-squares lines through the *observed*
  checkpoints of each side, window ends included. This rejects the fast start of every run,
  which has no flatter part before it.

Both detectors' windows end on checkpoints that exist in the hub (the ablations load the
snapshots at ``start_step`` and ``end_step``). The thresholds are this package's; the paper
gives none (:data:`SIGNAL_PARAMS`).

Signals (:func:`signal_curve`): the ICL score and the highest prefix-matching score over all
heads against elapsed tokens (linear, as the paper plots them), the local learning coefficient
(``llc``, model level, against tokens; optional: computed only when the ``llc`` metric was
evaluated), and the loss (the mean loss of the evaluation set's tokens) against ln(tokens).
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import numpy as np
import pandas as pd

from induction_lens.analysis.changepoint import MIN_POINTS, ChangeParams, detect_change
from induction_lens.errors import EvalError

__all__ = [
    "SIGNALS",
    "SIGNAL_PARAMS",
    "ChangeParams",
    "DetectionParams",
    "SignalParams",
    "PhaseWindow",
    "Signal",
    "WindowFit",
    "co_occurrence",
    "co_occurrence_table",
    "detect_phase_change",
    "detect_window",
    "fit_window",
    "phase_changes",
    "signal_curve",
]

Signal = Literal["icl_score", "prefix_matching", "loss", "llc"]
SIGNALS: tuple[str, ...] = get_args(Signal)


@dataclass(frozen=True)
class DetectionParams:
    """Thresholds of :func:`fit_window` (see the module docstring for their meaning)."""

    direction: Literal[-1, 1]
    """-1 when the signal falls during a phase change (ICL score, loss), +1 when it rises."""
    log_x: bool = False
    """Fit against ln(tokens) instead of tokens (checkpoints with 0 tokens are dropped)."""
    min_change: float = 0.0
    """Smallest fitted change across the window, in signal units."""
    min_snr: float = 3.0
    """Smallest change / residual noise."""
    min_concentration: float = 0.5
    """Smallest share of the fitted curve's range that falls inside the window."""
    max_width: float = 0.35
    """Largest window width as a share of the x range."""
    min_abruptness: float = 3.0
    """Smallest ratio of the window's slope to the steepest outer slope."""
    min_outside: int = 2
    """Checkpoints each side of the window keeps, the window's end checkpoint included."""

    def __post_init__(self) -> None:
        if self.direction not in (-1, 1):
            raise EvalError(f"DetectionParams.direction={self.direction!r} must be -1 or 1")
        if self.min_outside < 2:
            raise EvalError(f"DetectionParams.min_outside={self.min_outside} must be >= 2")
        if not 0 < self.max_width <= 1:
            raise EvalError(f"DetectionParams.max_width={self.max_width} must be in (0, 1]")
        for name in ("min_change", "min_snr", "min_concentration", "min_abruptness"):
            if getattr(self, name) < 0:
                raise EvalError(f"DetectionParams.{name}={getattr(self, name)} must be >= 0")


SignalParams = ChangeParams | DetectionParams
"""Thresholds of one signal: a :class:`~induction_lens.analysis.changepoint.ChangeParams` for a
level change, a :class:`DetectionParams` for a bump (:func:`fit_window`)."""

SIGNAL_PARAMS: dict[str, SignalParams] = {
    # Nats. The paper's jump is ~0.25-0.3 nats (from < 0.15 to ~0.4, Argument 1); 0.1 keeps a
    # change that is large only against a very quiet run's noise out.
    "icl_score": ChangeParams(direction=-1, min_change=0.1),
    # Fraction of attention; uniform attention scores ~0.03 on the paper's input.
    "prefix_matching": ChangeParams(direction=1, min_change=0.1),
    # The bump: steeper than both sides in loss vs ln(tokens); no concentration requirement.
    "loss": DetectionParams(direction=-1, log_x=True, min_concentration=0.0,
                            min_abruptness=2.0),
    # The local learning coefficient (the ``llc`` metric) rises as structure forms (Hoogland
    # et al. 2024); its scale depends on the sampler settings, so no size threshold in its
    # units: the change must stand out from the sampling noise.
    "llc": ChangeParams(direction=1),
}
"""Default thresholds per signal (override with ``params=`` or ``dataclasses.replace``)."""


@dataclass(frozen=True)
class WindowFit:
    """The best step-plus-trend fit of a curve and the criteria it was judged by."""

    start: int
    """Index of the window's first checkpoint (last one at or before the step's 10% point)."""
    end: int
    """Index of the window's last checkpoint (first one at or after the step's 90% point)."""
    fitted: np.ndarray = field(repr=False)
    """The fitted curve ``a + c x + b expit((x - t0) / w)`` at every checkpoint."""
    change: float
    """Fitted value at ``end`` minus fitted value at ``start`` (signed)."""
    slopes: tuple[float, float, float]
    """Slopes before, during and after the window (per unit of x): least-squares lines through
    the observed checkpoints of each side (window ends included), and the fitted change over
    the window's width."""
    noise: float
    """Root-mean-square residual of the fit (``n - 5`` degrees of freedom)."""
    snr: float
    concentration: float
    width: float
    abruptness: float
    failed: tuple[str, ...]
    """Names of the criteria the fit fails; empty for a phase change."""

    @property
    def accepted(self) -> bool:
        return not self.failed


_EDGE = math.log(9.0)
"""A logistic step covers 10% to 90% of its height within ``t0 -/+ ln(9) w``."""


def _expit(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _window_indices(x: np.ndarray, t0: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checkpoints bracketing the 10%-90% rise of each step: last ``<=`` start, first ``>=`` end."""
    lo = np.searchsorted(x, t0 - _EDGE * w, side="right") - 1
    hi = np.searchsorted(x, t0 + _EDGE * w, side="left")
    return lo, hi


def _step_fits(x: np.ndarray, y: np.ndarray, min_outside: int, direction: int
               ) -> tuple[int, int, np.ndarray, float] | None:
    """Best least-squares fit of ``a + c x + b expit((x - t0) / w)`` over a grid of (t0, w).

    For each grid point the linear parameters (a, c, b) are solved exactly. Only steps going in
    ``direction`` whose window keeps ``min_outside`` checkpoints on each side are admissible.
    Returns ``(start, end, fitted, sse)`` of the best one, or None.
    """
    n = len(x)
    gaps = np.diff(x)
    # Centres: 4 per checkpoint interval over the admissible range; widths: log-spaced from
    # far below the checkpoint spacing (a step between two checkpoints) to the whole run.
    lo_x, hi_x = x[min_outside - 1], x[n - min_outside]
    centres = np.unique(np.concatenate([np.linspace(a, b, 5)[:-1] for a, b in zip(x[:-1], x[1:],
                                                                                  strict=True)]))
    centres = centres[(centres > lo_x) & (centres < hi_x)]
    best = None
    for w in np.geomspace(gaps.min() / 20, (x[-1] - x[0]) / 2, 32):
        start, end = _window_indices(x, centres, np.full_like(centres, w))
        ok = (start >= min_outside - 1) & (end <= n - min_outside) & (end > start)
        if not ok.any():
            continue
        t0, start, end = centres[ok], start[ok], end[ok]
        basis = np.empty((len(t0), n, 3))
        basis[:, :, 0] = 1.0
        basis[:, :, 1] = x
        basis[:, :, 2] = _expit((x[None, :] - t0[:, None]) / w)
        gram = np.einsum("pni,pnj->pij", basis, basis) + 1e-12 * np.eye(3)
        beta = np.linalg.solve(gram, np.einsum("pni,n->pi", basis, y)[..., None])[..., 0]
        fitted = np.einsum("pni,pi->pn", basis, beta)
        sse = ((y[None, :] - fitted) ** 2).sum(axis=1)
        sse[beta[:, 2] * direction <= 0] = np.inf
        k = int(np.argmin(sse))
        if np.isfinite(sse[k]) and (best is None or sse[k] < best[3]):
            best = (int(start[k]), int(end[k]), fitted[k], float(sse[k]))
    return best


def fit_window(x: np.ndarray, y: np.ndarray, params: DetectionParams) -> WindowFit | None:
    """Best linear-trend-plus-logistic-step fit of ``y(x)`` and its verdict (see the module
    docstring for the model, the window and the criteria).

    Args:
        x: checkpoint positions (tokens, or ln tokens), strictly increasing.
        y: the signal at each checkpoint (finite).
        params: thresholds and direction.

    Returns:
        The best fit among steps going in ``params.direction`` (``failed`` lists the criteria
        it misses), or None when there are too few checkpoints or no step goes that way.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise EvalError(f"x and y must be 1-d of one length, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise EvalError("the curve has non-finite values; drop them before detecting a window")
    if len(x) > 1 and not (np.diff(x) > 0).all():
        raise EvalError("x must be strictly increasing (one value per checkpoint, sorted)")
    n = len(x)
    if n < 2 * params.min_outside + 1:
        return None
    span = x[-1] - x[0]
    xs = (x - x[0]) / span  # numerically tame; slopes are rescaled below
    best = _step_fits(xs, y, params.min_outside, params.direction)
    if best is None:
        return None
    s, e, fitted, sse = best

    def observed_slope(i: int, j: int) -> float:  # least-squares line through y[i..j]
        return float(np.polyfit(x[i:j + 1], y[i:j + 1], 1)[0])

    # The outer slopes come from the data, not from the fit: a logistic step cannot follow a
    # fast start of training, and its flat tail would make that start look calm.
    slopes = (observed_slope(0, s), float((fitted[e] - fitted[s]) / (x[e] - x[s])),
              observed_slope(e, n - 1))
    change = float(fitted[e] - fitted[s])
    size = change * params.direction
    noise = math.sqrt(sse / max(n - 5, 1))
    snr = size / noise if noise > 0 else math.inf
    rng = float(fitted.max() - fitted.min())
    concentration = size / rng if rng > 0 else 0.0
    width = float((x[e] - x[s]) / span)
    outer = max(abs(slopes[0]), abs(slopes[2]))
    abruptness = abs(slopes[1]) / outer if outer > 0 else math.inf
    failed = []
    if size < params.min_change:
        failed.append("size")
    if snr < params.min_snr:
        failed.append("significance")
    if concentration < params.min_concentration:
        failed.append("concentration")
    if width > params.max_width:
        failed.append("narrowness")
    if abruptness < params.min_abruptness:
        failed.append("abruptness")
    return WindowFit(start=s, end=e, fitted=fitted, change=change, slopes=slopes, noise=noise,
                     snr=float(snr), concentration=float(concentration), width=width,
                     abruptness=float(abruptness), failed=tuple(failed))


def detect_window(x: np.ndarray, y: np.ndarray, params: DetectionParams) -> WindowFit | None:
    """The accepted fit of :func:`fit_window`, or None when the curve has no phase change."""
    fit = fit_window(x, y, params)
    return fit if fit is not None and fit.accepted else None


@dataclass(frozen=True)
class PhaseWindow:
    """A detected phase-change window of one signal of one run.

    ``start_step``/``end_step`` are checkpoints of the run: the "phase change start" and "end"
    snapshots of the appendix's before-and-after vector.
    """

    signal: str
    """Which curve: "icl_score", "prefix_matching", "loss" or "llc"."""
    start_step: int
    end_step: int
    start_tokens: int
    end_tokens: int
    mid_step: float
    """The time of the jump, used for lags: the midpoint ``t0`` of the logistic step fitted
    around a level change; for a bump, where the observed curve first crosses halfway between
    its fitted values at the window's ends (linear interpolation between checkpoints)."""
    mid_tokens: float
    start_value: float
    """Fitted signal value at ``start_step``."""
    end_value: float
    """Fitted signal value at ``end_step``."""
    change: float
    """``end_value - start_value``."""
    snr: float
    """The change over the noise: the run's step-to-step noise for a level change, the fit's
    residual noise for a bump."""
    concentration: float | None = None
    """Bump only: share of the fitted curve's range inside the window."""
    abruptness: float | None = None
    """Bump only: the window's slope over the steepest outer slope."""
    drift: float | None = None
    """Level change only: the fitted change over the plateau stretch before the window."""
    method: str = "changepoint"
    """"changepoint" (a level change, :mod:`~induction_lens.analysis.changepoint`) or "bump"
    (:func:`fit_window`)."""
    run: str | None = None

    @property
    def start(self) -> int:
        """``start_step``, for code that treats a window as ``(start, end)`` steps."""
        return self.start_step

    @property
    def end(self) -> int:
        """``end_step``, for code that treats a window as ``(start, end)`` steps."""
        return self.end_step

    def to_dict(self) -> dict:
        return asdict(self)


def signal_curve(frame: pd.DataFrame, signal: str, *, run: str | None = None) -> pd.DataFrame:
    """One run's curve of ``signal``: columns ``step, tokens, value`` sorted by step.

    ``prefix_matching`` is reduced to the highest score over all heads at each checkpoint (the
    paper's plot shows every head; the earliest strong head marks when induction heads form).
    ``loss`` is the mean of the context-index average when the frame has it (the mean loss of
    every token of the evaluation set), else the ``loss`` rows (the paper's mean of the
    random-token-per-example vector). Both estimate the same expected loss; on our evaluation
    sets of hundreds rather than 10,000 examples, one token per example leaves wiggles of a
    few hundredths of a nat that can fake a bump, and every token does not.
    """
    if signal not in SIGNALS:
        raise EvalError(f"unknown signal {signal!r}; choose from {list(SIGNALS)}")
    if "run" in frame.columns:
        runs = frame["run"].dropna().unique().tolist()
        if run is None:
            if len(runs) > 1:
                raise EvalError(f"the frame holds runs {runs}; pass run= to pick one")
        else:
            if run not in runs:
                raise EvalError(f"run {run!r} is not in the frame (runs: {runs})")
            frame = frame[frame["run"] == run]
    rows = frame[frame["metric"] == signal]
    if signal == "loss" and (frame["metric"] == "loss_by_position").any():
        rows = frame[frame["metric"] == "loss_by_position"]
        return (rows.groupby(["step", "train_tokens"], as_index=False)["value"].mean()
                .sort_values("step").reset_index(drop=True))
    if rows.empty:
        needs = {"icl_score": "losses", "loss": "losses", "llc": "llc"}.get(signal,
                                                                           "prefix_matching")
        raise EvalError(f"the frame has no '{signal}' rows; evaluate the run with the "
                        f"'{needs}' metric")
    curve = rows.groupby(["step", "train_tokens"], as_index=False)["value"].max()
    return curve.sort_values("step").reset_index(drop=True)


def _crossing(x: np.ndarray, y: np.ndarray, start: int, end: int, target: float) -> float:
    for i in range(start, end):
        a, b = y[i] - target, y[i + 1] - target
        if a == 0:
            return float(x[i])
        if a * b < 0:
            return float(x[i] + (x[i + 1] - x[i]) * a / (a - b))
    return float((x[start] + x[end]) / 2)


def detect_phase_change(frame: pd.DataFrame, *, signal: str = "icl_score",
                        run: str | None = None, params: SignalParams | None = None
                        ) -> PhaseWindow | None:
    """The phase-change window of one signal of one run, or None if it has none.

    A curve with fewer than :data:`~induction_lens.analysis.changepoint.MIN_POINTS`
    checkpoints has no detectable level change (None).

    Args:
        frame: a tidy sweep frame (:func:`~induction_lens.runs.evaluate.evaluate_run`).
        signal: "icl_score" (the paper's defining measurement), "prefix_matching", "loss" or
            "llc".
        run: which run, when the frame holds several.
        params: thresholds (default :data:`SIGNAL_PARAMS` of ``signal``): a
            :class:`~induction_lens.analysis.changepoint.ChangeParams` detects a level change,
            a :class:`DetectionParams` a bump.
    """
    params = params if params is not None else SIGNAL_PARAMS[signal]
    if not isinstance(params, ChangeParams | DetectionParams):
        raise EvalError(f"params={params!r} must be a ChangeParams (level change) or "
                        "DetectionParams (bump); see SIGNAL_PARAMS for the defaults")
    curve = signal_curve(frame, signal, run=run)
    log_x = isinstance(params, DetectionParams) and params.log_x
    if log_x:
        curve = curve[curve["train_tokens"] > 0].reset_index(drop=True)
    tokens = curve["train_tokens"].to_numpy(dtype=np.float64)
    steps = curve["step"].to_numpy(dtype=np.float64)
    x = np.log(tokens) if log_x else tokens
    y = curve["value"].to_numpy(dtype=np.float64)
    run_name = run
    if run_name is None and "run" in frame.columns and frame["run"].notna().any():
        run_name = str(frame["run"].dropna().iloc[0])
    if isinstance(params, ChangeParams):
        if len(x) < MIN_POINTS:
            return None
        found = detect_change(x, y, params=params)
        if found is None:
            return None
        s, e = found.start_index, found.end_index
        return PhaseWindow(signal=signal, start_step=int(steps[s]), end_step=int(steps[e]),
                           start_tokens=int(tokens[s]), end_tokens=int(tokens[e]),
                           mid_step=float(np.interp(found.mid, x, steps)),
                           mid_tokens=float(found.mid), start_value=found.start_value,
                           end_value=found.end_value, change=found.change, snr=found.ratio,
                           drift=found.drift, method="changepoint", run=run_name)
    fit = detect_window(x, y, params)
    if fit is None:
        return None
    s, e = fit.start, fit.end
    half = (fit.fitted[s] + fit.fitted[e]) / 2
    mid_x = _crossing(x, y, s, e, half)
    # Map the crossing back to steps and tokens through the checkpoint interval it lies in.
    i = int(np.clip(np.searchsorted(x, mid_x, side="right") - 1, s, max(s, e - 1)))
    frac = 0.0 if x[i + 1] == x[i] else (mid_x - x[i]) / (x[i + 1] - x[i])
    mid_step = steps[i] + frac * (steps[i + 1] - steps[i])
    mid_tokens = tokens[i] + frac * (tokens[i + 1] - tokens[i])
    return PhaseWindow(signal=signal, start_step=int(steps[s]), end_step=int(steps[e]),
                       start_tokens=int(tokens[s]), end_tokens=int(tokens[e]),
                       mid_step=float(mid_step), mid_tokens=float(mid_tokens),
                       start_value=float(fit.fitted[s]), end_value=float(fit.fitted[e]),
                       change=fit.change, snr=fit.snr, concentration=fit.concentration,
                       abruptness=fit.abruptness, method="bump", run=run_name)


def _runs(frame: pd.DataFrame) -> list[str | None]:
    if "run" in frame.columns and frame["run"].notna().any():
        return sorted(str(r) for r in frame["run"].dropna().unique())
    return [None]


def phase_changes(frame: pd.DataFrame, *, signals: tuple[str, ...] | list[str] = SIGNALS,
                  params: dict[str, SignalParams] | None = None) -> pd.DataFrame:
    """Detected windows of every run and signal in ``frame``, one row each.

    Returns:
        Columns ``run, signal, detected`` and the :class:`PhaseWindow` fields (null where no
        window was detected). Signals whose metric is absent from the frame are skipped.
    """
    params = {**SIGNAL_PARAMS, **(params or {})}
    present = set(frame["metric"].unique()) if "metric" in frame.columns else set()
    rows = []
    for run in _runs(frame):
        for signal in signals:
            if signal not in present:
                continue
            window = detect_phase_change(frame, signal=signal, run=run, params=params[signal])
            row = {"run": run, "signal": signal, "detected": window is not None}
            if window is not None:
                row.update({k: v for k, v in window.to_dict().items() if k not in ("run",
                                                                                    "signal")})
            rows.append(row)
    columns = ["run", "signal", "detected"] + [f for f in PhaseWindow.__dataclass_fields__
                                               if f not in ("run", "signal")]
    return pd.DataFrame(rows, columns=columns)


def co_occurrence(a: PhaseWindow | None, b: PhaseWindow | None) -> dict[str, float | bool | None]:
    """How two windows line up (the paper's "all co-occur during the same abrupt window").

    Returns:
        ``both`` (both detected), ``overlap_steps``/``overlap_tokens`` (length of the
        intersection, 0 when disjoint), ``overlap_fraction`` (intersection over union, in
        tokens), ``lag_steps``/``lag_tokens`` (``b.mid - a.mid``: positive when ``b`` jumps
        after ``a``) and ``a_mid_in_b``/``b_mid_in_a``. Everything is None when a window is
        missing. For the paper's question pass the ICL window as ``a`` and the
        prefix-matching window as ``b``.
    """
    keys = ("overlap_steps", "overlap_tokens", "overlap_fraction", "lag_steps", "lag_tokens",
            "a_mid_in_b", "b_mid_in_a")
    if a is None or b is None:
        return {"both": False, **dict.fromkeys(keys)}
    overlap_steps = max(0, min(a.end_step, b.end_step) - max(a.start_step, b.start_step))
    overlap_tokens = max(0, min(a.end_tokens, b.end_tokens) - max(a.start_tokens, b.start_tokens))
    union = max(a.end_tokens, b.end_tokens) - min(a.start_tokens, b.start_tokens)
    return {
        "both": True,
        "overlap_steps": overlap_steps,
        "overlap_tokens": overlap_tokens,
        "overlap_fraction": overlap_tokens / union if union > 0 else 1.0,
        "lag_steps": b.mid_step - a.mid_step,
        "lag_tokens": b.mid_tokens - a.mid_tokens,
        "a_mid_in_b": b.start_tokens <= a.mid_tokens <= b.end_tokens,
        "b_mid_in_a": a.start_tokens <= b.mid_tokens <= a.end_tokens,
    }


def co_occurrence_table(frame: pd.DataFrame, *, reference: str = "icl_score",
                        others: tuple[str, ...] = ("prefix_matching", "loss"),
                        params: dict[str, SignalParams] | None = None) -> pd.DataFrame:
    """Per run, how each of ``others`` lines up with the ``reference`` window
    (:func:`co_occurrence`); one row per run and other signal."""
    params = {**SIGNAL_PARAMS, **(params or {})}
    present = set(frame["metric"].unique())
    rows = []
    for run in _runs(frame):
        ref = (detect_phase_change(frame, signal=reference, run=run, params=params[reference])
               if reference in present else None)
        for other in others:
            if other not in present:
                continue
            win = detect_phase_change(frame, signal=other, run=run, params=params[other])
            rows.append({"run": run, "reference": reference, "signal": other,
                         **co_occurrence(ref, win)})
    return pd.DataFrame(rows)

