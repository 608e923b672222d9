"""Headless tests of the Solara dashboard: controls, the model controller, panels and baselines."""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ipyvuetify as v
import ipywidgets as widgets
import numpy as np
import pytest
import solara
from ipyvue import VueTemplate
from matplotlib.figure import Figure
from mesa.visualization.solara_viz import ModelController, ModelCreator, _check_model_params

from experiments import plots
from llm_runtime.accounting import Accounting
from model.model import EconomyModel
from visualization import app, assets, baselines, server
from visualization.charts import (FIGURE_SIZE, MIN_RELATIVE_SPAN, CurrentSchedule, HoursHistogram,
                                  ObjectiveChart, ScheduleHistory, distinct_series, hours_bins, png, readable_span,
                                  workers_axis)
from visualization.panels import (NETWORK_COLOURINGS, SKILL_LABEL, ElectionResults, LLMAccounting, RunStatus,
                                  SocialNetwork, WorkerInspector, worker_history)
from visualization.parameters import CONTROLS, DEFAULTS, DashboardEconomy

SMALL = {**DEFAULTS, "workers": "30", "max_steps": 20}
ROOT = Path(__file__).resolve().parent.parent


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
    assert "workers: 'lots' is not an integer; allowed: a whole number from 2 to 10000" in text_of(rc)
    click(rc, "Step")
    assert model.value.period == -1  # the stand-in default economy does not run
    assert rc.find(v.Btn, children=["Step"]).widget.disabled
    type_into(field(rc, "Workers (2-10000)"), "25")
    click(rc, "Reset")
    assert model.value.input_error is None and len(model.value.workforce) == 25
    assert "allowed: a whole number" not in text_of(rc)
    click(rc, "Step")
    assert model.value.time == 1


@pytest.mark.slow  # seconds of rendering and stepping
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


class CountingClient:
    """Stands for the LLM client a model holds as ``model.llm``: the panels read its ``accounting``."""

    def __init__(self):
        self.accounting = Accounting()


def test_llm_accounting_shows_requests_tokens_and_failures():
    model = DashboardEconomy(**SMALL)
    model.llm = CountingClient()
    model.llm.accounting.add(requests=12, prompt_tokens=900, completion_tokens=100)
    model.llm.accounting.failure("timeout")
    model.llm.accounting.failure("timeout")
    box, rc = solara.render(LLMAccounting(model), handle_error=False)
    assert "Requests: 12 · tokens: 1,000 · failures: 2" in text_of(rc)


def test_llm_counters_move_during_a_step_without_a_redraw():
    # an LLM step takes long: the run status and the accounting panel poll the counters meanwhile
    model = DashboardEconomy(**SMALL)
    model.llm = CountingClient()

    @solara.component
    def Panels():
        RunStatus(model)
        LLMAccounting(model)

    box, rc = solara.render(Panels(), handle_error=False)
    assert text_of(rc).count("Requests: 0 · tokens: 0 · failures: 0") == 2
    model.llm.accounting.add(requests=7, prompt_tokens=1200, completion_tokens=34)
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
    assert ("none (rational minds ask no LLM: Exact utility-maximising hours for all workers at once"
            in " ".join(text_of(rc).split()))  # the mind's own docstring describes it
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


@pytest.mark.slow  # seconds of rendering and stepping
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


@pytest.mark.slow  # seconds of rendering and stepping
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


@pytest.mark.slow  # a pytest process
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


def test_the_default_economy_moves_when_played():
    model = DashboardEconomy(**{**DEFAULTS, "workers": "30"})
    assert model.input_error is None and model.params.planner == "blackbox"
    first_rates, first_objective = tuple(model.schedule.rates), model.objective
    for _ in range(2 * int(DEFAULTS["tax_year_length"]) + 1):  # two tax-year ends
        model.step()
    assert len(model.planner.history) == 3
    assert tuple(model.schedule.rates) != first_rates and model.objective != first_objective


def test_slider_values_stay_in_view():
    # Vuetify shows a slider's value in its thumb label only while dragging; the app's CSS keeps it shown
    box, rc = solara.render(app.Layout(children=[app.page]), handle_error=False)
    assert ".v-slider__thumb-label-container { display: block !important; }" in text_of(rc)
    sliders = {w.label: w for w in rc.find(v.Slider).widgets}
    assert {"Tax-year length (steps)", "Steps to run", "Play Interval (ms)"} <= set(sliders)
    assert all(slider.thumb_label for slider in sliders.values())
    assert sliders["Tax-year length (steps)"].v_model == 5


def test_worker_history_labels_skill_and_counts_steps_in_whole_numbers():
    model = DashboardEconomy(**SMALL)
    model.step()
    history = worker_history(model, next(iter(model.workers)))
    assert SKILL_LABEL in history.columns and "skill" not in history.columns
    assert history.index.tolist() == [0, 1] and history.index.dtype.kind == "i"


