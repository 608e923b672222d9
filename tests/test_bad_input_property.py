"""Property: any keywords or flags give a valid model (or settings) or one line naming the field, quickly."""

from __future__ import annotations

import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import run
from experiments.cli import COMMAND_OPTIONS, flag
from experiments.config import resolve
from model.model import EconomyModel
from model.params import EconomyParams
from validation import ParameterError, validate

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**13, 10**13), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["llm", "oracle", "paper", "three", "bounded", "democratic", "record",
                                          "rational_agent", "http://127.0.0.1:1/v1", "http://u:p@h/v1", "0.5"]),
    st.lists(st.floats(-1, 2), max_size=8), st.dictionaries(st.sampled_from(["rates", "sigma", "bogus"]),
                                                            st.floats(-2, 2), max_size=2))
NAMES = st.sampled_from([*EconomyParams.model_fields, "colour"])


class Unreachable:
    """An in-process LLM client whose every request fails (counted; workers and planner keep their choices)."""

    def run_batch(self, requests):
        from llm_runtime import Failure, FailureKind, LLMResult

        return [LLMResult(key=r.key, value=None, failure=Failure(FailureKind.CONNECTION, "offline"))
                for r in requests]


def one_line_naming(error: ParameterError, given: set[str]) -> bool:
    text = str(error)
    names = given | ({"rates"} if "initial_rates" in given else set())  # the schedule names its rates
    return "\n" not in text and "; allowed: " in text and any(name in text for name in names)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(NAMES, VALUES, max_size=3))
def test_model_keywords_build_a_model_or_name_the_field(kwargs):
    start = time.perf_counter()
    try:
        params = validate(EconomyParams, dict(kwargs))
    except ParameterError as error:
        assert one_line_naming(error, set(kwargs)), (kwargs, str(error))
        assert time.perf_counter() - start < 2.0
        return
    if params.workers > 300 or params.planner in ("oracle", "oracle_sample", "saez") or params.skills is not None:
        return  # valid, but too large or slow to build here
    try:
        model = EconomyModel(**kwargs, llm=Unreachable() if params.needs_llm else None, rng=1)
    except ParameterError as error:  # checks that need the population (e.g. archetypes vs its size)
        assert one_line_naming(error, set(kwargs)), (kwargs, str(error))
        return
    built[0] += 1
    model.step()
    assert np.isfinite(model.objective) or params.objective == "rawlsian"


built = [0]


def test_the_property_built_models():
    """Run after the property: some of its examples were valid models (the test exercises both sides)."""
    assert built[0] > 0


FLAGS = sorted({name for names in COMMAND_OPTIONS.values() for name in names} - {"planner_options"})


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["run", "compare", "sweep", "replay", "resume", "dashboard"]),
       st.lists(st.tuples(st.sampled_from(FLAGS), st.one_of(st.text(max_size=12), st.integers(-5, 10**9).map(str),
                                                             st.sampled_from(["none", "saez,saez", "a=1", "llm"]))),
                max_size=3))
def test_flags_give_settings_or_one_line_naming_the_flag(command, pairs):
    argv = [command]
    for name, value in pairs:
        argv += [flag(name), value]
    start = time.perf_counter()
    try:
        resolve(argv, run.DEFAULTS)
    except ParameterError as error:
        text = str(error)
        assert "\n" not in text and "; allowed: " in text, text
        named = {flag(name) for name, _ in pairs} | {"arguments", "--run", "--out", "command"}
        assert any(text.startswith(f) or f in text for f in named), (argv, text)
    assert time.perf_counter() - start < 5.0
