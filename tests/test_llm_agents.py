"""LLM workers and planner end to end against a scripted OpenAI-compatible server on 127.0.0.1."""

import re

import numpy as np
import pytest

from agents.prompt_styles import PROMPT_STYLES
from agents.prompts import WorkerMemory
from model.model import EconomyModel
from tests.llm_server import FaultServer


def scripted(messages):
    """Hours fall with the marginal rate shown at 40 h; the planner lowers the top rate after a worse year."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if "tax planner" in system:
        years = re.findall(r"rates % ([\d ]+) \| objective ([-\d.e+]+)", user)
        rates = [int(x) for x in years[-1][0].split()]
        worse = len(years) > 1 and float(years[-1][1]) < float(years[-2][1])
        rates[-1] = rates[-1] - 5 if worse else rates[-1] + 5
        return {"rates": rates, "reason": "scripted"}
    rate = int(re.search(r"40 h: marginal rate (\d+)%", user).group(1))
    return {"hours": 60 - rate / 2, "reason": "scripted"}


@pytest.fixture()
def server():
    with FaultServer(script=scripted) as running:
        yield running


def llm_model(server, tmp_path, **kwargs):
    options = dict(workers=20, worker_mind="llm", planner="llm", tax_year_length=3, max_steps=9,
                   base_url=server.base_url, llm_model="fault-model", llm_store=str(tmp_path / "store.sqlite"), rng=1)
    options.update(kwargs)
    return EconomyModel(**options)


def test_scripted_run_gives_predicted_hours_and_rates(server, tmp_path):
    model = llm_model(server, tmp_path)
    skills = model.workforce.skill
    objectives, top = [], [model.schedule.rates[-1]]
    while model.running:
        model.step()
        if model.period % 3 == 0 and model.period > 0:
            worse = len(objectives) > 1 and objectives[-1] < objectives[-2]
            top.append(top[-1] + (-0.05 if worse else 0.05))
        assert model.schedule.rates[-1] == pytest.approx(top[-1])
        marginal = np.round(100 * model.schedule.marginal_rate(40 * skills))
        assert model.workforce.hours == pytest.approx(60 - marginal / 2)
        if (model.period + 1) % 3 == 0:
            objectives.append(model.objective)
    assert [p for p, _ in model.planner.history] == [0, 3, 6]
    assert server.stats()["requests"] == 9 * 20 + 2
    assert model.worker_mind.failures == 0 and model.planner.rule.failures == 0


def test_replay_sends_no_requests_and_gives_the_same_data(server, tmp_path):
    first = llm_model(server, tmp_path)
    while first.running:
        first.step()
    sent = server.stats()["requests"]
    second = llm_model(server, tmp_path)
    while second.running:
        second.step()
    assert server.stats()["requests"] == sent
    assert first.datacollector.get_model_vars_dataframe().equals(second.datacollector.get_model_vars_dataframe())


def test_archetypes_one_request_each_and_members_follow(server, tmp_path):
    model = llm_model(server, tmp_path, workers=200, archetypes=7, planner="us_federal", max_steps=2)
    labels = model.worker_mind.archetypes.labels
    for _ in range(2):
        before = server.stats()["requests"]
        model.step()
        assert server.stats()["requests"] - before == 7
        representatives = model.worker_mind.archetypes.representatives
        assert model.workforce.hours == pytest.approx(model.workforce.hours[representatives][labels])


def test_failures_keep_last_hours_and_are_counted(tmp_path):
    with FaultServer(fault_rate=1.0, faults=("refusal",)) as server:
        model = llm_model(server, tmp_path, planner="us_federal", max_steps=2)
        model.step()
    assert model.workforce.hours == pytest.approx(np.full(20, 40.0))
    assert model.worker_mind.failures == 20


def paper_messages(**overrides):
    history = [WorkerMemory(k, (0.5, 0.5, 0.5), 100.0, h, 100.0 * h, 50.0 * h, 3000.0, 50.0 * h + 3000.0, u)
               for k, (h, u) in enumerate([(40, 10.0), (50, 12.0), (60, 11.0), (60, 11.0)])]
    options = dict(worker=3, skill=100.0, history=history, history_length=50, exploit=False)
    options.update(overrides)
    return PROMPT_STYLES["paper"]().worker_messages(**options)


@pytest.mark.parametrize("element", [
    "You are worker_3, a citizen of Princetonia", "Your skill level is 100.00 with an expected income of 4000.00",
    "maximize your isoelastic utility: u = z~ - c * l^d", "sufficiently explore different amounts of LABOR",
    '{"LABOR": "X"}'])
def test_paper_worker_system_prompt(element):
    assert element in paper_messages()[0]["content"]


@pytest.mark.parametrize("element", [
    "Historical data:", "TAX: = [50, 50, 50]", "skill: s = 100.00", "LABOR: = 50",
    "pre-tax income: z = s * l = 5000.00", "tax_i = 2500.00", "rebate = 3000.00",
    "post-tax income: z~ = z - tax_i + rebate = 5500.00", "utility: u = z~ - c * l^d = 12.00",
    "Increasing labor increased utility. This implies labor l is too low and needs to be increased above l=50.",
    "Increasing labor decreased utility. This implies labor l is too high and needs to be decreased below l=60.",
    "Best 5 timesteps:", "The running average LABOR choice historically was LABOR=50 hours",
    "average utility u=11.00", "Balance exploration and exploitation",
    "Next year, you may perform LABOR: [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100] hours"])
def test_paper_worker_user_prompt(element):
    assert element in paper_messages()[1]["content"]


def test_paper_worker_exploit_cue_and_history_window():
    user = paper_messages(exploit=True, history_length=2)[1]["content"]
    assert "Choose the best LABOR" in user and "Timestep 0:\n" not in user.split("Best 5")[0]


def test_improved_prompt_carries_persona_and_schedule(server, tmp_path):
    model = llm_model(server, tmp_path, planner="us_federal", max_steps=1)
    model.step()
    messages, _ = model.worker_mind.last_exchange[0]
    user = messages[1]["content"]
    assert model.workers_persona(0) in user
    assert "Tax brackets this year: [0, 11,925): 10.0%" in user and "take-home" in user


def test_improved_prompt_shares_its_prefix_and_bounds_its_history(server, tmp_path):
    model = llm_model(server, tmp_path, planner="us_federal", max_steps=14)
    lengths = []
    while model.running:
        model.step()
        lengths.append(len(model.worker_mind.last_exchange[0][0][1]["content"]))
    first, second = (model.worker_mind.last_exchange[i][0] for i in (0, 1))
    assert first[0] == second[0]
    shared = first[1]["content"].split("\n")[0]
    assert shared.startswith("Tax brackets this year:") and second[1]["content"].startswith(shared + "\nYou: ")
    user = first[1]["content"]
    assert "Your recent years:\n" in user  # one step is a year of the worker's work, labelled as such
    assert user.count("\nyear ") == 8 and "\nyear 12: " in user and "\nyear 4: " not in user
    memory = model.worker_mind.memory[0][-2]  # the last prompt (step 13) shows steps 5 to 12
    assert f"year 12: {memory.hours:.1f} h, marginal rate {100 * memory.marginal_rate:.0f}%" in user
    assert max(lengths[9:]) - min(lengths[9:]) < 40  # a full window: the prompt no longer grows


def civic(messages):
    """Scripted answers for the bounded and democratic stages (and labour/planner as ``scripted``)."""
    user = messages[-1]["content"]
    me = re.search(r"worker_(\d+)", messages[0]["content"] + user)
    me = int(me.group(1)) if me else -1
    if "are you satisfied" in user:
        tax = float(re.search(r"tax_i = ([-\d.]+)", user).group(1))
        rebate = float(re.search(r"rebate = ([-\d.]+)", user).group(1))
        return {"thought": "scripted", "ANSWER": "YES" if tax < rebate else "NO"}
    if "Decide if you want to run" in user:
        n = len(re.search(r"Current TAX: \[([^\]]*)\]", user).group(1).split(","))
        return {"run": me < 3, "rates": [10.0 * (me + 1)] * n if me < 3 else []}
    if "Candidates and their platforms" in user:
        return {"vote": 1 if me % 3 == 0 else 0, "reason": "scripted"}
    if "This year you set the marginal tax rates" in user:
        n = len(re.search(r"Current TAX: \[([^\]]*)\]", user).group(1).split(","))
        return {"rates": [30.0] * n, "reason": "scripted"}
    return scripted(messages)


@pytest.fixture()
def civic_server():
    with FaultServer(script=civic) as running:
        yield running


def test_bounded_scenario_halves_remembered_utility_only(civic_server, tmp_path):
    model = llm_model(civic_server, tmp_path, scenario_name="bounded", planner="us_federal", max_steps=2)
    model.step()
    w = model.workforce
    expected = np.where(w.tax < model.rebate, 1.0, 0.5)
    assert 0 < (expected == 0.5).sum() < 20
    assert model.workforce.satisfaction == pytest.approx(expected)
    assert [worker.satisfaction for worker in sorted(model.workers, key=lambda w: w.index)] == pytest.approx(expected)
    remembered = np.array([model.worker_mind.memory[i][-1].utility for i in range(20)])
    assert remembered == pytest.approx(expected * w.utility)
    assert model.utilitarian == pytest.approx(w.utility.mean())


def test_best_steps_kept_up_to_date_equal_a_full_sort_of_the_history(civic_server, tmp_path):
    """The prompts' "best so far" is kept as steps arrive (and as the bounded scenario halves one)."""
    from agents.prompts import best_memories

    model = llm_model(civic_server, tmp_path, scenario_name="bounded", planner="us_federal", max_steps=8)
    mind = model.worker_mind
    while model.running:
        model.step()
        for row in range(20):
            assert mind.best(row) == best_memories(mind.memory[row])


