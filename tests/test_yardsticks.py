"""The yardsticks against oracles: the consistent Saez planner against Saez's (2001) closed form with
income effects and against the oracle's welfare; the default oracle against the sample it is run on; the
sample oracle against brute force; and the rebate equilibrium's existence against a scan of rebates."""

import itertools

import numpy as np
import pytest

from model.model import EconomyModel
from public_finance.economy import IsoelasticPreferences, LinearPreferences, best_response, equilibrium, settle
from public_finance.taxes import TaxSchedule

pytestmark = pytest.mark.slow  # oracles at the sizes users run: seconds of CPU each, not in the quick subset

SEED = 1


@pytest.mark.parametrize(("preferences", "wage"), [
    (IsoelasticPreferences(kappa=2e-6), [600.0, 1200.0, 2500.0]),
    (IsoelasticPreferences(kappa=1e-9, eta=2.0), [600.0, 1200.0, 2500.0]),
    (LinearPreferences(), [5.0, 15.0, 40.0])])
def test_elasticities_are_those_the_preferences_imply(preferences, wage):
    """Uncompensated elasticity and income effect by finite differences of the optimal hours; Slutsky
    gives the compensated one: e_c = e_u - w dl/dV."""
    wage, virtual = np.array(wage), np.array([3000.0, 15000.0, 40000.0])

    def hours(w, v):
        return preferences.segment_optimum(w, v, np.zeros(3), np.full(3, 100.0))

    base, h = hours(wage, virtual), 1e-6
    uncompensated = (np.log(hours(wage * (1 + h), virtual)) - np.log(hours(wage * (1 - h), virtual))) / (2 * h)
    income_effect = wage * (hours(wage, virtual + 1.0) - hours(wage, virtual - 1.0)) / 2.0
    consumption = wage * base + virtual + preferences.base_consumption
    assert np.all((base > 0) & (base < 100))
    assert preferences.uncompensated_elasticity(base, wage, consumption) == pytest.approx(uncompensated, rel=1e-5)
    assert preferences.compensated_elasticity(base, wage, consumption) == pytest.approx(
        uncompensated - income_effect, rel=1e-5)


@pytest.fixture(scope="module")
def census_5000():
    """The consistent Saez planner and the default oracle on the same 5,000 census workers."""
    options = dict(workers=5000, max_steps=1, agent_interval=0, rng=SEED)
    return EconomyModel(planner="saez", **options), EconomyModel(planner="oracle", **options)


def test_saez_top_rate_is_saez_closed_form_with_income_effects(census_5000):
    """tau = (1 - g) / (1 - g + e_u + e_c (a - 1)) from the equilibrium incomes under the planner's rates,
    with log utility's elasticities e_c = f / (1 + f s), e_u = f (1 - s) / (1 + f s) (s = net earnings /
    consumption) and weights 1/C relative to the marginal value of public funds."""
    model = census_5000[0]
    prefs, schedule = model.preferences, model.schedule
    assert prefs.eta == 1.0 and model.objective_name == "utilitarian"
    out = equilibrium(model.workforce.skill, schedule, prefs, cap=model.hours_cap, grid=model.hours_grid)
    z, rate = out.income, schedule.marginal_rate(out.income)
    share = model.workforce.skill * (1 - rate) * out.hours / out.consumption
    f = prefs.frisch
    e_c, e_u = f / (1 + f * share), f * (1 - share) / (1 + f * share)
    g = (1 / out.consumption) / np.mean(1 / out.consumption) * (1 - np.mean((e_u - e_c) * rate / (1 - rate)))
    threshold = schedule.deduction + schedule.edges[-1]
    top = z >= threshold
    assert top.sum() >= 1
    excess = z[top] - threshold
    a = z[top].mean() / excess.mean()
    g_top = np.average(g[top], weights=excess)
    e_c_top = np.average(e_c[top], weights=z[top])
    e_u_top = e_c_top + np.average((e_u - e_c)[top], weights=excess)
    closed_form = (1 - g_top) / (1 - g_top + e_u_top + e_c_top * (a - 1))
    assert schedule.rates[-1] == pytest.approx(closed_form, abs=0.03)
    without_income_effects = (1 - g_top) / (1 - g_top + a * e_c_top)
    assert abs(without_income_effects - closed_form) > 0.03  # here the income effects matter


