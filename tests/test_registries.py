"""Registries and parameters: the project's entries and a user's are chosen the same way, by name."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
from pydantic import BaseModel

from agents.planner import PLANNERS, FixedRule
from agents.prompt_styles import PROMPT_STYLES, PaperStyle
from agents.worker import WORKER_MINDS, WorkerAgent, WorkerMind
from model.model import EconomyModel
from model.params import EconomyParams
from model.scenarios import SCENARIOS
from public_finance.welfare import OBJECTIVES, Objective
from registry import Registry
from validation import ParameterError


def test_per_agent_rational_workers_match_the_batched_mind():
    batched = EconomyModel(workers=60, planner="blackbox", tax_year_length=2, max_steps=6, rng=4)
    per_agent = EconomyModel(workers=60, planner="blackbox", tax_year_length=2, max_steps=6, rng=4,
                             worker_mind="rational_agent")
    for model in (batched, per_agent):
        model.run_for(6)
    assert type(per_agent.workers.to_list()[0]) is WorkerAgent
    np.testing.assert_allclose(per_agent.workforce.hours, batched.workforce.hours, rtol=1e-12)
    np.testing.assert_allclose(per_agent.datacollector.get_model_vars_dataframe()["objective"],
                               batched.datacollector.get_model_vars_dataframe()["objective"], rtol=1e-12)


def test_a_user_worker_subclass_steps_the_mesa_way():
    calls = []

    @WORKER_MINDS.register("test_part_timers", replace=True)
    class PartTimers(WorkerAgent):
        def work(self):
            calls.append(self.unique_id)
            self.hours = 20.0

    model = EconomyModel(workers=30, worker_mind="test_part_timers", max_steps=2, rng=1)
    model.step()
    assert isinstance(model.workers.to_list()[0], PartTimers) and len(model.workers) == 30
    assert sorted(calls[-30:]) == sorted(a.unique_id for a in model.workers)  # every worker, once a step
    assert np.all(model.workforce.hours == 20.0) and model.mean_hours == 20.0
    agents = model.datacollector.get_agenttype_vars_dataframe(PartTimers)
    assert (agents["hours"] == 20.0).all()


def test_a_user_planner_objective_and_batched_mind_are_accepted_by_name():
    @PLANNERS.register("test_thirty", replace=True)
    class Thirty(FixedRule):
        def initial_rates(self, model):
            return np.full(model.schedule.n_brackets, 0.3)

    @OBJECTIVES.register("test_mean_income", replace=True)
    class MeanIncome(Objective):
        def score(self, outcome, skills):
            return float(outcome.income.mean())

    @WORKER_MINDS.register("test_forty", replace=True)
    class Forty(WorkerMind):
        def decide(self, model):
            return np.full(len(model.workforce), 40.0)

    model = EconomyModel(workers=25, planner="test_thirty", objective="test_mean_income", worker_mind="test_forty",
                         rng=2)
    model.step()
    assert np.all(model.schedule.rates == 0.3) and np.all(model.workforce.hours == 40.0)
    assert model.objective == pytest.approx(model.mean_income)


def test_an_in_process_client_is_passed_in():
    """Minds use whatever client the model is given: here an in-process fake answering 35 hours."""
    from llm_runtime import LLMResult

    class Fake:
        def __init__(self):
            self.batches = []

        def run_batch(self, requests):
            requests = list(requests)
            self.batches.append(len(requests))
            return [LLMResult(key=r.key, value=r.schema.model_validate({"hours": 35, "reason": "steady"}),
                              failure=None, raw='{"hours": 35}') for r in requests]

        def close(self):
            raise AssertionError("the model must not close a client it was given")

    fake = Fake()
    model = EconomyModel(workers=12, worker_mind="llm", planner="fixed", llm=fake, max_steps=2, rng=3)
    model.step()
    model.close()
    assert model.llm is fake and fake.batches == [12]  # one batch for all workers
    assert np.all(model.workforce.hours == 35.0)


@pytest.mark.parametrize("kwargs, field", [
    ({"workers": 0}, "workers"), ({"workers": 2.5}, "workers"), ({"workers": True}, "workers"),
    ({"planner": "magic"}, "planner"), ({"worker_mind": "psychic"}, "worker_mind"),
    ({"scenario_name": "anarchy"}, "scenario_name"), ({"objective": "joy"}, "objective"),
    ({"network": "mesh"}, "network"), ({"population": "mars"}, "population"), ({"eta": -1.0}, "eta"),
    ({"eta": float("nan")}, "eta"), ({"hours_grid": 1e-9}, "hours_grid"), ({"conformity": 2.0}, "conformity"),
    ({"llm_concurrency": 10**6}, "llm_concurrency"), ({"planner": "fixed", "initial_rates": [0.1]}, "initial_rates"),
    ({"planner": "saez", "initial_rates": [0.1] * 7}, "initial_rates"),
    ({"initial_rates": [1.5] * 7}, "initial_rates"), ({"planner": "fixed", "planner_options": {"bogus": 1}},
                                                        "planner_options.bogus"),
    ({"base_url": "http://user:secret@127.0.0.1/v1"}, "base_url"), ({"base_url": "http://[::1/v1"}, "base_url"),
    ({"archetypes": 50, "workers": 10}, "archetypes"), ({"scenario_name": "bounded"}, "scenario_name"),
    ({"brackets": "three", "planner": "us_federal"}, "planner"), ({"colour": "red"}, "colour"),
])
def test_bad_parameters_raise_one_line_naming_the_field(kwargs, field):
    with pytest.raises(ParameterError) as caught:
        EconomyModel(**kwargs)
    message = str(caught.value)
    assert message.startswith(f"{field}: ") and "; allowed: " in message and "\n" not in message


def test_allowed_names_come_from_the_registries():
    schema = EconomyParams.model_fields
    assert set(PLANNERS) >= {"fixed", "us_federal", "saez", "saez_reference", "oracle", "blackbox", "llm"}
    assert set(WORKER_MINDS) >= {"rational", "rational_agent", "llm"}
    assert set(SCENARIOS) >= {"rational", "bounded", "democratic"}
    assert "workers" in schema and inspect.signature(EconomyModel).parameters["workers"].default == 100
    for name, field in schema.items():  # the model's signature is the parameter declaration
        assert inspect.signature(EconomyModel).parameters[name].default == field.default


def test_the_llm_settings_the_model_checks_are_the_runtimes():
    import model.params
    from llm_runtime.config import BACKENDS, MAX_CONCURRENCY, STORE_MODES
    from validation import allowed

    assert allowed(EconomyParams, "backend") == "one of " + ", ".join(BACKENDS)
    assert allowed(EconomyParams, "llm_store_mode") == "one of " + ", ".join(STORE_MODES)
    assert allowed(EconomyParams, "llm_concurrency").endswith(f"<= {MAX_CONCURRENCY}")
    assert not {"BACKENDS", "STORE_MODES", "MAX_CONCURRENCY"} & set(vars(model.params))  # declared once


def test_a_registry_refuses_to_silently_replace_an_entry():
    registry = Registry("thing")
    registry.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", 2)
    with pytest.raises(ValueError, match="allowed: a"):
        registry["b"]
    assert registry.register("a", 3, replace=True) == 3 and registry["a"] == 3


def test_parameters_serialise_for_results():
    params = EconomyParams(workers=10, planner="saez")
    assert json.loads(params.model_dump_json(exclude={"skills"}))["planner"] == "saez"
    assert isinstance(params, BaseModel)


def test_an_entry_of_the_wrong_kind_is_refused_when_it_registers():
    from agents.planner import PlannerRule

    with pytest.raises(ValueError, match=r"^planner: 'x' must be a subclass of PlannerRule, not 42$"):
        PLANNERS.register("x", 42)
    with pytest.raises(ValueError, match=r"^worker mind: 'y' must be a subclass of WorkerMind or WorkerAgent, "
                                         r"not 42$"):
        WORKER_MINDS.register("y")(42)
    with pytest.raises(ValueError, match="must be a subclass of PlannerRule"):
        PLANNERS.register("z", type("NotARule", (), {}))
    for registry in (SCENARIOS, OBJECTIVES, PROMPT_STYLES):
        with pytest.raises(ValueError, match="must be a subclass of"):
            registry.register("w", lambda: None)
    assert not {"x", "y", "z"} & {*PLANNERS, *WORKER_MINDS}
    assert "w" not in SCENARIOS and "w" not in OBJECTIVES and "w" not in PROMPT_STYLES
    rule = type("TestRule", (PlannerRule,), {})
    assert PLANNERS.register("test_subclass_rule", rule, replace=True) is rule
    assert PLANNERS["test_subclass_rule"] is rule
    assert Registry("thing").register("anything", 42) == 42  # a registry without a base takes any entry


def test_a_user_prompt_style_is_accepted_by_name_and_writes_the_prompts():
    from tests.test_prompt_capture import ScriptedClient

    @PROMPT_STYLES.register("test_short_planner", replace=True)
    class ShortPlanner(PaperStyle):
        def planner_system(self, n_brackets, brackets, objective_name):
            return f"Change each of the {n_brackets} rates by DELTA points."

    client = ScriptedClient()
    model = EconomyModel(workers=3, worker_mind="llm", planner="llm", prompt_mode="test_short_planner",
                         tax_year_length=1, max_steps=2, agent_interval=0, llm=client, rng=1)
    client.brackets = model.schedule.n_brackets
    model.run_for(2)
    plan = [request for request in client.requests if request.key[2] == "plan"]
    assert plan[0].messages[0]["content"] == "Change each of the 7 rates by DELTA points."
    assert plan[0].schema.__name__ == "PaperDelta7" and model.worker_mind.history_length == 50
    assert dict(model.planner.history)[0] == (0.5,) * 7  # the paper style's start, inherited
    with pytest.raises(ParameterError, match=r"^prompt_mode: unknown prompt mode 'nope'; allowed: improved, "):
        EconomyModel(prompt_mode="nope")


@pytest.fixture
def restored_registries(monkeypatch):
    """Population sources, bracket sets and presets as they were before the test (others list them all)."""
    from calibration.population import POPULATION_SOURCES
    from model.params import PRESETS
    from public_finance.taxes import BRACKET_SETS

    for registry in (POPULATION_SOURCES, BRACKET_SETS, PRESETS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def test_population_sources_bracket_sets_and_presets_are_checked_when_they_register(restored_registries):
    from calibration.population import POPULATION_SOURCES, PaperGB2
    from model.params import PRESETS, Preset
    from public_finance.taxes import BRACKET_SETS, BracketSet

    paper = PRESETS["paper"]
    cases = [(POPULATION_SOURCES, "population source", type("TestSource", (PaperGB2,), {}),
              "a subclass of PopulationSource"),
             (BRACKET_SETS, "bracket set", BracketSet("test_two", (0.0, 50_000.0), (0.1, 0.3)),
              "an instance of BracketSet"),
             (PRESETS, "preset", Preset(**{**vars(paper), "brackets": "flat"}), "an instance of Preset")]
    for registry, kind, good, must in cases:
        wrong = {"brackets": "three"}  # an incomplete preset, a dict: refused, whatever the registry
        first = next(iter(registry))
        for name, entry, message in [
                ("test_wrong", wrong, rf"'test_wrong' must be {must}, not {{'brackets': 'three'}}$"),
                ("bad name!", good, r"a registered name must be an identifier, got 'bad name!'$"),
                (first, good, rf"'{first}' is already registered \(pass replace=True to replace it\)$")]:
            with pytest.raises(ValueError, match=rf"^{kind}: {message}"):
                registry.register(name, entry)
        assert "test_wrong" not in registry and "bad name!" not in registry and registry[first] is not good
        assert registry.register("test_good", good, replace=True) is good and registry["test_good"] is good


def test_a_bracket_set_or_preset_that_cannot_work_fails_when_it_is_made():
    from model.params import Preset
    from public_finance.taxes import BracketSet

    with pytest.raises(ValueError, match=r"^rates: 1 rates for 2 brackets"):
        BracketSet("test_short", (0.0, 10_000.0), (0.2,))
    with pytest.raises(ValueError, match=r"^edges: must be finite and strictly increasing"):
        BracketSet("test_down", (0.0, 10_000.0, 5_000.0), (0.1, 0.2, 0.3))
    with pytest.raises(TypeError, match="missing 6 required"):
        Preset(brackets="three")


def test_user_population_source_bracket_set_and_preset_are_accepted_by_name(restored_registries):
    from calibration.population import POPULATION_SOURCES, PaperGB2
    from model.params import PRESETS, Preset
    from public_finance.taxes import BRACKET_SETS, BracketSet

    @POPULATION_SOURCES.register("test_doubled_gb2", replace=True)
    class Doubled(PaperGB2):
        def sample(self, n, rng):
            frame = super().sample(n, rng)
            return frame.assign(skill=2 * frame["skill"], team=["a", "b"] * (n // 2) + ["a"] * (n % 2))

    BRACKET_SETS.register("test_two", BracketSet("test_two", (0.0, 50_000.0), (0.1, 0.3)), replace=True)
    PRESETS.register("test_two_brackets", Preset(**{**vars(PRESETS["paper"]), "brackets": "test_two"}),
                     replace=True)
    model = EconomyModel(workers=10, preset="test_two_brackets", population="test_doubled_gb2", max_steps=2,
                         rng=6)
    model.step()
    assert model.schedule.n_brackets == 2 and np.all(model.schedule.rates == (0.1, 0.3))
    assert model.params.brackets == "test_two" and model.workers.to_list()[0].attribute("team") in ("a", "b")
    reference = EconomyModel(workers=10, preset="paper", max_steps=2, rng=6)
    np.testing.assert_allclose(model.workforce.skill, 2 * reference.workforce.skill)


def test_every_extensible_kind_is_a_registry_with_a_base():
    from agents.network import NETWORKS
    from agents.planner import PlannerRule
    from agents.prompt_styles import PromptStyle
    from calibration.population import POPULATION_SOURCES, PopulationSource
    from model.params import PRESETS, Preset
    from model.scenarios import Scenario
    from public_finance.taxes import BRACKET_SETS, BracketSet

    bases = {WORKER_MINDS: (WorkerMind, WorkerAgent), PLANNERS: PlannerRule, SCENARIOS: Scenario,
             OBJECTIVES: Objective, POPULATION_SOURCES: PopulationSource, BRACKET_SETS: BracketSet,
             PRESETS: Preset, PROMPT_STYLES: PromptStyle}
    for registry, base in bases.items():
        assert isinstance(registry, Registry) and registry.base == base, registry
        for name in registry:  # what the project registered itself fits too
            entry = registry[name]
            fits = isinstance(entry, base) if registry.instances else issubclass(entry, base)
            assert fits, (registry, name)
    assert isinstance(NETWORKS, Registry) and NETWORKS.base is None  # builders are plain functions
