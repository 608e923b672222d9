"""EconomyModel as a Mesa model: stages, timing, data collection, reproducibility, batch_run, bad input."""

import mesa
import numpy as np
import pandas as pd
import pytest

from agents.planner import PlannerAgent
from agents.worker import WorkerAgent
from calibration.gb2 import gb2_quantile
from model.model import EconomyModel


def run(model):
    while model.running:
        model.step()
    return model


def test_defaults_construct_and_run():
    model = run(EconomyModel(workers=50, max_steps=30, rng=1))
    assert model.time == 30 and not model.running
    assert len(model.agents_by_type[WorkerAgent]) == 50 and len(model.agents_by_type[PlannerAgent]) == 1
    frame = model.datacollector.get_model_vars_dataframe()
    assert len(frame) == 31
    for column in ("objective", "paper_swf", "utilitarian", "inverse_skill", "rawlsian", "atkinson", "gini_pre_tax",
                   "gini_post_tax", "mean_income", "equality_productivity", "mean_hours", "median_hours",
                   "share_zero_hours", "share_at_cap", "revenue", "rebate", *(f"rate_{j}" for j in range(1, 8))):
        assert column in frame.columns
    assert frame["rate_1"].iloc[-1] == 0.10 and frame["rate_7"].iloc[-1] == 0.37


def test_calibrated_us_2025_hours():
    """Calibrated preset under US 2025 statutory rates: median 40 +/- 1 h, < 5% at the cap."""
    model = EconomyModel(workers=2000, planner="us_federal", max_steps=5, agent_interval=0, rng=7)
    run(model)
    assert abs(model.median_hours - 40.0) <= 1.0
    assert model.share_at_cap < 0.05


@pytest.mark.slow  # an oracle at a user's size
def test_default_objective_oracle_keeps_people_working():
    model = EconomyModel(workers=300, planner="oracle", planner_options={"max_evaluations": 1200}, max_steps=3,
                         agent_interval=0, rng=3)
    run(model)
    assert model.share_zero_hours < 0.10
    baseline = run(EconomyModel(workers=300, planner="us_federal", max_steps=3, agent_interval=0, rng=3))
    assert model.objective > baseline.objective


def test_paper_oracle_finds_zero_hours_exploit():
    skills = gb2_quantile(np.random.RandomState(42).uniform(size=100)) / 40
    model = run(EconomyModel(preset="paper", skills=skills, planner="oracle", max_steps=2))
    assert model.schedule.rates.tolist() == [1.0, 0.9, 0.9]
    assert model.share_zero_hours == pytest.approx(0.68)
    assert model.paper_swf == pytest.approx(5.73e6, rel=1e-3)


def test_planner_acts_at_tax_year_boundaries_only():
    model = EconomyModel(workers=30, planner="blackbox", tax_year_length=5, max_steps=21, rng=2)
    initial = model.schedule.rates.copy()
    changes = []
    for _ in range(21):
        before = model.schedule.rates.copy()
        model.step()
        if not np.array_equal(before, model.schedule.rates):
            changes.append(model.period)
    assert np.array_equal(model.planner.history[0][1], initial)
    assert changes and set(changes) <= {5, 10, 15, 20}
    assert [period for period, _ in model.planner.history[1:]] == [5, 10, 15, 20]


def test_agent_interval():
    model = run(EconomyModel(workers=10, max_steps=6, agent_interval=3, rng=1))
    frame = model.datacollector.get_agenttype_vars_dataframe(WorkerAgent)
    assert sorted(frame.index.get_level_values("Step").unique()) == [0.0, 3.0, 6.0]
    assert set(frame.columns) >= {"skill", "hours", "income", "tax", "utility"}
    row = frame.xs(6.0, level="Step").iloc[0]
    assert row["income"] == pytest.approx(row["skill"] * row["hours"])
    off = run(EconomyModel(workers=10, max_steps=3, agent_interval=0, rng=1))
    with pytest.warns(UserWarning, match="No agent-type reporters"):
        assert off.datacollector.get_agenttype_vars_dataframe(WorkerAgent).empty


def test_same_rng_same_data_different_rng_different():
    def frame(seed):
        return run(EconomyModel(workers=40, planner="blackbox", tax_year_length=3, max_steps=12, rng=seed)) \
            .datacollector.get_model_vars_dataframe()
    pd.testing.assert_frame_equal(frame(11), frame(11))
    assert not frame(11).equals(frame(12))


def test_batch_run():
    results = mesa.batch_run(EconomyModel, {"workers": [10, 20], "planner": ["us_federal", "fixed"],
                                            "agent_interval": 0, "max_steps": 4},
                             rng=[1, 2], max_steps=4, display_progress=False)
    frame = pd.DataFrame(results)
    assert len(frame) == 8
    assert set(map(tuple, frame[["workers", "planner", "rng"]].values)) == {
        (w, p, r) for w in (10, 20) for p in ("us_federal", "fixed") for r in (1, 2)}
    assert (frame["Step"] == 4.0).all() and frame["objective"].notna().all()


def test_worker_agents_read_their_row():
    model = EconomyModel(workers=5, max_steps=2, rng=4)
    model.step()
    agent = model.workers.to_list()[2]
    assert agent.income == pytest.approx(agent.skill * agent.hours)
    assert agent.utility == model.workforce.utility[agent.index]


@pytest.mark.parametrize(("kwargs", "field", "allowed"), [
    ({"workers": 0}, "workers", ">= 1"),
    ({"workers": -3}, "workers", ">= 1"),
    ({"preset": "nordic"}, "preset", "calibrated, paper"),
    ({"brackets": "uk"}, "brackets", "three, flat, us_2024_single, us_2025_single"),
    ({"planner": "king"}, "planner", "fixed, us_federal, saez_reference, saez, oracle, blackbox"),
    ({"objective": "gdp"}, "objective", "paper_swf, utilitarian"),
    ({"worker_mind": "psychic"}, "worker_mind", "rational"),
    ({"initial_rates": [0.1, 0.2, 1.5, 0.1, 0.1, 0.1, 0.1]}, "initial_rates", "[0, 1]"),
    ({"planner": "fixed", "planner_options": {"rates": [-0.1] * 7}}, "rates", "[0, 1]"),
    ({"tax_year_length": 0}, "tax_year_length", ">= 1"),
    ({"tax_year_length": -5}, "tax_year_length", ">= 1"),
    ({"max_steps": 0}, "max_steps", ">= 1"),
    ({"agent_interval": -1}, "agent_interval", ">= 0"),
    ({"preset": "paper", "planner": "us_federal"}, "planner", "us_2024_single or us_2025_single"),
    ({"skills": [10.0, -1.0]}, "skills", "positive"),
    ({"population": "mars"}, "population", "paper_gb2"),
])
def test_bad_input_names_field_and_allowed_values(kwargs, field, allowed):
    with pytest.raises(ValueError) as error:
        EconomyModel(**kwargs)
    message = str(error.value)
    assert message.startswith(f"{field}:") and allowed in message
