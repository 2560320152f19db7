"""The phase-change detector (:mod:`induction_lens.analysis.changepoint`) on synthetic curves
whose truth is known by construction: a logistic step's midpoint and 10%-90% edges, an
exponential decay that has no phase change, a step below the noise, two steps, uneven
checkpoint spacing, curves shaped like the project's 1-layer and 2-layer runs, and 2-D
trajectories with and without one big jump.
"""

import math

import numpy as np
import pytest

from induction_lens.analysis.changepoint import (
    Change,
    ChangeParams,
    Pivot,
    PivotParams,
    SplineFit,
    change_candidates,
    detect_change,
    detect_pivot,
    find_changes,
    fit_spline,
    largest_displacement,
    neighbour_noise,
    step_noise,
)
from induction_lens.errors import EvalError

EDGE = math.log(9.0)  # a logistic goes from 10% to 90% of its height within mid -/+ ln(9) w


def expit(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def step_curve(x, mid, width, height, *, base=0.0):
    return base + height * expit((x - mid) / width)


def noisy(y, sigma, seed):
    return y + np.random.default_rng(seed).normal(0.0, sigma, size=y.shape)


def local_interval(x, at):
    """The longest checkpoint interval touching position ``at`` (snapping tolerance)."""
    i = int(np.clip(np.searchsorted(x, at), 1, len(x) - 1))
    return float(max(np.diff(x)[max(i - 2, 0):i + 1]))


def assert_window_matches(change: Change, x, mid, width):
    lo, hi = mid - EDGE * width, mid + EDGE * width
    assert change.start <= mid <= change.end
    assert abs(change.start - lo) <= local_interval(x, lo) + 1e-9, (change.start, lo)
    assert abs(change.end - hi) <= local_interval(x, hi) + 1e-9, (change.end, hi)
    # The window's ends are checkpoints, named by index and by position.
    assert x[change.start_index] == change.start and x[change.end_index] == change.end


X = np.linspace(0.0, 1000.0, 101)  # 101 checkpoints, every 10 steps


# --------------------------------------------------------------------------------------------
# Noise estimate and the spline fit


@pytest.mark.parametrize("sigma", [0.01, 0.1])
def test_step_noise_recovers_the_noise_of_a_smooth_curve(sigma):
    y = noisy(2.0 * np.exp(-X / 200.0), sigma, seed=1)
    assert step_noise(X, y) == pytest.approx(sigma, rel=0.25)


def test_step_noise_ignores_a_sharp_step():
    y = noisy(step_curve(X, 500.0, 1.0, -2.0), 0.05, seed=2)
    assert step_noise(X, y) == pytest.approx(0.05, rel=0.3)


def test_spline_through_a_noiseless_ramp_puts_knots_at_its_corners():
    y = np.interp(X, [0.0, 300.0, 400.0, 1000.0], [1.0, 1.0, -1.0, -1.0])
    fit = fit_spline(X, y)
    assert isinstance(fit, SplineFit)
    assert sorted(X[list(fit.knots)]) == [300.0, 400.0]
    np.testing.assert_allclose(fit.fitted, y, atol=1e-9)


def _reference_knots(x, y, penalty, max_knots):
    """Plain greedy forward selection plus exchange plus pruning with one lstsq per candidate:
    the specification :func:`fit_spline` implements with projections."""
    u = (x - x[0]) / (x[-1] - x[0])

    def sse(knots):
        basis = np.column_stack([np.ones_like(u), u] + [np.maximum(u - u[k], 0) for k in knots])
        coef = np.linalg.lstsq(basis, y, rcond=None)[0]
        return float(((y - basis @ coef) ** 2).sum()), basis @ coef

    candidates = range(1, len(x) - 1)
    knots: list[int] = []
    while len(knots) < max_knots:
        base = sse(knots)[0]
        gains = {c: base - sse(knots + [c])[0] for c in candidates if c not in knots}
        best = max(gains, key=gains.get)
        if gains[best] <= penalty:
            break
        knots.append(best)
    for _ in range(10):  # exchange: move each knot to its best position given the others
        moved = False
        for i in range(len(knots)):
            others = knots[:i] + knots[i + 1:]
            cost = {c: sse(others + [c])[0] for c in candidates if c not in others}
            best = min(cost, key=cost.get)
            if best != knots[i] and cost[best] < cost[knots[i]]:
                knots[i], moved = best, True
        if not moved:
            break
    while knots:  # prune knots that no longer pay their penalty
        base = sse(knots)[0]
        loss = [sse(knots[:i] + knots[i + 1:])[0] - base for i in range(len(knots))]
        i = int(np.argmin(loss))
        if loss[i] > penalty:
            break
        knots.pop(i)
    return sorted(knots), sse(knots)[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_spline_fit_equals_the_plain_reference(seed):
    y = noisy(step_curve(X, 600.0, 20.0, -1.0) + 0.8 * np.exp(-X / 60.0), 0.03, seed)
    fit = fit_spline(X, y)
    penalty = ChangeParams().penalty * math.log(len(X)) * neighbour_noise(X, y) ** 2
    assert fit.penalty == pytest.approx(penalty)
    knots, fitted = _reference_knots(X, y, penalty, ChangeParams().max_knots)
    assert list(fit.knots) == knots
    np.testing.assert_allclose(fit.fitted, fitted, atol=1e-9)


# --------------------------------------------------------------------------------------------
# Steps that are phase changes


@pytest.mark.parametrize(("mid", "width", "seed"), [
    (500.0, 15.0, 0), (500.0, 15.0, 1), (400.0, 30.0, 2), (650.0, 6.0, 3),
    (300.0, 2.0, 4),  # sharper than one checkpoint interval
])
def test_noisy_step_is_found_with_its_10_90_edges(mid, width, seed):
    y = noisy(step_curve(X, mid, width, -1.0, base=0.2), 0.03, seed)
    changes = find_changes(X, y)
    assert len(changes) == 1
    change = changes[0]
    assert_window_matches(change, X, mid, width)
    assert change.change < -0.7  # most of the -1 step lies in the window
    assert change.change == pytest.approx(change.end_value - change.start_value)
    assert abs(change.mid - mid) <= max(width, 2.0)
    assert change.noise == pytest.approx(0.03, rel=0.35)
    assert change.ratio == pytest.approx(abs(change.change) / change.noise)
    assert detect_change(X, y) == change


def test_rising_step_is_found_and_direction_filters_it():
    y = noisy(step_curve(X, 500.0, 15.0, 0.5), 0.02, seed=5)
    (change,) = find_changes(X, y)
    assert change.change > 0.4
    assert find_changes(X, y, params=ChangeParams(direction=1)) == [change]
    assert find_changes(X, y, params=ChangeParams(direction=-1)) == []


def test_two_steps_far_apart_are_both_found_sorted():
    y = noisy(step_curve(X, 250.0, 10.0, -1.0) + step_curve(X, 750.0, 10.0, -0.6), 0.02, 6)
    changes = find_changes(X, y)
    assert len(changes) == 2
    assert_window_matches(changes[0], X, 250.0, 10.0)
    assert_window_matches(changes[1], X, 750.0, 10.0)
    assert detect_change(X, y) == changes[0]  # the larger change (in units of noise)


def test_step_after_initial_descent_and_plateau_is_the_only_change():
    y = noisy(1.5 * np.exp(-X / 40.0) + step_curve(X, 700.0, 12.0, -1.0), 0.03, seed=7)
    changes = find_changes(X, y)
    assert len(changes) == 1
    assert_window_matches(changes[0], X, 700.0, 12.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_log_spaced_checkpoints(seed):
    x = np.unique(np.round(np.geomspace(10.0, 10_000.0, 100)))
    mid, width = 3000.0, 120.0
    y = noisy(step_curve(x, mid, width, -1.0), 0.02, seed)
    (change,) = find_changes(x, y)
    assert_window_matches(change, x, mid, width)


# --------------------------------------------------------------------------------------------
# Curves that have no phase change


@pytest.mark.parametrize(("tau", "seed"), [(30.0, 0), (100.0, 1), (250.0, 2), (600.0, 3)])
def test_exponential_decay_from_random_init_is_not_a_phase_change(tau, seed):
    y = noisy(3.0 * np.exp(-X / tau) + 1.0, 0.03, seed)
    assert find_changes(X, y) == []
    assert detect_change(X, y) is None


def test_exponential_decay_on_log_spaced_checkpoints_is_not_a_phase_change():
    x = np.unique(np.round(np.geomspace(1.0, 10_000.0, 100)))
    y = noisy(3.0 * np.exp(-x / 300.0), 0.02, seed=8)
    assert find_changes(x, y) == []


@pytest.mark.parametrize("seed", range(4))
def test_step_smaller_than_the_noise_is_not_found(seed):
    y = noisy(step_curve(X, 500.0, 10.0, -0.05), 0.1, seed)
    assert find_changes(X, y) == []


@pytest.mark.parametrize("seed", range(4))
def test_pure_noise_has_no_change(seed):
    assert find_changes(X, noisy(np.zeros_like(X), 0.1, seed)) == []


def test_slow_linear_drift_is_not_a_phase_change():
    y = noisy(-2.0 * X / X[-1], 0.02, seed=9)
    assert find_changes(X, y) == []


def test_a_wide_ramp_is_not_short_enough():
    # A ramp over 60% of the run: large and after a plateau, but not within a short window.
    y = noisy(np.interp(X, [0.0, 200.0, 800.0, 1000.0], [0.0, 0.0, -2.0, -2.0]), 0.02, 10)
    assert find_changes(X, y) == []
    wide = ChangeParams(max_width=0.8)
    (change,) = find_changes(X, y, params=wide)
    assert change.start <= 260.0 and change.end >= 740.0


# --------------------------------------------------------------------------------------------
# Curves shaped like the project's runs (ICL score, nats, against steps 0..1000)


def _early_bend(x):
    """ICL score from 0 to about -0.6 nats within the first ~15% of training."""
    return -0.6 * (1.0 - np.exp(-x / 40.0))


@pytest.mark.parametrize("seed", range(3))
def test_one_layer_icl_curve_has_no_phase_change(seed):
    y = noisy(_early_bend(X) - 0.05 * X / X[-1], 0.02, seed)  # bend, then flat (slow drift)
    assert find_changes(X, y) == []


@pytest.mark.parametrize("seed", range(3))
def test_two_layer_icl_curve_drops_between_55_and_70_percent(seed):
    # Drop from -0.6 to -3.2 nats whose 10%-90% rise spans 550..700 steps.
    mid, width = 625.0, 75.0 / EDGE
    y = noisy(_early_bend(X) + step_curve(X, mid, width, -2.6), 0.02, seed)
    (change,) = find_changes(X, y)
    assert_window_matches(change, X, mid, width)
    assert 540.0 <= change.start <= 560.0 and 690.0 <= change.end <= 710.0
    assert -2.6 < change.change < -1.9
    assert change.ratio > 50


# --------------------------------------------------------------------------------------------
# The PCA pivot


def _walk(seed, n=100):
    return np.cumsum(np.random.default_rng(seed).normal(0.0, 1.0, size=(n, 2)), axis=0)


@pytest.mark.parametrize("seed", range(3))
def test_pivot_is_the_big_jump_of_a_random_walk(seed):
    points = _walk(seed)
    points[61:] += np.array([30.0, -20.0])  # the jump lies between checkpoints 60 and 61
    x = np.arange(100) * 50.0
    pivot = detect_pivot(x, points)
    assert isinstance(pivot, Pivot)
    assert (pivot.start_index, pivot.end_index) == (60, 61)
    assert (pivot.start, pivot.end) == (3000.0, 3050.0)
    assert pivot.displacement == pytest.approx(np.linalg.norm(points[61] - points[60]))
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    assert pivot.noise == pytest.approx(np.median(np.delete(steps, 60)))
    assert pivot.ratio == pytest.approx(pivot.displacement / pivot.noise)


@pytest.mark.parametrize("seed", range(5))
def test_random_walk_without_a_jump_has_no_pivot(seed):
    assert detect_pivot(np.arange(100.0), _walk(seed)) is None


def test_pivot_of_the_issue_numbers():
    # 48.6 units in one interval against 1 to 5 in the others.
    rng = np.random.default_rng(11)
    steps = rng.uniform(1.0, 5.0, size=40)
    steps[12] = 48.6
    angles = rng.uniform(0, 2 * np.pi, size=40)
    moves = steps[:, None] * np.column_stack([np.cos(angles), np.sin(angles)])
    points = np.vstack([np.zeros((1, 2)), np.cumsum(moves, axis=0)])
    x = np.arange(41) * 50.0
    pivot = detect_pivot(x, points)
    assert (pivot.start, pivot.end) == (600.0, 650.0)
    assert pivot.displacement == pytest.approx(48.6)


@pytest.mark.parametrize("seed", range(3))
def test_largest_displacement_is_reported_whether_or_not_it_is_a_pivot(seed):
    walk = _walk(seed)
    assert detect_pivot(np.arange(100.0), walk) is None
    quiet = largest_displacement(np.arange(100.0), walk)
    steps = np.linalg.norm(np.diff(walk, axis=0), axis=1)
    k = int(np.argmax(steps))
    assert (quiet.start_index, quiet.end_index) == (k, k + 1)
    assert quiet.ratio == pytest.approx(steps[k] / np.median(np.delete(steps, k)))
    assert quiet.ratio < PivotParams().min_ratio
    walk[61:] += np.array([30.0, -20.0])
    assert largest_displacement(np.arange(100.0), walk) == detect_pivot(np.arange(100.0), walk)


def test_pivot_threshold_is_a_parameter():
    points = _walk(3)
    points[61:] += 4.0
    assert detect_pivot(np.arange(100.0), points, params=PivotParams(min_ratio=50.0)) is None


# --------------------------------------------------------------------------------------------
# Bad inputs and bad parameters


@pytest.mark.parametrize(("x", "y", "match"), [
    (np.arange(10.0), np.arange(9.0), "same length"),
    (np.arange(5.0), np.arange(5.0), "at least"),
    (np.arange(20.0), np.where(np.arange(20) == 3, np.nan, 0.0), "finite"),
    (np.r_[np.arange(10.0), 5.0, np.arange(11.0, 20.0)], np.zeros(20), "increasing"),
    (np.r_[0.0, 0.0, np.arange(1.0, 19.0)], np.zeros(20), "increasing"),
    (np.arange(20.0).reshape(4, 5), np.zeros((4, 5)), "1-d"),
])
def test_bad_curves_raise_eval_errors(x, y, match):
    with pytest.raises(EvalError, match=match) as info:
        find_changes(x, y)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("points", "match"), [
    (np.zeros((9, 2)), "same length"),
    (np.zeros(10), "2-d"),
    (np.zeros((2, 2)), "at least"),
    (np.where(np.arange(20).reshape(10, 2) == 5, np.inf, 0.0), "finite"),
])
def test_bad_trajectories_raise_eval_errors(points, match):
    n = len(points) if match != "same length" else 10
    with pytest.raises(EvalError, match=match):
        detect_pivot(np.arange(float(n)), points)


def test_unsorted_trajectory_steps_raise():
    with pytest.raises(EvalError, match="increasing"):
        detect_pivot(np.array([0.0, 2.0, 1.0, 3.0, 4.0]), np.zeros((5, 2)))


@pytest.mark.parametrize(("field", "value"), [
    ("min_ratio", 0.0), ("max_width", 0.0), ("max_width", 1.5), ("plateau", -0.1),
    ("plateau", 1.0), ("max_drift", -0.1), ("shoulder", 0.0), ("shoulder", 1.0),
    ("penalty", -1.0), ("max_knots", 0), ("direction", 2),
])
def test_bad_change_params_name_the_field(field, value):
    with pytest.raises(EvalError, match=f"ChangeParams.{field}"):
        ChangeParams(**{field: value})


def test_bad_pivot_params_name_the_field():
    with pytest.raises(EvalError, match="PivotParams.min_ratio"):
        PivotParams(min_ratio=1.0)


# --------------------------------------------------------------------------------------------
# Diagnostics: the rejected candidates say which criterion they fail


def test_candidates_name_the_failed_criteria():
    decay = change_candidates(X, noisy(3.0 * np.exp(-X / 100.0), 0.03, seed=12))
    first = decay[0]  # the initial descent: it starts at the first checkpoint
    assert first.start_index == 0 and "plateau" in first.failed and math.isnan(first.drift)
    small = change_candidates(X, noisy(step_curve(X, 500.0, 10.0, -0.05), 0.1, seed=13))
    assert all("size" in c.failed for c in small)
    ramp = np.interp(X, [0.0, 200.0, 800.0, 1000.0], [0.0, 0.0, -2.0, -2.0])
    wide = change_candidates(X, noisy(ramp, 0.02, seed=10))
    assert any(c.failed == ("narrowness",) for c in wide)


def test_noiseless_step_window_is_the_nearest_checkpoints_to_its_edges():
    # 10%-90% rise 600 -/+ 22: nearest checkpoints 580 and 620.
    (change,) = find_changes(X, step_curve(X, 600.0, 10.0, -1.0))
    assert (change.start, change.end) == (580.0, 620.0)
    assert change.change == pytest.approx(-0.76, abs=0.01)  # expit(+-2) apart


def test_step_between_two_checkpoints_is_that_interval():
    x = np.arange(8.0)
    (change,) = find_changes(x, np.r_[0.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0, -1.0])
    assert (change.start_index, change.end_index) == (3, 4)
    assert change.change == pytest.approx(-1.0)
