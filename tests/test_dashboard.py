"""Headless tests of the Solara dashboard: controls, the model controller, panels and baselines."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import ipyvuetify as v
import ipywidgets as widgets
import pytest
import solara
from ipyvue import VueTemplate
from mesa.visualization.solara_viz import ModelController, ModelCreator, _check_model_params

from llm.accounting import Accounting
from model.model import EconomyModel
from visualization import app, baselines, server
from visualization.charts import CurrentSchedule, HoursHistogram, ObjectiveChart, ScheduleHistory
from visualization.panels import (NETWORK_COLOURINGS, ElectionResults, LLMAccounting, RunStatus,
                                  SocialNetwork, WorkerInspector)
from visualization.parameters import CONTROLS, DEFAULTS, DashboardEconomy

SMALL = {**DEFAULTS, "workers": "30", "max_steps": 20}


def all_widgets(widget):
    """``widget`` and its descendants, including the panels held by SolaraViz's grid layout."""
    yield widget
    items = getattr(widget, "items", None)
    items = list(items.values()) if isinstance(items, dict) else items if isinstance(items, list) else []
    for child in [*(getattr(widget, "children", None) or []), *items]:
        if isinstance(child, widgets.Widget):
            yield from all_widgets(child)


def text_of(rc) -> str:
    """The visible text of everything rendered (Markdown, Text, alerts), without HTML tags."""
    parts = []
    for widget in all_widgets(rc.container):
        parts.append(getattr(widget, "template", None) if isinstance(widget, VueTemplate) else None)
        parts += [child for child in getattr(widget, "children", None) or [] if isinstance(child, str)]
        parts.append(widget.value if isinstance(getattr(widget, "value", None), str) else None)
    return html.unescape(re.sub(r"<[^>]+>", "", "\n".join(p for p in parts if isinstance(p, str))))


def images(rc) -> list[bytes]:
    return [bytes(w.value) for w in rc.find(widgets.Image).widgets]


def field(rc, label):
    return rc.find(v.TextField, label=label).widget


def type_into(text_field, value):
    """Type ``value`` and leave the field, as a user does."""
    text_field.v_model = value
    text_field.fire_event("focusout", None)


def test_model_builds_from_keyword_arguments_alone_and_controls_match_its_signature():
    model = DashboardEconomy()
    assert model.input_error is None and len(model.workforce) == 100
    _check_model_params(model, CONTROLS)  # raises on a control the model does not accept
    assert {"workers", "preset", "brackets", "planner", "worker_mind", "backend", "tax_year_length",
            "scenario_name", "network", "rng"} <= set(CONTROLS)


@pytest.mark.parametrize(("values", "field_name", "allowed"), [
    ({"workers": "abc"}, "workers", "2 to 10000"),
    ({"workers": "1"}, "workers", "2 to 10000"),
    ({"rng": "-3"}, "seed", "0 to"),
    ({"brackets": "three", "planner": "us_federal"}, "planner", "us_2025_single"),
    ({"preset": "weird"}, "preset", "calibrated, paper"),
])
def test_invalid_values_give_a_stopped_default_model_with_a_message(values, field_name, allowed):
    model = DashboardEconomy(**{**SMALL, **values})
    assert model.input_error.startswith(field_name) and allowed in model.input_error
    assert not model.running
    assert len(model.workforce) == int(DEFAULTS["workers"])  # the defaults, fully built
    box, rc = solara.render(RunStatus(model), handle_error=False)
    assert model.input_error in text_of(rc)


def test_controls_present_and_feed_model_parameters():
    model = solara.reactive(DashboardEconomy(**SMALL))
    parameters = solara.reactive({})
    box, rc = solara.render(ModelCreator(model, CONTROLS, model_parameters=parameters), handle_error=False)
    selects = {w.label: w for w in rc.find(v.Select).widgets}
    texts = {w.label for w in rc.find(v.TextField).widgets} - set(selects)
    labels = {spec["label"] for spec in CONTROLS.values()}
    assert {"Preset", "Brackets", "Planner", "Worker mind", "LLM backend", "Scenario",
            "Social network"} <= set(selects)
    assert {"Workers (2-10000)", "Seed"} <= texts
    assert {w.label for w in rc.find(v.Slider).widgets} == {"Tax-year length (steps)", "Steps to run"}
    assert labels <= set(selects) | texts | {"Tax-year length (steps)", "Steps to run"}
    assert parameters.value == DEFAULTS
    selects["Planner"].v_model = "blackbox"
    assert parameters.value["planner"] == "blackbox"


def render_controller(model):
    """The SolaraViz model controller and parameter form, sharing one parameter store."""
    parameters = solara.reactive({})

    @solara.component
    def Controls():
        ModelController(model, model_parameters=parameters, play_interval=solara.reactive(10),
                        render_interval=solara.reactive(1), use_threads=solara.reactive(False))
        ModelCreator(model, CONTROLS, model_parameters=parameters)
        RunStatus(model.value)

    return solara.render(Controls(), handle_error=False)


