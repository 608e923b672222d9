"""LLM answers are validated against bounded schemas, never bent into numbers: bad ones are re-asked and
counted; paper mode clips as the paper does and counts every clipped answer. Against the loopback server."""

from __future__ import annotations

import re

import numpy as np
import pytest

from agents.prompt_styles import paper_delta
from llm_runtime import LLMClient, LLMConfig
from model.model import EconomyModel
from tests.llm_server import FaultServer

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

REASKED = "Your answer was invalid"


def reasks(messages) -> int:
    """How often the LLM layer has re-asked in this conversation."""
    return sum(m["role"] == "user" and str(m["content"]).startswith(REASKED) for m in messages)


def asked(messages) -> str:
    """The question itself (re-asks append turns after it)."""
    return next(m["content"] for m in messages if m["role"] == "user")


def in_turn(answers, messages):
    """The answer for this attempt: ``answers[k]`` after k re-asks (the last one once they run out)."""
    return answers[min(reasks(messages), len(answers) - 1)]


def client(server) -> LLMClient:
    return LLMClient(LLMConfig(base_urls=(server.base_url,), model="fault-model", store_mode="off",
                               max_reasks=2))


def workers_model(llm, **kwargs) -> EconomyModel:
    options = dict(workers=4, worker_mind="llm", planner="fixed", brackets="three", max_steps=3, llm=llm, rng=1)
    return EconomyModel(**(options | kwargs))


def planner_model(llm, **kwargs) -> EconomyModel:
    options = dict(workers=4, planner="llm", brackets="three", tax_year_length=1, max_steps=2, llm=llm, rng=1)
    return EconomyModel(**(options | kwargs))


def hours(value) -> dict:
    return {"hours": value, "reason": "scripted"}


def rates(*values) -> dict:
    return {"rates": list(values), "reason": "scripted"}


# ---- workers --------------------------------------------------------------------------------------------------

ADVERSARIAL_HOURS = [("4e1", "invalid_type"), ("1e3", "invalid_type"), (True, "invalid_type"),
                     ("0x40", "invalid_type"), ("40 hours", "invalid_type")]


@pytest.mark.parametrize("bad,kind", ADVERSARIAL_HOURS)
def test_a_bad_worker_answer_is_reasked_and_only_the_valid_answer_is_used(bad, kind):
    with FaultServer(script=lambda m: in_turn([hours(bad), hours(33)], m)) as server, client(server) as llm:
        model = workers_model(llm, max_steps=1)
        model.step()
        acc = llm.accounting.to_dict()
    assert model.workforce.hours == pytest.approx(np.full(4, 33.0))
    assert acc["reasks"] == 4 and acc["faults"] == {kind: 4} and acc["failures"] == {}
    assert model.worker_mind.failures == 0


@pytest.mark.parametrize("bad,kind", ADVERSARIAL_HOURS)
def test_a_worker_that_never_answers_validly_keeps_its_hours_and_the_failure_is_counted(bad, kind):
    spoiled = {"on": False}

    def script(messages):
        return hours(bad) if spoiled["on"] else hours(33)

    with FaultServer(script=script) as server, client(server) as llm:
        model = workers_model(llm, max_steps=2)
        model.step()
        spoiled["on"] = True
        model.step()
        acc = llm.accounting.to_dict()
    assert model.workforce.hours == pytest.approx(np.full(4, 33.0))  # last step's hours, nothing bent
    assert acc["failures"] == {kind: 4} and acc["faults"] == {kind: 12} and acc["reasks"] == 8
    assert model.worker_mind.failures == 4


# ---- planner ---------------------------------------------------------------------------------------------------

def planner_script(planner_answers, worker=hours(40)):
    def script(messages):
        if "tax planner" in messages[0]["content"]:
            return in_turn(planner_answers, messages)
        return worker
    return script


@pytest.mark.parametrize("bad,kind", [((250, -30, 1000), "out_of_range"), ((0.3, 0.3, 0.3), "invalid_type"),
                                      ((37.5, 20, 20), "invalid_type"), ((20, "30%", 40), "invalid_type"),
                                      ((20, True, 40), "invalid_type")])
def test_a_bad_planner_answer_is_reasked_and_only_the_valid_rates_are_used(bad, kind):
    script = planner_script([rates(*bad), rates(20, 30, 40)])
    with FaultServer(script=script) as server, client(server) as llm:
        model = planner_model(llm)
        while model.running:
            model.step()
        acc = llm.accounting.to_dict()
    assert model.schedule.rates == pytest.approx([0.2, 0.3, 0.4])
    assert acc["reasks"] == 1 and acc["faults"] == {kind: 1} and acc["failures"] == {}
    assert model.planner.rule.failures == 0


