"""Phase changes as change points: abrupt, short, preceded by a plateau, large against the
run's own noise; and the pivot of a 2-D training trajectory.

**The definition** (fixed before looking at any run). The paper calls the phase change "an
abrupt change that alters the model's behavior" (Argument 1): in-context learning "develops
abruptly in a narrow window early in training ... and then is constant for the rest of
training", "before this window there is less than 0.15 nats of in-context learning", and "the
following things all co-occur during the same abrupt window". It marks the window by eye. Here
a curve ``y(x)`` sampled at checkpoints ``x`` (steps or tokens, possibly unevenly spaced) has
a phase change when its fitted curve makes a change that is

(a) **large**: the fitted change across its window is at least :attr:`ChangeParams.min_ratio`
    times the run's own step-to-step noise (:func:`step_noise`), and at least
    :attr:`ChangeParams.min_change` in signal units;
(b) **short**: its window spans at most :attr:`ChangeParams.max_width` of the run's x range
    ("a narrow window");
(c) **preceded by a plateau**: over the stretch of :attr:`ChangeParams.plateau` of the run just
    before the change starts (its first steep segment or its window, whichever is earlier), the
    fitted curve moves by at most :attr:`ChangeParams.max_drift` of the change ("before this
    window there is less than 0.15 nats"); a change too early for a whole stretch fails. The
    descent of every model from random initialisation, fast and then slowing, starts at the
    first checkpoint and has only steeper stretches before any part of it, so it is never a
    phase change.

"Several measures at once" is the caller's part: run the detector on each measure and compare
the windows (:func:`induction_lens.analysis.phases.co_occurrence`).

**The fit** (:func:`fit_spline`). A continuous piecewise-linear curve with knots at checkpoints
is fitted by least squares: knots are added greedily while each lowers the squared error by
more than a BIC-like penalty ``penalty * ln(n) * sigma0**2`` (``sigma0``:
:func:`neighbour_noise`, a pilot noise estimate), then each knot is moved to its best place given
the others until none moves, then knots that no longer pay their penalty are dropped. A
continuous fit follows a curve that is continuous in training time; knots at two adjacent
checkpoints make a step sharper than the checkpoint spacing. (The ``ruptures`` library was
considered: its segment costs are separable, so its fits jump at every change point, and its
continuous cost ``clinear`` assumes evenly spaced samples and passes through the noisy samples
at the segment ends.)

**The candidates** (:func:`change_candidates`). Each segment of the fit whose slope (in the
change's direction) is at least as steep as its neighbours is a peak; its change extends to the
neighbouring segments while they keep the same direction, at least
:attr:`ChangeParams.shoulder` of the peak slope, and no steeper than the peak. The **window**
is the 10%-90% rise ``t0 -/+ ln(9) w`` of the logistic step ``p + q expit((x - t0) / w)`` that
best fits the observed curve around that stretch (the 10%-90% convention of the loss-bump fit
in :mod:`induction_lens.analysis.phases`), its ends snapped to the nearest checkpoints; a step
sharper than the checkpoint spacing gets the interval holding its midpoint. Nearest, not
outward: the fitted edges are uncertain by a fraction of an interval either way, and snapping
outward would widen every window by up to one more. Accepted candidates whose windows overlap
keep only the steepest.

**The pivot** (:func:`detect_pivot`). The paper: "the training trajectories pivot during
exactly the same window where the other changes happen", in the plane of the first two
principal components of the per-token losses. The pivot is the checkpoint interval with the
largest displacement in that plane, accepted when it is at least :attr:`PivotParams.min_ratio`
times the median displacement of the other intervals.

The thresholds are this package's choices; the paper gives none. Each default's reason is in
its field's docstring.
"""

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from jaxtyping import Float

from induction_lens.errors import EvalError

__all__ = [
    "MIN_POINTS",
    "Change",
    "ChangeParams",
    "Pivot",
    "PivotParams",
    "SplineFit",
    "change_candidates",
    "detect_change",
    "detect_pivot",
    "find_changes",
    "fit_spline",
    "largest_displacement",
    "neighbour_noise",
    "step_noise",
]

MIN_POINTS = 8
"""Fewest checkpoints a curve needs: a plateau, a window and a level after it, each with a few
checkpoints."""