def test_saez_welfare_is_within_half_a_percent_of_the_oracle(census_5000):
    """Consumption-equivalent gap, exp(difference in mean log utility) - 1, on the run's own workers."""
    saez, oracle = census_5000
    assert saez.preferences.eta == 1.0 and saez.objective_name == "utilitarian"
    assert np.array_equal(saez.workforce.skill, oracle.workforce.skill)
    assert np.exp(oracle.objective - saez.objective) - 1 < 0.005


def test_default_oracle_does_not_depend_on_the_run_size():
    """The oracle optimises for the population: a 20-worker and a 2,000-worker run of the same source and
    seed get the same rates to within one step of its 1 % grid, in every bracket."""
    small, large = (EconomyModel(workers=n, planner="oracle", max_steps=1, agent_interval=0, rng=SEED)
                    for n in (20, 2000))
    assert small.schedule.n_brackets == 7
    assert np.max(np.abs(small.schedule.rates - large.schedule.rates)) <= 0.01 + 1e-9


def test_sample_oracle_is_the_brute_force_optimum_of_the_sample():
    model = EconomyModel(workers=12, brackets="three", planner="oracle_sample", max_steps=1, agent_interval=0, rng=SEED)
    skills, prefs = model.workforce.skill, model.preferences
    assert model.objective_name == "utilitarian"
    levels = np.round(np.linspace(0.0, 1.0, 11), 10)
    values = {rates: equilibrium(skills, model.schedule.with_rates(np.array(rates)), prefs,
                                 cap=model.hours_cap, grid=model.hours_grid).utility.mean()
              for rates in itertools.product(levels, repeat=3)}
    best = max(values.values())
    assert model.planner.rule.value == pytest.approx(best, rel=1e-12)
    assert values[tuple(model.schedule.rates)] == best
    assert model.objective == pytest.approx(best, rel=1e-9)


def test_missing_rebate_equilibrium_is_reported():
    """With a falling rate one worker's best response jumps across the budget: mean tax minus rebate
    changes sign on a scan of rebates but never comes near zero, and the equilibrium says so."""
    prefs, skills = IsoelasticPreferences(kappa=2e-6), np.array([1100.0])
    falling = TaxSchedule(np.array([0.0, 40_000.0]), np.array([0.9, 0.0]))
    rebates = np.arange(0.0, 40_000.0, 10.0)

    def gaps(schedule):
        return np.array([settle(skills, best_response(skills, schedule, r, prefs), schedule, r, prefs).budget_gap
                         for r in rebates])

    scan = gaps(falling)
    assert scan[0] > 0 > scan[-1] and np.min(np.abs(scan)) > 100
    assert not equilibrium(skills, falling, prefs).balanced
    rising = falling.with_rates([0.1, 0.3])
    result, scan = equilibrium(skills, rising, prefs), gaps(rising)
    assert result.balanced and result.budget_gap == pytest.approx(0.0, abs=1e-4)
    assert abs(rebates[np.argmin(np.abs(scan))] - result.rebate) <= 10.0


def test_the_model_reports_a_missing_rebate_equilibrium():
    """The model's reporter says so instead of letting the rebate swing silently between two states."""
    from model.model import EconomyModel

    def run(rates):
        model = EconomyModel(skills=[2400.0], brackets="three", planner="fixed", planner_options={"rates": rates},
                             max_steps=4, agent_interval=0, rng=1)
        model.run_for(4)
        return model.datacollector.get_model_vars_dataframe()

    falling, rising = run([0.9, 0.0, 0.0]), run([0.1, 0.2, 0.3])
    assert not falling["rebate_equilibrium"].any() and falling["rebate"].diff().abs().iloc[1:].min() > 1000
    assert rising["rebate_equilibrium"].all()