@pytest.mark.parametrize("binding", [True, False])
def test_llm_democratic_scenario(civic_server, tmp_path, binding):
    model = llm_model(civic_server, tmp_path, scenario_name="democratic", binding_platforms=binding, max_steps=6)
    while model.running:
        model.step()
    assert [e["period"] for e in model.elections] == [2, 5]
    assert model.elections[0]["votes"] == {0: 13, 1: 7, 2: 0} and model.leader == 0
    rates_after_first_term = dict(model.planner.history)[3]
    assert rates_after_first_term == pytest.approx((0.10 if binding else 0.30,) * 7)
    assert model.election.failures == 0
    assert sorted(set(model.workforce.vote.tolist())) == [0, 1]


def test_bounded_needs_llm_workers():
    with pytest.raises(ValueError, match="^scenario_name: 'bounded' needs worker_mind='llm'"):
        EconomyModel(workers=5, scenario_name="bounded")


def test_planner_answers_have_exactly_one_rate_per_bracket():
    from pydantic import ValidationError

    from agents.prompts import PaperDelta, PlannerAnswer, sized

    schema = sized(PlannerAnswer, 3).model_json_schema()["properties"]["rates"]
    assert (schema["minItems"], schema["maxItems"]) == (3, 3)
    assert sized(PlannerAnswer, 3).model_validate({"rates": [1, 2, 3], "reason": "ok"}).rates == [1, 2, 3]
    with pytest.raises(ValidationError):
        sized(PlannerAnswer, 3).model_validate({"rates": [1, 2, 3, 4], "reason": "too many"})
    with pytest.raises(ValidationError):
        sized(PaperDelta, 7).model_validate({"DELTA": [0] * 6})
    assert sized(PlannerAnswer, 3) is sized(PlannerAnswer, 3)