_MAD_TO_SIGMA = 1.4826
"""Median absolute deviation times this estimates a Gaussian's standard deviation."""


@dataclass(frozen=True)
class ChangeParams:
    """Thresholds of the phase-change definition and of the fit (module docstring)."""

    min_change: float = 0.0
    """(a) Smallest ``|change|`` in signal units, on top of ``min_ratio``: for signals with
    natural units (nats, a share of attention) a change can be large against a very quiet
    run's noise and still too small to matter. 0 (the default) leaves only ``min_ratio``."""
    min_ratio: float = 6.0
    """(a) Smallest ``|change| / noise``. A change across a window is the difference of two
    fitted levels, each noisy by about ``noise``; 6 keeps pure noise (largest spurious
    changes of 3-4 noise units over ~100 checkpoints) out with margin (none in ~1,000 seeded
    noise, decay and 1-layer-like curves), while a 0.25-nat jump like the paper's passes
    whenever the checkpoint-to-checkpoint noise is below 0.04 nats."""
    max_width: float = 0.3
    """(b) Largest window width, as a share of the run's x range. The paper's small models
    change between about 2.5e9 and 5e9 of ~10e9 tokens (a quarter of the run); 0.3 admits that
    and rejects a change spread over most of the run."""
    plateau: float = 0.1
    """(c) Length of the stretch just before the change that must be flat, as a share of the
    x range. A tenth of the run is several checkpoints on any run worth analysing and long
    enough that the tail of the initial descent, if it is still steep there, shows up as
    drift. 0 drops requirement (c)."""
    max_drift: float = 0.25
    """(c) Largest change of the fitted curve over the plateau stretch, as a share of the
    window's change. A quarter tolerates the slow drift a plateau has in practice (the
    paper's ICL score creeps below 0.15 nats before its jump to 0.4) and rejects a window that
    merely continues a descent."""
    shoulder: float = 0.1
    """Segments next to the steepest one belong to the change while their slope is at least
    this share of the steepest slope. A logistic step's slope is a tenth of its peak about
    2.5% of the way up, so the stretch reaches within a few percent of the plateaus around
    it, and the logistic fitted around it (which places the window) sees both levels."""
    direction: Literal[-1, 0, 1] = 0
    """Only changes going this way: -1 falling (ICL score, loss), +1 rising (prefix
    matching), 0 either."""
    penalty: float = 3.0
    """Cost of one knot in units of ``ln(n) * sigma0**2``. BIC charges ``ln(n) sigma**2`` per
    parameter and a knot has two (its place and its slope change); 3 rather than 2 keeps the
    fit from chasing the largest of ~100 noise fluctuations."""
    max_knots: int = 30
    """Most knots of the fit: enough to follow a smooth step and an initial descent of a
    ~100-checkpoint curve to the noise level, and a bound on the fit's cost."""

    def __post_init__(self) -> None:
        checks = {
            "min_change": (self.min_change >= 0, "must be >= 0"),
            "min_ratio": (self.min_ratio > 0, "must be > 0"),
            "max_width": (0 < self.max_width <= 1, "must be in (0, 1]"),
            "plateau": (0 <= self.plateau < 1, "must be in [0, 1)"),
            "max_drift": (self.max_drift >= 0, "must be >= 0"),
            "shoulder": (0 < self.shoulder < 1, "must be in (0, 1)"),
            "direction": (self.direction in (-1, 0, 1), "must be -1, 0 or 1"),
            "penalty": (self.penalty >= 0, "must be >= 0"),
            "max_knots": (isinstance(self.max_knots, int) and self.max_knots >= 1,
                          "must be an int >= 1"),
        }
        for name, (ok, rule) in checks.items():
            if not ok:
                raise EvalError(f"ChangeParams.{name}={getattr(self, name)!r} {rule}; "
                                f"the default is {getattr(ChangeParams, name)!r}")


