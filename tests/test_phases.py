"""Phase-change windows on hand-made curves whose window is known."""

import numpy as np
import pandas as pd
import pytest

from induction_lens.analysis.phases import (
    SIGNAL_PARAMS,
    DetectionParams,
    PhaseWindow,
    co_occurrence,
    co_occurrence_table,
    detect_phase_change,
    detect_window,
    fit_window,
    phase_changes,
    signal_curve,
)
from induction_lens.measures._checks import EvalError

from .test_losses import clear_error

STEPS = np.arange(0, 2001, 50)
TOKENS_PER_STEP = 4096
ICL = SIGNAL_PARAMS["icl_score"]
BUMP_LIKE = DetectionParams(direction=-1, min_change=0.1)
"""The bump fit (:func:`fit_window`) asked for a falling step, for its own tests."""


def logistic(x, centre, width):
    return 1 / (1 + np.exp(-(x - centre) / width))


def frame_of(run, values, metric="icl_score", steps=STEPS):
    return pd.DataFrame({"run": run, "step": steps, "train_tokens": steps * TOKENS_PER_STEP,
                         "metric": metric, "value": values})


# ----------------------------------------------------------------------------- known windows
def test_exact_step_between_two_checkpoints_gives_exactly_those_checkpoints():
    y = np.where(STEPS <= 1000, 0.0, -1.0)
    fit = detect_window(STEPS, y, BUMP_LIKE)
    assert fit is not None
    assert (STEPS[fit.start], STEPS[fit.end]) == (1000, 1050)
    window = detect_phase_change(frame_of("r", y))
    assert (window.start_step, window.end_step) == (1000, 1050)
    assert window.mid_step == pytest.approx(1025)
    assert window.change == pytest.approx(-1.0, abs=1e-3)  # the steepest fitted step


@pytest.mark.parametrize("noise", [0.0, 0.01, 0.03])
def test_noisy_logistic_step_is_found_around_its_10_to_90_percent_span(noise):
    rng = np.random.default_rng(0)
    centre, width = 1000.0, 40.0  # 10%-90% of the rise: centre -/+ ln(9) * width = 912..1088
    y = -0.1 - 0.4 * logistic(STEPS, centre, width) + rng.normal(0, noise, len(STEPS))
    window = detect_phase_change(frame_of("r", y))
    assert window is not None
    # Each edge within one checkpoint interval (50 steps) of the true 10% / 90% point.
    assert abs(window.start_step - 912) <= 50 and abs(window.end_step - 1088) <= 50
    assert abs(window.mid_step - centre) <= 25
    assert window.start_tokens == window.start_step * TOKENS_PER_STEP
    assert window.change == pytest.approx(-0.4, abs=0.1)


def test_rising_prefix_score_window():
    y = 0.03 + 0.8 * logistic(STEPS, 600, 30)
    window = detect_phase_change(frame_of("r", y, metric="prefix_matching"),
                                 signal="prefix_matching")
    assert window is not None and window.start_step <= 550 and window.end_step >= 650
    assert window.change > 0


@pytest.mark.parametrize("name, curve", [
    ("constant", lambda x, rng: -0.2 + rng.normal(0, 0.02, len(x))),
    ("linear drift", lambda x, rng: -0.6 * x / 2000 + rng.normal(0, 0.02, len(x))),
    ("saturation from the start", lambda x, rng: -0.5 * (1 - np.exp(-x / 150))
     + rng.normal(0, 0.01, len(x))),
    ("step too small", lambda x, rng: -0.05 * logistic(x, 1000, 20)),
    ("step the wrong way", lambda x, rng: 0.5 * logistic(x, 1000, 20)),
    ("slow sigmoid over the whole run", lambda x, rng: -0.5 * logistic(x, 1000, 400)),
])
def test_no_window_without_an_abrupt_change(name, curve):
    y = curve(STEPS.astype(float), np.random.default_rng(1))
    assert detect_phase_change(frame_of("r", y)) is None, name


def test_the_verdict_names_the_failed_criteria():
    fit = fit_window(STEPS, -0.6 * STEPS / 2000, BUMP_LIKE)
    assert fit is not None and not fit.accepted
    assert "abruptness" in fit.failed or "concentration" in fit.failed


def test_too_few_checkpoints_give_none():
    assert fit_window(np.arange(4.0), np.array([0, 0, -1, -1.0]), BUMP_LIKE) is None
    # A level change needs MIN_POINTS checkpoints: fewer give no window (not an error).
    assert detect_phase_change(frame_of("r", np.array([0, 0, 0, -1, -1.0]),
                                        steps=np.arange(5) * 50)) is None


# ----------------------------------------------------------------------------- the loss bump
def loss_curve(tokens, bump):
    """A power law (convex in ln tokens) with an optional steeper stretch around 3e6 tokens."""
    base = 2.0 + 4.0 * (tokens / 1e5) ** -0.3
    return base - bump * logistic(np.log(tokens), np.log(3e6), 0.08)


def test_loss_bump_is_found_in_log_tokens():
    frame = frame_of("r", loss_curve(np.maximum(STEPS, 1) * TOKENS_PER_STEP, 0.5),
                     metric="loss")
    window = detect_phase_change(frame, signal="loss")
    assert window is not None
    assert window.start_tokens <= 3e6 <= window.end_tokens
    assert window.start_tokens > 0  # step 0 (no tokens) is dropped for the log axis