def click(rc, label):
    rc.find(v.Btn, children=[label]).widget.click()


def test_step_and_reset_through_the_model_controller():
    model = solara.reactive(DashboardEconomy(**SMALL))
    box, rc = render_controller(model)
    click(rc, "Step")
    click(rc, "Step")
    assert model.value.time == 2
    assert "Step 2 of" in text_of(rc)
    type_into(field(rc, "Workers (2-10000)"), "40")
    rc.find(v.Select, label="Planner").widget.v_model = "saez"
    click(rc, "Reset")
    assert model.value.time == 0 and len(model.value.workforce) == 40
    assert type(model.value.planner.rule).__name__ == "SaezConsistentRule"
    assert "Step 0 of 100 · 40 workers" in text_of(rc) and "planner saez" in text_of(rc)


def test_invalid_input_shows_an_error_and_disables_stepping_until_corrected():
    model = solara.reactive(DashboardEconomy(**SMALL))
    box, rc = render_controller(model)
    type_into(field(rc, "Workers (2-10000)"), "lots")
    click(rc, "Reset")
    assert "workers: must be a whole number from 2 to 10000, got 'lots'" in text_of(rc)
    click(rc, "Step")
    assert model.value.period == -1  # the stand-in default economy does not run
    assert rc.find(v.Btn, children=["Step"]).widget.disabled
    type_into(field(rc, "Workers (2-10000)"), "25")
    click(rc, "Reset")
    assert model.value.input_error is None and len(model.value.workforce) == 25
    assert "must be a whole number" not in text_of(rc)
    click(rc, "Step")
    assert model.value.time == 1


def test_components_update_after_a_step():
    # a black-box planner with one-step tax years changes the rates, hours and incomes every step
    model = solara.reactive(DashboardEconomy(**{**SMALL, "planner": "blackbox", "tax_year_length": 1}))

    @solara.component
    def Charts():
        for chart in (CurrentSchedule, ScheduleHistory, ObjectiveChart, HoursHistogram):
            chart(model.value)

    box, rc = solara.render(Charts(), handle_error=False)
    box2, rc_controls = render_controller(model)
    before = images(rc)
    assert len(before) == 4 and all(png.startswith(b"\x89PNG") for png in before)
    for _ in range(3):
        click(rc_controls, "Step")
    after = images(rc)
    assert model.value.time == 3
    assert all(a != b for a, b in zip(before, after, strict=True))


def test_scenario_panels_show_placeholders_without_elections_network_or_llm():
    model = DashboardEconomy(**SMALL)
    for panel, message in ((ElectionResults, "No elections in this scenario."),
                           (SocialNetwork, "No social network in this scenario."),
                           (LLMAccounting, "Rational minds: no LLM calls.")):
        box, rc = solara.render(panel(model), handle_error=False)
        assert message in text_of(rc)
        assert not images(rc)


def test_democratic_scenario_shows_election_results_and_the_network_coloured_by_vote():
    model = DashboardEconomy(**{**SMALL, "scenario_name": "democratic", "tax_year_length": 2})
    box, rc = solara.render(ElectionResults(model), handle_error=False)
    assert "No election held yet." in text_of(rc)
    box, rc_network = solara.render(SocialNetwork(model), handle_error=False)
    before = images(rc_network)
    assert len(before) == 1
    model.step()
    model.step()
    assert model.elections, "the democratic scenario holds an election at the end of each tax year"
    leader = model.elections[-1]["leader"]
    box, rc = solara.render(ElectionResults(model), handle_error=False)
    assert f"Current leader: {leader}" in text_of(rc)
    box, rc = solara.render(RunStatus(model), handle_error=False)
    assert "scenario democratic · planner elected leader" in text_of(rc)
    box, rc_network = solara.render(SocialNetwork(model), handle_error=False)
    by_vote = images(rc_network)
    assert by_vote != before
    # Vuetify 2's toggle buttons select by index
    rc_network.find(v.BtnToggle).widget.v_model = NETWORK_COLOURINGS.index("satisfaction")
    assert images(rc_network) != by_vote


def test_llm_accounting_shows_requests_tokens_and_failures():
    model = DashboardEconomy(**SMALL)
    model.llm_accounting = {"requests": 12, "prompt_tokens": 900, "completion_tokens": 100,
                            "failures": {"timeout": 2}}
    box, rc = solara.render(LLMAccounting(model), handle_error=False)
    assert "Requests: 12 · tokens: 1,000 · failures: 2" in text_of(rc)