@pytest.mark.parametrize("bad,kind", [((250, -30, 1000), "out_of_range"), ((0.3, 0.3, 0.3), "invalid_type")])
def test_a_planner_that_never_answers_validly_keeps_the_rates_and_the_failure_is_counted(bad, kind):
    with FaultServer(script=planner_script([rates(*bad)])) as server, client(server) as llm:
        model = planner_model(llm, initial_rates=[0.1, 0.2, 0.3])
        while model.running:
            model.step()
        acc = llm.accounting.to_dict()
    assert model.schedule.rates == pytest.approx([0.1, 0.2, 0.3])
    assert acc["failures"] == {kind: 1} and acc["faults"] == {kind: 3} and acc["reasks"] == 2
    assert model.planner.rule.failures == 1 and model.planner.rule.clipped == 0


class RecordingServer(FaultServer):
    """The loopback server, keeping the ``response_format`` of every request it answers."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.formats_sent: list[dict] = []

    def _answer(self, request, fault):
        self.formats_sent.append(request.get("response_format"))
        return super()._answer(request, fault)


def test_the_schemas_sent_to_the_server_carry_the_bounds_and_whole_percent_rates():
    with RecordingServer(script=planner_script([rates(20, 30, 40)], worker=hours(30))) as server:
        with client(server) as llm:
            model = planner_model(llm, worker_mind="llm", workers=1)
            while model.running:
                model.step()
    sent = {rf["json_schema"]["name"]: rf["json_schema"] for rf in server.formats_sent}
    assert set(sent) == {"WorkerAnswer", "PlannerAnswer3"} and all(s["strict"] for s in sent.values())
    hours_schema = sent["WorkerAnswer"]["schema"]["properties"]["hours"]
    assert (hours_schema["type"], hours_schema["minimum"], hours_schema["maximum"]) == ("number", 0, model.hours_cap)
    rates_schema = sent["PlannerAnswer3"]["schema"]["properties"]["rates"]
    assert rates_schema["items"] == {"type": "integer", "minimum": 0, "maximum": 100}
    assert (rates_schema["minItems"], rates_schema["maxItems"]) == (3, 3)
    assert model.schedule.rates == pytest.approx([0.2, 0.3, 0.4]) and model.workforce.hours == pytest.approx([30.0])


# ---- paper mode: the paper's own clipping, counted ------------------------------------------------------------

def delta_script(*deltas):
    """Year k's planner answer is ``deltas[k - 1]`` (one record line per year in the prompt)."""
    def script(messages):
        if "tax planner" in messages[0]["content"]:
            years = len(re.findall(r"^year \d+: rates %", asked(messages), re.MULTILINE))
            return {"DELTA": deltas[years - 1]}
        return {"LABOR": "40"}
    return script


def test_paper_delta_is_clipped_to_twenty_points_rounded_to_ten_and_counted():
    script = delta_script([50, -35, 0], [14, "-10%", 0], [-6, 5, "$20"])
    with FaultServer(script=script) as server, client(server) as llm:
        model = planner_model(llm, prompt_mode="paper", max_steps=4)
        history = []
        while model.running:
            model.step()
            history.append(tuple(model.schedule.rates))
        acc = llm.accounting.to_dict()
    # from 50 %: +20 (clipped from 50) / -20 (clipped from -35) / 0; then +10 / -10 / 0; then -10 / 0 / +20
    assert history[1] == pytest.approx((0.7, 0.3, 0.5))
    assert history[2] == pytest.approx((0.8, 0.2, 0.5))
    assert history[3] == pytest.approx((0.7, 0.2, 0.7))
    assert acc["clipped"] == 1 and model.planner.rule.clipped == 1  # only the first answer had to be clipped
    assert acc["reasks"] == 0 and acc["faults"] == {} and acc["failures"] == {}


def test_paper_rates_clipped_to_zero_and_one_hundred_are_counted_only_when_a_rate_changed():
    script = delta_script([20, -20, 0], [0, 0, 0])
    with FaultServer(script=script) as server, client(server) as llm:
        model = planner_model(llm, prompt_mode="paper", initial_rates=[0.9, 0.1, 1.0], max_steps=3)
        while model.running:
            model.step()
        acc = llm.accounting.to_dict()
    assert model.schedule.rates == pytest.approx([1.0, 0.0, 1.0])
    assert acc["clipped"] == 1 and model.planner.rule.clipped == 1


def test_paper_labor_is_read_as_the_paper_does_clipped_to_the_cap_and_nan_or_negative_is_reasked():
    answers = {0: ["150 hours"], 1: ["-5", "35 hours"], 2: ["nan", "$35"], 3: [True, "35%"]}

    def script(messages):
        worker = int(re.search(r"You are worker_(\d+)", messages[0]["content"]).group(1))
        return {"LABOR": in_turn(answers[worker], messages)}

    with FaultServer(script=script) as server, client(server) as llm:
        model = workers_model(llm, prompt_mode="paper", max_steps=1)
        model.step()
        acc = llm.accounting.to_dict()
    assert model.workforce.hours == pytest.approx([100.0, 35.0, 35.0, 35.0])
    assert acc["clipped"] == 1 and model.worker_mind.clipped == 1
    assert acc["reasks"] == 3 and acc["faults"] == {"out_of_range": 1, "invalid_type": 2}
    assert acc["failures"] == {} and model.worker_mind.failures == 0


