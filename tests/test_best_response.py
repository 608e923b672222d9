"""Exact best responses against closed forms and against brute force on a fine hours grid."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration.gb2 import gb2_quantile
from public_finance.economy import IsoelasticPreferences, LinearPreferences, best_response, calibrate_disutility, settle
from public_finance.taxes import TaxSchedule, bracket_set

PAPER = LinearPreferences()


def interior_hours(skill, rate, c=0.0005, delta=3.5):
    return (skill * (1 - rate) / (c * delta)) ** (1 / (delta - 1))


def test_paper_interior_optimum_closed_form():
    skills = np.array([20.0, 50.0, 80.0, 120.0])
    for rate in (0.0, 0.3, 0.75):
        hours = best_response(skills, TaxSchedule([0.0], [rate]), 0.0, PAPER)
        assert hours == pytest.approx(interior_hours(skills, rate), abs=1e-6)
        assert np.all(hours < 100)


def test_paper_hours_elasticity():
    skill, rate, d = np.array([60.0]), 0.3, 1e-6
    up = best_response(skill, TaxSchedule([0.0], [rate - d]), 0.0, PAPER)[0]
    down = best_response(skill, TaxSchedule([0.0], [rate + d]), 0.0, PAPER)[0]
    elasticity = (np.log(up) - np.log(down)) / (np.log(1 - rate + d) - np.log(1 - rate - d))
    assert elasticity == pytest.approx(1 / (3.5 - 1), abs=1e-3)


def test_paper_grid_parity():
    skills = gb2_quantile(np.random.RandomState(42).uniform(size=100)) / 40
    hours = best_response(skills, bracket_set("three").schedule([0.5] * 3), 0.0, PAPER, grid=10)
    assert set(np.unique(hours)) <= set(np.arange(0, 101, 10.0))
    assert hours.mean() == pytest.approx(92.9, abs=0.05)


schedules = st.integers(1, 7).flatmap(lambda n: st.tuples(
    st.lists(st.floats(2_000, 400_000), min_size=n - 1, max_size=n - 1, unique=True),
    st.lists(st.floats(0, 1), min_size=n, max_size=n),
    st.sampled_from([0.0, 15_750.0]),
)).map(lambda t: TaxSchedule(np.concatenate([[0.0], np.sort(t[0])]), t[1], t[2]))

FINE = np.arange(0.0, 100.0 + 1e-9, 0.01)


def assert_no_grid_point_beats(skills, schedule, rebate, prefs):
    hours = best_response(skills, schedule, rebate, prefs)
    assert np.all((hours >= 0) & (hours <= 100))
    best = settle(skills, hours, schedule, rebate, prefs).utility
    for skill, value in zip(skills, best, strict=True):
        grid = settle(np.full(FINE.size, skill), FINE, schedule, rebate, prefs).utility
        assert grid.max() <= value + 1e-9 * max(1.0, abs(value))


@settings(max_examples=60, deadline=None)
@given(schedules, st.lists(st.floats(5, 20_000), min_size=1, max_size=4), st.floats(0, 40_000))
def test_paper_optimum_beats_fine_grid(schedule, skills, rebate):
    assert_no_grid_point_beats(np.array(skills), schedule, rebate, PAPER)


CALIBRATED = IsoelasticPreferences(kappa=1.88e-6)


@settings(max_examples=60, deadline=None)
@given(schedules, st.lists(st.floats(5, 20_000), min_size=1, max_size=4), st.floats(0, 40_000),
       st.sampled_from([0.5, 1.0, 2.0]))
def test_calibrated_optimum_beats_fine_grid(schedule, skills, rebate, eta):
    prefs = IsoelasticPreferences(kappa=1.88e-6 if eta == 1.0 else 1e-6, eta=eta)
    assert_no_grid_point_beats(np.array(skills), schedule, rebate, prefs)


def test_convex_and_general_paths_agree():
    """Progressive schedules take the segment-threshold path; compare with all-segment search."""
    rng = np.random.default_rng(5)
    skills = gb2_quantile(rng.random(2000)) / 40
    schedule = bracket_set("us_2025_single").schedule()
    fast = best_response(skills, schedule, 7000.0, CALIBRATED)
    lower, upper, rates = schedule.segments()
    virtual = 7000.0 + rates * lower - schedule.tax(lower)
    s = skills[:, None]
    hours = CALIBRATED.segment_optimum(s * (1 - rates), virtual, np.minimum(lower / s, 100), np.minimum(upper / s, 100))
    utility = CALIBRATED.utility(s * (1 - rates) * hours + virtual + CALIBRATED.base_consumption, hours)
    utility[lower[None, :] >= s * 100] = -np.inf
    assert fast == pytest.approx(hours[np.arange(skills.size), utility.argmax(1)], abs=1e-8)


def test_calibration_puts_median_worker_at_40_hours():
    skills = gb2_quantile(np.random.default_rng(9).random(5001)) / 40
    schedule = bracket_set("us_2025_single").schedule()
    prefs = calibrate_disutility(skills, schedule)
    from public_finance.economy import equilibrium
    outcome = equilibrium(skills, schedule, prefs)
    median = np.argsort(skills)[skills.size // 2]
    assert outcome.hours[median] == pytest.approx(40.0, abs=1e-6)
