"""Saez formulas against closed forms and published figures; the oracle and the black box."""

import numpy as np
import pytest

from calibration.gb2 import gb2_quantile
from public_finance.economy import LinearPreferences, equilibrium
from public_finance.optimal_tax import (BlackBoxOptimizer, abc_rate, oracle_rates, pattern_search,
                                        population_oracle_rates, public_funds_weights, reference_elasticities,
                                        reference_saez_rates, saez_rate, saez_top_rate, stackelberg_evaluator)
from public_finance.taxes import bracket_set


def spec_population():
    """The reference's N = 100 GB2 draws with numpy seed 42 (spec section 10)."""
    return gb2_quantile(np.random.RandomState(42).uniform(size=100)) / 40


def test_diamond_saez_top_rate():
    assert saez_rate(0.0, 1.5, 0.25) == pytest.approx(0.7273, abs=1e-4)


@pytest.fixture(scope="module")
def pareto_incomes():
    rng = np.random.default_rng(2024)
    return (1.0 - rng.random(1_000_000)) ** (-1.0 / 2.0)  # Pareto(a = 2, z_min = 1)


def test_abc_schedule_on_pareto_incomes(pareto_incomes):
    """tau(z) = (1 - 1/z) / (1 - 1/z + a e) for Pareto(a) incomes with 1/z weights."""
    z = pareto_incomes
    rates = abc_rate([1.25, 2.0, 4.0, 8.0], z, 1.0 / z, 0.5)
    assert rates == pytest.approx([0.1667, 0.3333, 0.4286, 0.4667], abs=0.01)


def test_top_rate_on_pareto_incomes_without_income_effects(pareto_incomes):
    """Pareto(2) above z* = 4, weights 1.5 / z (mean 1): g = E[w (z - z*)] / E[z - z*] = 1.5 (1/3) / 4 = 1/8, and
    with e_u = e_c = 0.5, a = 2: (1 - g) / (1 - g + e_u + e_c (a - 1)) = 0.875 / 1.875."""
    z = pareto_incomes
    assert saez_top_rate(z, 1.5 / z, 0.5, 0.5, 4.0) == pytest.approx(0.875 / 1.875, abs=0.01)


def test_saez_top_rate_with_income_effects(pareto_incomes):
    """(1 - g) / (1 - g + e_u + e_c (a - 1)): e_u = 0.2, e_c = 0.25, a = 2, g = 0 gives 0.690; without
    income effects (e_u = e_c) it is the Diamond-Saez form 1 / (1 + a e)."""
    z = pareto_incomes
    assert saez_top_rate(z, 0.0, 0.25, 0.2, 4.0) == pytest.approx(1 / 1.45, abs=0.01)
    assert saez_top_rate(z, 0.0, 0.25, 0.25, 4.0) == pytest.approx(0.6667, abs=0.01)
    assert np.isnan(saez_top_rate(z, 0.0, 0.25, 0.2, 2 * z.max()))


def test_public_funds_weights_balance_the_rebate():
    """mean(g + eta T'/(1 - T')) = 1: a dollar of rebate is worth what it costs."""
    rng = np.random.default_rng(4)
    eta, rates = -rng.uniform(0, 0.3, 50), rng.uniform(0, 0.6, 50)
    g = public_funds_weights(rng.uniform(0.2, 3, 50), eta, rates)
    assert np.mean(g + eta * rates / (1 - rates)) == pytest.approx(1.0)
    assert public_funds_weights([1.0, 3.0], [0.0, 0.0], [0.2, 0.4]).tolist() == [0.5, 1.5]