def test_convex_loss_curve_and_linear_decrease_have_no_bump():
    tokens = np.maximum(STEPS, 1) * TOKENS_PER_STEP
    assert detect_phase_change(frame_of("r", loss_curve(tokens, 0.0), metric="loss"),
                               signal="loss") is None
    # Loss falling linearly in steps is concave in ln(tokens) (steepest at the end): no bump.
    linear = 6.5 - 0.5 * STEPS / 2000
    assert detect_phase_change(frame_of("r", linear, metric="loss"), signal="loss") is None


def test_loss_signal_prefers_the_mean_over_every_token():
    rows = [{"run": "r", "step": s, "train_tokens": 10 * s, "metric": "loss_by_position",
             "position": i, "value": float(s + i)} for s in (1, 2) for i in (1, 2, 3)]
    rows += [{"run": "r", "step": s, "train_tokens": 10 * s, "metric": "loss", "value": 99.0}
             for s in (1, 2)]
    curve = signal_curve(pd.DataFrame(rows), "loss")
    assert curve["value"].tolist() == [3.0, 4.0]  # mean of positions, not the 'loss' rows
    only_loss = signal_curve(pd.DataFrame([r for r in rows if r["metric"] == "loss"]), "loss")
    assert only_loss["value"].tolist() == [99.0, 99.0]


# ----------------------------------------------------------------------------- co-occurrence
def window(start, end, mid, signal="icl_score"):
    return PhaseWindow(signal=signal, start_step=start, end_step=end,
                       start_tokens=10 * start, end_tokens=10 * end, mid_step=float(mid),
                       mid_tokens=10.0 * mid, start_value=0.0, end_value=-1.0, change=-1.0,
                       snr=10.0)


def test_co_occurrence_by_hand():
    a, b = window(100, 300, 200), window(200, 400, 250, "prefix_matching")
    got = co_occurrence(a, b)
    assert got["both"] is True
    assert got["overlap_steps"] == 100 and got["overlap_tokens"] == 1000
    assert got["overlap_fraction"] == pytest.approx(1000 / 3000)
    assert got["lag_steps"] == 50 and got["lag_tokens"] == 500
    assert got["a_mid_in_b"] is True and got["b_mid_in_a"] is True
    disjoint = co_occurrence(window(0, 100, 50), window(200, 300, 250))
    assert disjoint["overlap_steps"] == 0 and disjoint["overlap_fraction"] == 0.0
    assert co_occurrence(a, None) == {"both": False, **dict.fromkeys(
        ["overlap_steps", "overlap_tokens", "overlap_fraction", "lag_steps", "lag_tokens",
         "a_mid_in_b", "b_mid_in_a"])}


def test_phase_changes_and_co_occurrence_tables_over_runs():
    icl_step = -0.1 - 0.4 * logistic(STEPS, 1000, 30)
    prefix_step = 0.03 + 0.8 * logistic(STEPS, 950, 30)
    flat = -0.1 + 0.0 * STEPS
    frame = pd.concat([frame_of("two", icl_step), frame_of("two", prefix_step,
                                                           "prefix_matching"),
                       frame_of("one", flat), frame_of("one", 0.03 + 0.0 * STEPS,
                                                       "prefix_matching")])
    table = phase_changes(frame)
    assert set(table["signal"]) == {"icl_score", "prefix_matching"}  # no loss rows: skipped
    found = table.set_index(["run", "signal"])["detected"].to_dict()
    assert found == {("one", "icl_score"): False, ("one", "prefix_matching"): False,
                     ("two", "icl_score"): True, ("two", "prefix_matching"): True}
    co = co_occurrence_table(frame).set_index("run")
    assert co.loc["two", "both"] and co.loc["two", "overlap_steps"] > 0
    assert co.loc["two", "lag_steps"] == pytest.approx(-50, abs=25)  # prefix jumps 50 earlier
    assert not co.loc["one", "both"]


# ----------------------------------------------------------------------------- errors
def test_signal_curve_errors():
    frame = pd.concat([frame_of("a", 0.0 * STEPS), frame_of("b", 0.0 * STEPS)])
    with pytest.raises(EvalError, match="pass run="):
        signal_curve(frame, "icl_score")
    with pytest.raises(EvalError, match="not in the frame"):
        signal_curve(frame, "icl_score", run="c")
    with pytest.raises(EvalError, match="unknown signal"):
        signal_curve(frame, "bogus", run="a")
    with pytest.raises(EvalError, match="'losses' metric"):
        signal_curve(frame, "loss", run="a")
    assert len(signal_curve(frame, "icl_score", run="a")) == len(STEPS)


@pytest.mark.parametrize("kwargs, message", [
    ({"direction": 0}, "direction"),
    ({"direction": 1, "min_outside": 1}, "min_outside"),
    ({"direction": 1, "max_width": 0}, "max_width"),
    ({"direction": 1, "min_snr": -1}, "min_snr"),
])
def test_detection_params_validation(kwargs, message):
    with clear_error(message):
        DetectionParams(**kwargs)


def test_fit_window_input_errors():
    with pytest.raises(EvalError, match="strictly increasing"):
        fit_window(np.array([0, 2, 1, 3, 4.0]), np.zeros(5), BUMP_LIKE)
    with pytest.raises(EvalError, match="non-finite"):
        fit_window(np.arange(5.0), np.array([0, np.nan, 0, 0, 0]), BUMP_LIKE)
    with pytest.raises(EvalError, match="one length"):
        fit_window(np.arange(5.0), np.zeros(4), BUMP_LIKE)
