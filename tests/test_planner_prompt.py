"""Does the LLM planner's prompt carry what a competent planner needs?

A proxy planner (a coordinate search written here, not a language model) reads nothing but the prompt's
text. Served through the test server, it must find most of the welfare the oracle finds; this checks the
information in the prompt, not any LLM.
"""

import re

import numpy as np
import pytest

from agents.llm_minds import LLMPlannerRule
from model.model import EconomyModel
from public_finance.optimal_tax import stackelberg_evaluator
from tests.llm_server import FaultServer

pytestmark = pytest.mark.slow  # oracles at the sizes users run: seconds of CPU each, not in the quick subset

YEAR_LINE = re.compile(r"^year (\d+): rates % ([\d ]+) \| objective ([-+\d.]+)", re.M)
WORKERS, SEED, TAX_YEAR, YEARS = 200, 1, 10, 60


class CoordinateSearchProxy:
    """Proxy planner, not an LLM: coordinate search in whole percent, from the prompt's text alone.

    Each tax year it reads the last year's rates and objective. A move of one rate by the current step
    that improves on the best year is repeated; one that does not is followed by the opposite move, then
    by the next rate. After each sweep over the rates the step falls (8, 4, 2, 1 points). On the final
    cue it answers the best rates seen.
    """

    def __init__(self, steps=(8, 4, 2, 1)):
        self.steps = list(steps)
        self.best, self.best_value = None, -np.inf
        self.bracket, self.sign, self.advanced = 0, 1, False
        self.prompts: list[str] = []

    def _next_move(self, n: int) -> None:
        if self.sign > 0 and not self.advanced:
            self.sign = -1
            return
        self.sign, self.advanced = 1, False
        self.bracket += 1
        if self.bracket == n:
            self.bracket = 0
            if len(self.steps) > 1:
                self.steps.pop(0)

    def __call__(self, messages: list[dict]) -> dict:
        user = messages[-1]["content"]
        self.prompts.append(user)
        _, shown, value = YEAR_LINE.findall(user)[-1]
        rates, value = np.array([int(r) for r in shown.split()]), float(value)
        if self.best is None or value > self.best_value:
            self.advanced = self.best is not None
            self.best, self.best_value = rates, value
        else:
            self._next_move(rates.size)
        if "Choose the best" in user:
            return {"rates": self.best.tolist(), "reason": "best seen"}
        for _ in range(4 * rates.size):  # skip moves that a bound makes empty
            proposal = self.best.copy()
            proposal[self.bracket] = np.clip(proposal[self.bracket] + self.sign * self.steps[0], 0, 100)
            if not np.array_equal(proposal, self.best):
                break
            self._next_move(rates.size)
        return {"rates": proposal.tolist(), "reason": "coordinate search"}


def shown_objectives(rule: LLMPlannerRule, model) -> list[float]:
    return [float(v) for _, _, v in YEAR_LINE.findall(rule.messages(model)[-1]["content"])]


def evaluator(model):
    """The objective at the rational equilibrium of the model's own workers, as a function of the rates."""
    return stackelberg_evaluator(model.workforce.skill, model.schedule, model.preferences, model.objective_name,
                                 cap=model.hours_cap, grid=model.hours_grid)


@pytest.fixture(scope="module")
def oracle():
    """The default (population) oracle for the run's population and seed."""
    return EconomyModel(workers=WORKERS, planner="oracle", max_steps=1, agent_interval=0, rng=SEED)


def test_one_point_moves_near_the_optimum_show_in_the_prompt(oracle):
    """Every single-bracket one-point move from the oracle's rates that changes the objective changes
    the number the planner reads (at 6 significant digits some of them would not)."""
    model = oracle
    evaluate = evaluator(model)
    rule = LLMPlannerRule()
    rule.initial_rates(model)
    start = np.round(100 * model.schedule.rates).astype(int)
    hidden_at_six_digits = 0
    for j in range(start.size):
        for step in (1, -1):
            moved = start.copy()
            moved[j] = np.clip(moved[j] + step, 0, 100)
            values = [evaluate(start / 100), evaluate(moved / 100)]
            rule.years = [{"year": k, "rates": tuple(r / 100), "objective": v, "mean_hours": 40.0, "gini": 0.3}
                          for k, (r, v) in enumerate(zip((start, moved), values))]
            shown = shown_objectives(rule, model)
            assert shown == pytest.approx(values, rel=1e-9)
            if abs(values[1] - values[0]) > 1e-9 * abs(values[0]):  # more than float noise
                assert shown[1] != shown[0], f"bracket {j + 1}, {step:+d} point: {values}"
                hidden_at_six_digits += f"{values[0]:.6g}" == f"{values[1]:.6g}"
            else:
                assert values[1] == values[0]  # a change too small to show would leave the planner blind
    assert hidden_at_six_digits > 0  # the moves are small enough to need the extra digits


def test_paper_mode_keeps_the_paper_objective_text():
    model = EconomyModel(workers=20, preset="paper", prompt_mode="paper", max_steps=1, agent_interval=0, rng=SEED)
    rule = LLMPlannerRule()
    rule.initial_rates(model)
    rule.years = [{"year": 0, "rates": (0.5, 0.5, 0.5), "objective": 650.912345, "mean_hours": 92.9, "gini": 0.3}]
    assert "objective 650.912 | mean hours 92.9" in rule.messages(model)[-1]["content"]


def test_proxy_planner_reading_only_the_prompt_closes_most_of_the_gap_to_the_oracle(oracle):
    """A 200-worker rational run with the proxy as its LLM planner (through the test server), from the US
    federal rates: after 60 tax years at least 75 % of the welfare gap to the population oracle is closed."""
    proxy = CoordinateSearchProxy()
    with FaultServer(script=proxy) as server:
        model = EconomyModel(workers=WORKERS, worker_mind="rational", planner="llm", tax_year_length=TAX_YEAR,
                             max_steps=YEARS * TAX_YEAR, agent_interval=0, base_url=server.base_url,
                             llm_model="fault-model", llm_store=None, llm_store_mode="off", rng=SEED)
        try:
            start = model.schedule.rates.copy()
            while model.running:
                model.step()
        finally:
            model.close()
        requests = server.stats()["requests"]
    assert requests == YEARS - 1 and model.planner.rule.failures == 0
    assert np.array_equal(start, model.bracket_set.default_rates)
    assert np.array_equal(oracle.workforce.skill, model.workforce.skill)
    welfare = evaluator(model)
    final = model.schedule.rates
    assert np.array_equal(np.round(100 * final), proxy.best)
    closed = (welfare(final) - welfare(start)) / (welfare(oracle.schedule.rates) - welfare(start))
    assert closed >= 0.75, f"closed {closed:.1%} of the gap; final rates {np.round(100 * final)}"