@dataclass(frozen=True)
class Change:
    """One candidate phase change of a curve and how it fares against the definition."""

    start: float
    """x of the window's first checkpoint (the one nearest the 10% point)."""
    end: float
    """x of the window's last checkpoint (the one nearest the 90% point)."""
    start_index: int
    """Index of ``start`` among the checkpoints."""
    end_index: int
    """Index of ``end`` among the checkpoints."""
    mid: float
    """x of the step's midpoint ``t0`` (the logistic fit's), between ``start`` and ``end``:
    the time of the jump, for lags between measures."""
    start_value: float
    """Fitted curve (:func:`fit_spline`) at ``start``."""
    end_value: float
    """Fitted curve at ``end``."""
    change: float
    """``end_value - start_value`` (signed, signal units)."""
    noise: float
    """The run's step-to-step noise (:func:`step_noise`), signal units."""
    ratio: float
    """``|change| / noise`` (criterion a); infinite for a noiseless curve."""
    width: float
    """``(end - start)`` as a share of the run's x range (criterion b)."""
    drift: float
    """Fitted change over the plateau stretch before the change, signed (criterion c); NaN
    when the change starts too early for a whole stretch."""
    slope: float
    """Steepest slope of the fitted curve in the change (signal units per unit of x)."""
    failed: tuple[str, ...] = ()
    """Criteria it fails, from "size", "narrowness", "plateau"; empty when accepted."""

    @property
    def accepted(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class SplineFit:
    """A continuous piecewise-linear least-squares fit with knots at checkpoints."""

    knots: tuple[int, ...]
    """Indices of the checkpoints where the slope changes, sorted."""
    fitted: Float[np.ndarray, " checkpoint"] = field(repr=False, compare=False)
    """The fitted curve at every checkpoint (not compared: the knots determine it)."""
    noise: float
    """Step-to-step noise of the residual (:func:`step_noise`)."""
    penalty: float
    """Squared-error decrease a knot had to buy (``penalty * ln(n) * sigma0**2``)."""


def _curve(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Checked float copies of a curve; one-line EvalErrors name the problem and the fix."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise EvalError(f"x and y must be 1-d arrays, got shapes {x.shape} and {y.shape}; pass "
                        "one value per checkpoint")
    if len(x) != len(y):
        raise EvalError(f"x and y must have the same length, got {len(x)} and {len(y)}; pass "
                        "one value per checkpoint")
    if len(x) < MIN_POINTS:
        raise EvalError(f"a curve needs at least {MIN_POINTS} checkpoints, got {len(x)}; "
                        "evaluate more checkpoints of the run")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise EvalError("the curve has non-finite values (NaN or inf); drop those checkpoints "
                        "first")
    if not (np.diff(x) > 0).all():
        raise EvalError("x must be strictly increasing (one value per checkpoint); sort the "
                        "curve and drop duplicate checkpoints")
    return x, y


def _mad_sigma(values: np.ndarray) -> float:
    return float(_MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


def _neighbour_noise(x: np.ndarray, y: np.ndarray) -> float:
    gap = np.diff(x)
    w = gap[1:] / (gap[:-1] + gap[1:])  # weight of the left neighbour in the interpolation
    residual = y[1:-1] - (w * y[:-2] + (1.0 - w) * y[2:])
    return _mad_sigma(residual / np.sqrt(1.0 + w**2 + (1.0 - w) ** 2))


def neighbour_noise(x: Float[np.ndarray, " checkpoint"],
                    y: Float[np.ndarray, " checkpoint"]) -> float:
    """Pilot noise estimate: robust spread of each checkpoint around the line through its two
    neighbours.

    With independent noise ``sigma`` at every checkpoint, ``y[i]`` minus the linear
    interpolation of its neighbours has standard deviation ``sigma * sqrt(1 + w**2 +
    (1 - w)**2)`` (``w`` the left neighbour's weight), whatever the spacing; a smooth trend
    leaves it almost nothing, and the median absolute deviation ignores the few checkpoints
    at a sharp bend. Used to price knots before the fit exists.
    """
    x, y = _curve(x, y)
    return _neighbour_noise(x, y)


def _orthonormal(columns: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(columns)
    return q


class _Spline:
    """Least squares on ``[1, u, relu(u - u_k) for k in knots]`` by projections: the gain of
    every candidate knot at once is ``(h' r)**2 / (h' h')`` with ``h'`` the candidate's
    column orthogonalised against the current basis and ``r`` the current residual."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        u = (x - x[0]) / (x[-1] - x[0])  # numerically tame; the fit does not depend on it
        self.y = y
        self.base = np.column_stack([np.ones_like(u), u])
        self.hinges = np.maximum(u[:, None] - u[None, 1:-1], 0.0)  # candidate knot k: column k-1
        self.scale = (self.hinges**2).sum(axis=0)

    def basis(self, knots: list[int]) -> np.ndarray:
        return np.column_stack([self.base, self.hinges[:, [k - 1 for k in knots]]])

    def residual(self, knots: list[int]) -> tuple[np.ndarray, np.ndarray]:
        q = _orthonormal(self.basis(knots))
        return q, self.y - q @ (q.T @ self.y)

    def sse(self, knots: list[int]) -> float:
        return float((self.residual(knots)[1] ** 2).sum())

    def gains(self, knots: list[int]) -> np.ndarray:
        """Squared-error decrease of adding each candidate knot; -inf for those in ``knots``."""
        q, r = self.residual(knots)
        h = self.hinges - q @ (q.T @ self.hinges)
        norm = (h**2).sum(axis=0)
        gains = np.where(norm > 1e-12 * self.scale, (h.T @ r) ** 2 / np.maximum(norm, 1e-300),
                         0.0)
        gains[[k - 1 for k in knots]] = -np.inf
        return gains


def _select_knots(x: np.ndarray, y: np.ndarray, penalty: float, max_knots: int) -> list[int]:
    spline = _Spline(x, y)
    limit = min(max_knots, len(x) - 2)
    knots: list[int] = []
    while len(knots) < limit:  # forward: add the best knot while it pays its penalty
        gains = spline.gains(knots)
        best = int(np.argmax(gains))
        if gains[best] <= penalty:
            break
        knots.append(best + 1)
    for _ in range(10):  # exchange: move each knot to its best place given the others
        moved = False
        for i in range(len(knots)):
            others = knots[:i] + knots[i + 1:]
            gains = spline.gains(others)
            best = int(np.argmax(gains))
            if best + 1 != knots[i] and gains[best] > gains[knots[i] - 1]:
                knots[i], moved = best + 1, True
        if not moved:
            break
    while knots:  # backward: drop the knot that costs least while it no longer pays
        base = spline.sse(knots)
        loss = [spline.sse(knots[:i] + knots[i + 1:]) - base for i in range(len(knots))]
        i = int(np.argmin(loss))
        if loss[i] > penalty:
            break
        knots.pop(i)
    return sorted(knots)


def _fit(x: np.ndarray, y: np.ndarray, params: ChangeParams) -> SplineFit:
    sigma0 = _neighbour_noise(x, y)
    total = float(((y - y.mean()) ** 2).sum())
    # A floor for noiseless curves: gains at rounding level are not structure.
    penalty = max(params.penalty * math.log(len(x)) * sigma0**2, 1e-12 * total, 1e-300)
    knots = _select_knots(x, y, penalty, params.max_knots)
    spline = _Spline(x, y)
    q, residual = spline.residual(knots)
    fitted = y - residual
    noise = _mad_sigma(np.diff(residual)) / math.sqrt(2.0)
    return SplineFit(knots=tuple(knots), fitted=fitted, noise=noise,
                     penalty=params.penalty * math.log(len(x)) * sigma0**2)


def fit_spline(x: Float[np.ndarray, " checkpoint"], y: Float[np.ndarray, " checkpoint"], *,
               params: ChangeParams | None = None) -> SplineFit:
    """Continuous piecewise-linear least-squares fit of ``y(x)`` with knots at checkpoints
    (module docstring: greedy addition, exchange, pruning under a BIC-like penalty).

    Args:
        x: checkpoint positions (steps or tokens), strictly increasing.
        y: the signal at each checkpoint.
        params: ``penalty`` and ``max_knots`` are used (default :class:`ChangeParams`).
    """
    x, y = _curve(x, y)
    return _fit(x, y, params if params is not None else ChangeParams())


def step_noise(x: Float[np.ndarray, " checkpoint"], y: Float[np.ndarray, " checkpoint"], *,
               params: ChangeParams | None = None) -> float:
    """The run's step-to-step noise: ``1.4826 * MAD / sqrt(2)`` of the first differences of the
    residual of :func:`fit_spline`.

    Why first differences of a residual: the fit removes the trend (descent, plateaus, steps),
    differencing removes what misfit is left, which changes slowly from one checkpoint to the
    next, and the median absolute deviation ignores the few checkpoints where a fit
    misses a bend. Independent noise ``sigma`` per checkpoint gives differences of spread
    ``sigma * sqrt(2)``.
    """
    return fit_spline(x, y, params=params).noise


_EDGE = math.log(9.0)
"""A logistic step covers 10% to 90% of its height within ``t0 -/+ ln(9) w``."""


def _logistic_gains(x: np.ndarray, y: np.ndarray, t0: np.ndarray, w: np.ndarray, sign: int
                    ) -> np.ndarray:
    """Squared-error decrease of ``p + q expit((x - t0) / w)`` over the constant ``p``, for
    every ``(t0, w)``; -inf where ``q`` goes against ``sign``."""
    z = 0.5 * (1.0 + np.tanh(0.5 * (x - t0[:, None, None]) / w[None, :, None]))  # (t0, w, x)
    zc = z - z.mean(axis=2, keepdims=True)
    var = (zc**2).sum(axis=2)
    cov = (zc * (y - y.mean())).sum(axis=2)
    return np.where((var > 0) & (sign * cov > 0), cov**2 / np.maximum(var, 1e-300), -np.inf)


def _logistic_window(x: np.ndarray, y: np.ndarray, a: int, b: int, sign: int
                     ) -> tuple[int, int, float]:
    """Checkpoints nearest the ends of the 10%-90% rise of the logistic step
    ``p + q expit((x - t0) / w)`` that best fits the observed curve around the stretch
    ``a..b``: least squares over a grid (``t0`` four per checkpoint interval of the stretch,
    ``w`` 40 values log-spaced from a twentieth of the smallest checkpoint interval to the
    stretch's width), then three 9 x 9 zooms around the best point; ``p, q`` are solved
    exactly, ``q`` going ``sign``'s way and ``t0`` staying inside the stretch. Returns the
    two checkpoint indices and ``t0``.

    The fit covers the stretch and half its width (at least two checkpoints) on each side, so
    that both levels are seen.
    Why a logistic here and not the spline: the spline finds and judges the change with few
    knots, and a linear piece across a curved shoulder puts a 10% or 90% point up to a few
    checkpoints off; the logistic's shoulders are curved like a step's.
    """
    half = (x[b] - x[a]) / 2
    lo = max(min(int(np.searchsorted(x, x[a] - half, side="left")), a - 2), 0)
    hi = min(max(int(np.searchsorted(x, x[b] + half, side="right")), b + 3), len(x))
    xs, ys = x[lo:hi], y[lo:hi]
    t0 = np.unique(np.concatenate([np.linspace(p, q, 5)[:-1] for p, q in
                                   zip(x[a:b], x[a + 1:b + 1], strict=True)] + [x[b:b + 1]]))
    w = np.geomspace(np.diff(x[lo:hi]).min() / 20, x[b] - x[a], 40)
    gain = _logistic_gains(xs, ys, t0, w, sign)
    i, j = np.unravel_index(int(np.argmax(gain)), gain.shape)
    best_t0, best_w = t0[i], w[j]
    dt, ratio = np.diff(x[a:b + 1]).max() / 4, w[1] / w[0]
    for _ in range(3):  # zoom: 9 x 9 around the best, each round four times finer
        t0 = np.clip(best_t0 + np.linspace(-dt, dt, 9), x[a], x[b])
        w = best_w * ratio ** np.linspace(-1, 1, 9)
        gain = _logistic_gains(xs, ys, t0, w, sign)
        i, j = np.unravel_index(int(np.argmax(gain)), gain.shape)
        if np.isfinite(gain[i, j]):
            best_t0, best_w = t0[i], w[j]
        dt, ratio = dt / 4, ratio**0.25
    s = int(np.argmin(np.abs(x - (best_t0 - _EDGE * best_w))))
    e = int(np.argmin(np.abs(x - (best_t0 + _EDGE * best_w))))
    if e <= s:  # sharper than the checkpoint spacing: the interval holding the midpoint
        s = int(np.clip(np.searchsorted(x, best_t0, side="right") - 1, 0, len(x) - 2))
        e = s + 1
    return s, e, float(np.clip(best_t0, x[s], x[e]))


def _candidates(x: np.ndarray, y: np.ndarray, params: ChangeParams) -> list[Change]:
    fit = _fit(x, y, params)
    f, noise = fit.fitted, fit.noise
    span = x[-1] - x[0]
    bounds = np.array([0, *fit.knots, len(x) - 1])
    slopes = np.diff(f[bounds]) / np.diff(x[bounds])
    directions = (-1, 1) if params.direction == 0 else (params.direction,)
    extents: set[tuple[int, int, int, float]] = set()
    for sign in directions:
        v = sign * slopes
        padded = np.concatenate([[-np.inf], v, [-np.inf]])
        peaks = np.flatnonzero((v > 0) & (v >= padded[:-2]) & (v >= padded[2:]))
        for k in peaks:
            lo = hi = int(k)
            floor = params.shoulder * v[k]
            while lo > 0 and floor <= v[lo - 1] <= v[k]:
                lo -= 1
            while hi < len(v) - 1 and floor <= v[hi + 1] <= v[k]:
                hi += 1
            extents.add((sign, int(bounds[lo]), int(bounds[hi + 1]), float(slopes[k])))
    changes = []
    for sign, a, b, slope in sorted(extents, key=lambda e: (e[1], e[2], e[0])):
        s, e, mid = _logistic_window(x, y, a, b, sign)
        change = float(f[e] - f[s])
        ratio = abs(change) / noise if noise > 0 else math.inf
        width = float((x[e] - x[s]) / span)
        first = min(a, s)  # the plateau ends where the change starts
        before = x[first] - params.plateau * span
        drift = float(f[first] - np.interp(before, x, f)) if before >= x[0] else math.nan
        failed = []
        if ratio < params.min_ratio or abs(change) < params.min_change:
            failed.append("size")
        if width > params.max_width:
            failed.append("narrowness")
        if not abs(drift) <= params.max_drift * abs(change):  # NaN (no room) fails too
            failed.append("plateau")
        changes.append(Change(start=float(x[s]), end=float(x[e]), start_index=s, end_index=e,
                              mid=mid, start_value=float(f[s]), end_value=float(f[e]),
                              change=change, noise=noise, ratio=float(ratio), width=width,
                              drift=drift, slope=slope, failed=tuple(failed)))
    return changes


def change_candidates(x: Float[np.ndarray, " checkpoint"], y: Float[np.ndarray, " checkpoint"], *,
                      params: ChangeParams | None = None) -> list[Change]:
    """Every candidate change of ``y(x)`` with the criteria it fails (``Change.failed``),
    sorted by window start: for diagnosing why a curve has, or has no, phase change.

    Args:
        x: checkpoint positions (steps or tokens), strictly increasing.
        y: the signal at each checkpoint, finite.
        params: thresholds (default :class:`ChangeParams`).

    Raises:
        EvalError: when the curve is not 1-d, its lengths differ, it has fewer than
            :data:`MIN_POINTS` checkpoints, a non-finite value or unsorted x.
    """
    x, y = _curve(x, y)
    return _candidates(x, y, params if params is not None else ChangeParams())


def find_changes(x: Float[np.ndarray, " checkpoint"], y: Float[np.ndarray, " checkpoint"], *,
                 params: ChangeParams | None = None) -> list[Change]:
    """Every phase change of ``y(x)`` (module docstring), sorted by window start.

    Accepted candidates of :func:`change_candidates` whose windows overlap keep only the one
    with the steepest slope: a gentle candidate next to a step can reach into it and borrow its
    size, but not its slope.

    Args:
        x: checkpoint positions (steps or tokens), strictly increasing; uneven spacing is
            fine (widths and the plateau are measured in x).
        y: the signal at each checkpoint, finite.
        params: thresholds (default :class:`ChangeParams`).

    Returns:
        The accepted changes, possibly empty.

    Raises:
        EvalError: see :func:`change_candidates`.
    """
    accepted = [c for c in change_candidates(x, y, params=params) if c.accepted]
    kept: list[Change] = []
    for c in sorted(accepted, key=lambda c: -abs(c.slope)):
        if all(c.end <= k.start or c.start >= k.end for k in kept):
            kept.append(c)
    return sorted(kept, key=lambda c: c.start)


def detect_change(x: Float[np.ndarray, " checkpoint"], y: Float[np.ndarray, " checkpoint"], *,
                  params: ChangeParams | None = None) -> Change | None:
    """The phase change of ``y(x)`` largest against the noise, or None when it has none.

    Args: see :func:`find_changes`.
    """
    changes = find_changes(x, y, params=params)
    return max(changes, key=lambda c: c.ratio) if changes else None


@dataclass(frozen=True)
class PivotParams:
    """Threshold of :func:`detect_pivot`."""

    min_ratio: float = 5.0
    """Smallest ratio of the largest interval's displacement to the median displacement of
    the other intervals. In a 2-D Gaussian random walk of ~100 steps the largest step is about
    2.5-3.5 times the median one, so 5 leaves pure diffusion out; the pivot the paper shows
    (and one measured in this project, 48.6 against 1-5) is ten or more."""

    def __post_init__(self) -> None:
        if not self.min_ratio > 1:
            raise EvalError(f"PivotParams.min_ratio={self.min_ratio!r} must be > 1 (the "
                            "largest displacement is never below the median); the default is "
                            f"{PivotParams.min_ratio}")


@dataclass(frozen=True)
class Pivot:
    """The interval where a training trajectory moves most, and how it compares to the rest."""

    start: float
    """x of the interval's first checkpoint."""
    end: float
    """x of the interval's last checkpoint."""
    start_index: int
    end_index: int
    displacement: float
    """Euclidean distance between the trajectory's points at ``start`` and ``end``."""
    noise: float
    """Median displacement of the other checkpoint intervals."""
    ratio: float
    """``displacement / noise``; infinite when the other intervals do not move."""


def largest_displacement(x: Float[np.ndarray, " checkpoint"],
                         points: Float[np.ndarray, "checkpoint component"]) -> Pivot:
    """The checkpoint interval of the largest displacement of a trajectory, and its ratio to the
    median displacement of the other intervals, whatever that ratio (:func:`detect_pivot`
    judges it).

    Raises:
        EvalError: as :func:`detect_pivot`.
    """
    x = np.asarray(x, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or x.ndim != 1:
        raise EvalError(f"points must be 2-d (checkpoint, component) and x 1-d, got shapes "
                        f"{points.shape} and {x.shape}; stack the components as columns")
    if len(points) != len(x):
        raise EvalError(f"x and points must have the same length, got {len(x)} and "
                        f"{len(points)}; pass one row per checkpoint")
    if len(x) < 4:
        raise EvalError(f"a trajectory needs at least 4 checkpoints, got {len(x)}; evaluate "
                        "more checkpoints of the run")
    if not (np.isfinite(x).all() and np.isfinite(points).all()):
        raise EvalError("the trajectory has non-finite values (NaN or inf); drop those "
                        "checkpoints first")
    if not (np.diff(x) > 0).all():
        raise EvalError("x must be strictly increasing (one value per checkpoint); sort the "
                        "trajectory and drop duplicate checkpoints")
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    k = int(np.argmax(steps))
    noise = float(np.median(np.delete(steps, k)))
    displacement = float(steps[k])
    ratio = displacement / noise if noise > 0 else (math.inf if displacement > 0 else 0.0)
    return Pivot(start=float(x[k]), end=float(x[k + 1]), start_index=k, end_index=k + 1,
                 displacement=displacement, noise=noise, ratio=float(ratio))


def detect_pivot(x: Float[np.ndarray, " checkpoint"],
                 points: Float[np.ndarray, "checkpoint component"], *,
                 params: PivotParams | None = None) -> Pivot | None:
    """The checkpoint interval of the largest displacement of a trajectory, or None when it
    is not large against the displacements of the other intervals.

    The paper (Argument 1): "We see that the training trajectories pivot during exactly the
    same window where the other changes happen." A trajectory is usually the first two
    principal components of the per-token losses at each checkpoint. The median of the other
    intervals is the noise model: one jump does not move it, and a trajectory that moves
    steadily has no interval far above it. Displacements are per checkpoint interval, not
    per unit of x: with uneven spacing a long interval may win by being long.

    Args:
        x: checkpoint positions (steps or tokens), strictly increasing.
        points: the trajectory, one row per checkpoint (two principal components, or more).
        params: threshold (default :class:`PivotParams`).

    Raises:
        EvalError: when ``points`` is not 2-d, its length differs from ``x``, there are fewer
            than 4 checkpoints, a value is not finite or x is not strictly increasing.
    """
    params = params if params is not None else PivotParams()
    pivot = largest_displacement(x, points)
    return pivot if pivot.ratio >= params.min_ratio else None