def test_count_axes_tick_whole_workers_and_income_plots_show_both_distributions(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda figure, axes, path: drawn.append(axes) or path)
    plots.hours(np.array([38.0, 40.0, 41.0]), tmp_path / "hours.png")
    plots.income(np.array([3e4, 5e4, 8e4]), np.array([3.5e4, 4.8e4, 7e4]), tmp_path / "income.png")
    dashboard = Figure().subplots()
    dashboard.hist([40.0, 41.0, 42.0])
    workers_axis(dashboard)
    for axes in (*drawn, dashboard):
        assert all(float(tick).is_integer() for tick in axes.get_yticks())
    income = drawn[1]
    assert [patch.get_fill() for patch in income.patches] == [True, False]  # post-tax outlined over pre-tax


FAKE_NPM = """#!/bin/sh
# npm pack PACKAGE: a tarball holding package/package.json, its name on stdout
mkdir -p package && echo '{"name": "'"$2"'"}' > package/package.json && echo x > package/index.js
tar czf fake.tgz package && rm -r package && echo fake.tgz
"""


def test_missing_front_end_files_are_fetched_with_progress_lines(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(FAKE_NPM)
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cdn"
    monkeypatch.setattr(assets, "cache_dir", lambda: cache)
    lines = []
    assets.ensure(say=lines.append)
    assert assets.missing() == [] and (cache / "requirejs@2.3.6" / "index.js").exists()
    assert lines[0].startswith("dashboard: fetching Solara's front-end files from npm")
    assert lines[-1] == "dashboard: front-end files in place" and len(lines) == len(assets.needed()) + 2
    lines.clear()
    assets.ensure(say=lines.append)
    assert lines == []  # cached: nothing to say


def test_without_npm_the_browser_falls_back_to_the_cdn_when_it_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(assets, "cache_dir", lambda: tmp_path / "cdn")
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    monkeypatch.setattr(assets, "cdn_reachable", lambda timeout=3.0: True)
    lines = []
    assets.ensure(say=lines.append)
    assert lines == [f"dashboard: npm not found: {assets.INSTALL_NPM}; the browser will load Solara's front-end "
                     "files from cdn.jsdelivr.net"]


def test_a_failing_npm_is_reported_with_its_reason(tmp_path, monkeypatch):
    (tmp_path / "npm").write_text("#!/bin/sh\necho 'npm error code ENOTFOUND' >&2\nexit 1\n")
    (tmp_path / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(assets, "cache_dir", lambda: tmp_path / "cdn")
    monkeypatch.setattr(assets, "cdn_reachable", lambda timeout=3.0: False)
    with pytest.raises(assets.AssetsUnavailable, match="npm pack .* failed: npm error code ENOTFOUND"):
        assets.ensure(say=lambda line: None)
    assert not list((tmp_path / "cdn").rglob("package.json"))


def test_without_npm_or_cdn_the_dashboard_says_what_to_install_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(assets, "cache_dir", lambda: tmp_path / "cdn")
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    monkeypatch.setattr(assets, "cdn_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(server.subprocess, "Popen", None)  # the server must not start
    assert server.serve(port=1, wait=True) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "front-end files are missing" in err and "install npm" in err and "apt-get install npm" in err


STUB_SERVE = """
import sys
from visualization import server
# the Solara server replaced by a child that records its pid and sleeps
server.command = lambda host, port: [sys.executable, "-c",
    "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)", {pid_file!r}]
server.assets.ensure = lambda say: None
sys.exit(server.serve(port=1))
"""


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_server_child_too(tmp_path, stop_signal):
    pid_file = tmp_path / "child.pid"
    stub = textwrap.dedent(STUB_SERVE.format(pid_file=str(pid_file)))
    parent = subprocess.Popen([sys.executable, "-c", stub], cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.1)
        child = int(pid_file.read_text())
        parent.send_signal(stop_signal)
        assert parent.wait(timeout=60) == 128 + stop_signal
        with pytest.raises(ProcessLookupError):
            os.killpg(parent.pid, 0)  # nothing left in the dashboard's process group
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()


def test_a_flat_series_with_floating_point_noise_is_drawn_flat_without_offset_notation():
    figure = Figure(figsize=FIGURE_SIZE, dpi=72)
    level = 66.18724268

    def draw(figure, axes):
        axes.plot([0, 1, 2], [level, level + 1e-10, level - 1e-10])
        readable_span(axes)

    png(figure, draw)
    axes = figure.axes[0]
    low, high = axes.get_ylim()
    assert high - low >= MIN_RELATIVE_SPAN * level * 0.999  # the noise is a flat line, not a swing
    labels = [label.get_text() for label in axes.get_yticklabels()]
    assert axes.yaxis.get_offset_text().get_text() == "" and not any("e" in label for label in labels), labels


def test_hours_are_binned_to_their_own_spread():
    hours = np.random.default_rng(3).uniform(38.4, 40.5, 1000)  # everybody near 40 h
    bins = hours_bins(hours, 80.0)
    counts, _ = np.histogram(hours, bins)
    assert counts.sum() == hours.size and (counts > 0).sum() >= 5
    assert bins[0] >= 0 and bins[-1] <= 80.0
    wide = hours_bins(np.array([0.0, 80.0]), 80.0)
    assert wide[0] == 0.0 and wide[-1] == 80.0 and len(wide) <= 21


def test_baselines_that_coincide_are_one_labelled_line():
    same = np.linspace(1.0, 2.0, 5)
    merged = distinct_series({"us_federal": same, "saez": same + 1e-9, "oracle": same + 0.1})
    assert list(merged) == ["us_federal = saez", "oracle"]