def test_llm_counters_move_during_a_step_without_a_redraw():
    # an LLM step takes long: the run status and the accounting panel poll the counters meanwhile
    model = DashboardEconomy(**SMALL)
    model.llm_accounting = Accounting()

    @solara.component
    def Panels():
        RunStatus(model)
        LLMAccounting(model)

    box, rc = solara.render(Panels(), handle_error=False)
    assert text_of(rc).count("Requests: 0 · tokens: 0 · failures: 0") == 2
    model.llm_accounting.add(requests=7, prompt_tokens=1200, completion_tokens=34)
    deadline = time.monotonic() + 5
    while text_of(rc).count("Requests: 7 · tokens: 1,234") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert text_of(rc).count("Requests: 7 · tokens: 1,234 · failures: 0") == 2
    assert "LLM so far" in text_of(rc)
    rc.close()


def test_worker_inspector_shows_persona_and_history_and_rejects_bad_indices():
    model = DashboardEconomy(**SMALL)
    model.step()
    box, rc = solara.render(WorkerInspector(model), handle_error=False)
    agent = next(a for a in model.workers if a.index == 0)
    assert agent.persona and agent.persona in text_of(rc)
    assert "none (rational minds compute the exact best response" in " ".join(text_of(rc).split())
    type_into(field(rc, "Worker index (0-29)"), "30")
    assert "worker: must be a whole number from 0 to 29, got '30'" in text_of(rc)
    type_into(field(rc, "Worker index (0-29)"), "5")
    agent = next(a for a in model.workers if a.index == 5)
    assert f"hours {agent.hours:.1f}" in text_of(rc)


def test_worker_inspector_shows_the_last_prompt_and_answer_of_an_llm_mind():
    model = DashboardEconomy(**SMALL)
    model.worker_mind.last_exchange = {3: ([{"role": "system", "content": "You choose weekly hours."},
                                            {"role": "user", "content": "Tax rates: 10%, 12%."}],
                                           '{"hours": 41}')}
    box, rc = solara.render(WorkerInspector(model), handle_error=False)
    assert "none yet (this worker has not been asked" in text_of(rc)
    type_into(field(rc, "Worker index (0-29)"), "3")
    text = text_of(rc)
    assert "Last prompt:" in text and "[system]\nYou choose weekly hours." in text
    assert "Tax rates: 10%, 12%." in text and '{"hours": 41}' in text


def test_baselines_match_direct_runs_and_are_cached():
    model = DashboardEconomy(**SMALL)
    series = baselines.baseline_objectives(model.model_kwargs)
    assert set(series) == {"us_federal", "saez", "oracle"}
    direct = EconomyModel(**{**model.model_kwargs, "planner": "saez", "agent_interval": 0})
    assert series["saez"][0] == pytest.approx(direct.objective)
    assert len(series["saez"]) == model.max_steps + 1
    assert baselines.baseline_objectives(dict(model.model_kwargs)) is series


def test_baselines_skip_us_federal_off_us_brackets_and_the_oracle_for_large_populations():
    assert baselines.baseline_planners({"preset": "paper", "workers": 100}) == ("saez", "oracle")
    large = {"brackets": "us_2024_single", "workers": 501}
    assert baselines.baseline_planners(large) == ("us_federal", "saez")


def test_app_page_is_solaraviz_with_every_panel_on_its_page():
    assert app.page.component.name == "SolaraViz"
    assert app.page.kwargs["model_params"] is CONTROLS
    pages = [page for _, page in app.COMPONENTS]
    assert pages == [0] * len(app.PAGES["Economy"]) + [1] * len(app.PAGES["Agents"])
    box, rc = solara.render(app.page, handle_error=False)
    assert [tab.children for tab in rc.find(v.Tab).widgets] == [["Page 0"], ["Page 1"]]
    assert len(images(rc)) == 6
    assert "Step 0 of 100" in text_of(rc)
    rc.find(v.Tabs).widget.v_model = 1
    assert "No elections in this scenario." in text_of(rc) and "Rational minds: no LLM calls." in text_of(rc)
    assert rc.find(v.TextField, label="Worker index (0-99)").widgets


@pytest.mark.parametrize("required", ["", "1"])
def test_browser_tests_skip_without_chromium_unless_required(required):
    env = {**os.environ, "DASHBOARD_CHROMIUM": "/nonexistent/chromium", "REQUIRE_BROWSER": required}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                             str(Path(__file__).with_name("test_dashboard_browser.py"))],
                            env=env, capture_output=True, text=True, timeout=120)
    assert "/nonexistent/chromium not found" in result.stdout
    if required:
        assert result.returncode != 0 and "REQUIRE_BROWSER is set" in result.stdout
    else:
        assert result.returncode in (0, 5) and "1 skipped" in result.stdout  # 5: nothing left to run


def test_server_binds_to_localhost_by_default():
    command = server.command()
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8765"
    assert command[3:5] == ["run", str(server.APP)]