@pytest.mark.parametrize(("brackets", "variant", "elasticity", "expected"), [
    ("three", "saez", None, [50.03, 21.26, 3.23]),
    ("three", "three", None, [94.35, 88.05, 14.93]),
    ("us_2024_single", "saez", None, [87.4, 62.5, 33.8, 18.9, 13.0, 13.4, 3.23]),
    ("us_2024_single", "saez", [0.4] * 7, [98.1, 92.6, 79.3, 63.5, 52.8, 53.6, 20.0]),
])
def test_reference_estimator_reproduces_spec(brackets, variant, elasticity, expected):
    edges = bracket_set(brackets).edges
    rates = reference_saez_rates(spec_population(), edges, reference_elasticities(variant, len(edges), elasticity))
    assert 100 * rates == pytest.approx(expected, abs=0.051)


def test_reference_elasticity_options():
    assert reference_elasticities("saez", 3, [0.4]).tolist() == [3.0, 3.0, 3.0]
    assert reference_elasticities("flat", 1).tolist() == [0.4]
    with pytest.raises(ValueError, match="saez_variant"):
        reference_elasticities("three", 7)


def test_spec_table_equilibria():
    """Spec section 10: discrete best responses, paper utility, SWF = sum u / max(z, 1)."""
    skills, prefs = spec_population(), LinearPreferences()
    cases = [("three", [0.5] * 3, 92.9, 650.9), ("three", [0.9] * 3, 71.7, 1959),
             ("us_2024_single", None, 96.2, 275.0), ("three", [1.0, 0.9, 0.9], 31.8, 5.73e6)]
    for brackets, rates, hours, swf in cases:
        outcome = equilibrium(skills, bracket_set(brackets).schedule(rates, deduction=False), prefs, grid=10)
        assert outcome.hours.mean() == pytest.approx(hours, abs=0.05)
        assert np.sum(outcome.utility / np.maximum(outcome.income, 1)) == pytest.approx(swf, rel=1e-3)


def test_oracle_finds_the_paper_zero_hours_exploit():
    evaluate = stackelberg_evaluator(spec_population(), bracket_set("three").schedule(deduction=False),
                                     LinearPreferences(), "paper_swf", cap=100, grid=10)
    rates, value = oracle_rates(evaluate, 3, np.random.default_rng(0))
    assert rates.tolist() == [1.0, 0.9, 0.9]
    assert value == pytest.approx(5.73e6, rel=1e-3)


def test_global_oracle_finds_known_optimum():
    target = np.array([0.2, 0.7, 0.4, 0.9, 0.1])
    rates, value = oracle_rates(lambda r: -np.sum((r - target) ** 2), 5, np.random.default_rng(1),
                                max_evaluations=3000)
    assert rates == pytest.approx(target, abs=1e-3)


def test_pattern_search_follows_a_ridge_to_the_grid_optimum():
    """A narrow diagonal ridge stops one-rate-at-a-time moves; the pair moves reach the optimum."""
    target = np.array([0.37, 0.52, 0.18, 0.66, 0.05])

    def ridge(r):
        d = r - target
        return -np.sum(d ** 2) - 400 * (d[0] - d[1]) ** 2 - 400 * (d[2] + d[3]) ** 2

    rates, value = pattern_search(ridge, [0.9, 0.1, 0.9, 0.1, 0.9])
    assert rates == pytest.approx(target, abs=1e-9) and value == pytest.approx(0.0, abs=1e-12)
    again, _ = population_oracle_rates(ridge, [0.9, 0.1, 0.9, 0.1, 0.9])
    assert again == pytest.approx(target, abs=1e-9)


def test_black_box_improves_from_realised_values_only():
    target = np.array([0.3, 0.6, 0.45])
    optimizer = BlackBoxOptimizer([0.9, 0.1, 0.9], np.random.default_rng(3))
    rates = optimizer.proposal
    start = -np.sum((rates - target) ** 2)
    for _ in range(300):
        optimizer.tell(-np.sum((rates - target) ** 2))
        rates = optimizer.ask()
    assert -optimizer.best_value < 0.01 * -start
    assert np.all((optimizer.best() >= 0) & (optimizer.best() <= 1))