# ---- elections (improved mode) ----------------------------------------------------------------------------------

def civic(messages):
    """Workers 0 and 1 run, first with out-of-range platforms; the leader first answers fractions."""
    user = asked(messages)
    me = re.search(r"worker_(\d+)", messages[0]["content"])
    me = int(me.group(1)) if me else -1
    if "are you satisfied" in user:
        return {"thought": "scripted", "ANSWER": "YES"}
    if "Decide if you want to run" in user:
        if me > 1:
            return {"run": False, "rates": []}
        return in_turn([{"run": True, "rates": [250, -30, 1000]}, {"run": True, "rates": [10 * (me + 1)] * 3}],
                       messages)
    if "Candidates and their platforms" in user:
        return {"vote": 0, "reason": "scripted"}
    if "This year you set the marginal tax rates" in user:
        return in_turn([rates(0.3, 0.3, 0.3), rates(30, 30, 30)], messages)
    return hours(40)


@pytest.mark.parametrize("binding", [True, False])
def test_election_platforms_and_leader_rates_are_reasked_not_clipped(binding):
    with FaultServer(script=civic) as server, client(server) as llm:
        model = workers_model(llm, scenario_name="democratic", binding_platforms=binding, tax_year_length=3,
                              max_steps=4)
        while model.running:
            model.step()
        acc = llm.accounting.to_dict()
    assert model.elections[0]["leader"] == 0 and model.elections[0]["platform"] == pytest.approx((0.1,) * 3)
    assert model.schedule.rates == pytest.approx([0.1 if binding else 0.3] * 3)
    faults = {"out_of_range": 2} | ({} if binding else {"invalid_type": 1})
    assert acc["faults"] == faults and acc["failures"] == {} and acc["reasks"] == sum(faults.values())
    assert model.election.failures == 0


def test_a_vote_for_a_worker_who_is_not_running_counts_for_nobody_and_is_counted():
    def script(messages):
        me = re.search(r"worker_(\d+)", messages[0]["content"])
        if "Candidates and their platforms" in asked(messages) and me and int(me.group(1)) > 1:
            return {"vote": 7, "reason": "scripted"}  # a worker id, but not a candidate's
        return civic(messages)

    with FaultServer(script=script) as server, client(server) as llm:
        model = workers_model(llm, scenario_name="democratic", binding_platforms=True, tax_year_length=3, max_steps=4)
        while model.running:
            model.step()
    assert model.elections[0]["votes"] == {0: 2, 1: 0}  # workers 0 and 1 vote 0; 2 and 3 for nobody
    assert model.workforce.vote.tolist() == [0, 0, -1, -1] and model.election.failures == 2


# ---- elections (paper mode) -------------------------------------------------------------------------------------

def test_paper_delta_of_the_elected_leader_reverses_a_change_that_would_leave_the_range():
    """Spec 3.2: the leader's change is clipped and rounded as the planner's, but out of range it is sign-flipped
    (the planner's is cut to the bound)."""
    rates = [0.9, 0.1, 0.5]
    planner, planner_clipped = paper_delta(rates, [20, -20, 14])
    leader, leader_changed = paper_delta(rates, [20, -20, 14], flip=True)
    assert planner == pytest.approx([1.0, 0.0, 0.6]) and planner_clipped
    assert leader == pytest.approx([0.7, 0.3, 0.6]) and leader_changed
    assert paper_delta(rates, [10, -10, 0], flip=True) == (pytest.approx([1.0, 0.0, 0.5]), False)


def test_paper_mode_leader_in_a_democratic_run_flips_an_out_of_range_change():
    def script(messages):
        user = asked(messages)
        me = int(re.search(r"worker_(\d+)", messages[0]["content"]).group(1))
        if "are you satisfied" in user:
            return {"thought": "scripted", "ANSWER": "YES"}
        if "Decide if you want to run" in user:
            return {"DELTA": [0, 0, 0] if me == 0 else None}
        if "Candidates and their platforms" in user:
            return {"LEADER": "worker_0"}
        if "This year you set the marginal tax rates" in user:
            return {"DELTA": [20, -20, "10%"]}
        return {"LABOR": "40"}

    with FaultServer(script=script) as server, client(server) as llm:
        model = workers_model(llm, prompt_mode="paper", scenario_name="democratic", initial_rates=[0.9, 0.1, 0.5],
                              tax_year_length=3, max_steps=4)
        while model.running:
            model.step()
        acc = llm.accounting.to_dict()
    assert model.elections[0]["leader"] == 0
    assert model.schedule.rates == pytest.approx([0.7, 0.3, 0.6])  # 90 % + 20 and 10 % - 20 reversed; 50 % + 10
    assert acc["clipped"] == 1 and acc["failures"] == {}
