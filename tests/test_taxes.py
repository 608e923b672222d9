"""Tax schedules against statutory liabilities, and their algebraic properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from public_finance.taxes import BRACKET_SETS, TaxSchedule, bracket_set


def test_2025_single_taxable_100k():
    schedule = bracket_set("us_2025_single").schedule(deduction=False)
    assert schedule.tax(100_000.0) == pytest.approx(16_914.00, abs=0.005)


def test_2024_single_taxable_50k():
    schedule = bracket_set("us_2024_single").schedule(deduction=False)
    assert schedule.tax(50_000.0) == pytest.approx(6_053.00, abs=0.005)


def test_2025_single_wages_with_standard_deduction():
    schedule = bracket_set("us_2025_single").schedule()
    assert schedule.deduction == 15_750.0
    assert schedule.tax(115_750.0) == pytest.approx(16_914.00, abs=0.005)
    assert schedule.tax(15_000.0) == 0.0 and schedule.marginal_rate(15_000.0) == 0.0


def test_named_sets():
    assert BRACKET_SETS.names() == ("three", "flat", "us_2024_single", "us_2025_single")
    assert bracket_set("three").edges == (0.0, 90_000.0, 159_100.0)
    assert bracket_set("flat").edges == (0.0,)
    assert bracket_set("us_2024_single").default_rates == (0.10, 0.12, 0.22, 0.24, 0.32, 0.35, 0.37)
    assert bracket_set("us_2024_single").edges[1:] == (11_600, 47_150, 100_525, 191_950, 243_725, 609_350)


def test_vectorised_matches_scalar():
    schedule = bracket_set("us_2025_single").schedule()
    incomes = np.array([0.0, 10_000.0, 50_000.0, 250_000.0, 2e6])
    assert np.array_equal(schedule.tax(incomes), np.array([schedule.tax(z) for z in incomes]))
    assert np.array_equal(schedule.marginal_rate(incomes), np.array([schedule.marginal_rate(z) for z in incomes]))


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"edges": [10, 20], "rates": [0.1, 0.2]}, "edges"),
    ({"edges": [0, 20, 10], "rates": [0.1, 0.2, 0.3]}, "edges"),
    ({"edges": [0, 10], "rates": [0.1]}, "rates"),
    ({"edges": [0, 10], "rates": [0.1, 1.2]}, "rates"),
    ({"edges": [0, 10], "rates": [-0.1, 0.2]}, "rates"),
    ({"edges": [0, 10], "rates": [0.1, 0.2], "deduction": -5}, "deduction"),
])
def test_invalid_schedule_names_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        TaxSchedule(**kwargs)


def test_unknown_bracket_set_lists_allowed():
    with pytest.raises(ValueError, match=r"brackets: .*allowed: three, flat, us_2024_single, us_2025_single"):
        bracket_set("us_1913")


schedules = st.integers(1, 7).flatmap(lambda n: st.tuples(
    st.lists(st.floats(1_000, 300_000), min_size=n - 1, max_size=n - 1, unique=True),
    st.lists(st.floats(0, 1), min_size=n, max_size=n),
    st.sampled_from([0.0, 15_750.0]),
)).map(lambda t: TaxSchedule(np.concatenate([[0.0], np.sort(t[0])]), t[1], t[2]))


@settings(max_examples=200, deadline=None)
@given(schedules, st.floats(0, 2e6))
def test_properties(schedule, z):
    kinks = schedule.segments()[0][1:]  # incomes where the marginal rate can change
    tax = schedule.tax(z)
    assert 0.0 <= tax <= schedule.rates.max() * z + 1e-6
    eps = 1e-3
    assert abs(schedule.tax(z + 1e-7) - tax) < 1e-6
    assert schedule.tax(z + 1.0) >= tax
    if np.all(np.abs(kinks - z) > 2 * eps) and z > 2 * eps:
        slope = (schedule.tax(z + eps) - schedule.tax(z - eps)) / (2 * eps)
        assert slope == pytest.approx(schedule.marginal_rate(z), abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(schedules)
def test_continuous_at_kinks(schedule):
    for kink in schedule.segments()[0][1:]:
        assert abs(schedule.tax(kink + 1e-6) - schedule.tax(kink - 1e-6)) < 1e-5
