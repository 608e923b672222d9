"""The LLM Economist dashboard: ``solara run visualization/app.py`` or :func:`visualization.server.serve`.

Mesa's :class:`~mesa.visualization.SolaraViz` supplies the sidebar (step/play/reset
controller, model parameters, step counter) and owns the reactive model; the panels are
laid out in two tabs beside it. (SolaraViz's own draggable grid loads a Vue 2 library that
fails under the Vue 3 front end of solara 1.64 with ipyvue 3, leaving the page blank.)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `solara run` imports this file by path

import solara  # noqa: E402
from mesa.visualization import SolaraViz  # noqa: E402

from visualization.charts import (CurrentSchedule, HoursHistogram, IncomeDistribution,  # noqa: E402
                                  InequalityChart, ObjectiveChart, ScheduleHistory)
from visualization.panels import (ElectionResults, InequalitySummary, LLMAccounting, RunStatus,  # noqa: E402
                                  SocialNetwork, WorkerInspector)
from visualization.parameters import CONTROLS, DEFAULTS, DashboardEconomy  # noqa: E402

TABS = {
    "Economy": [CurrentSchedule, ObjectiveChart, ScheduleHistory, HoursHistogram, IncomeDistribution,
                InequalityChart, InequalitySummary],
    "Agents": [ElectionResults, SocialNetwork, WorkerInspector, LLMAccounting],
}


@solara.component
def Panels(model, tab: str):
    """The run status and the panels of one tab, two per row."""
    RunStatus(model)
    with solara.GridFixed(columns=2):
        for panel in TABS[tab]:
            with solara.Card(margin=0, classes=["dashboard-panel"]):
                panel(model)


@solara.component
def Dashboard():
    """SolaraViz's controls in the sidebar, the panels in tabs; one model per browser session."""
    model = solara.use_reactive(solara.use_memo(lambda: DashboardEconomy(**DEFAULTS), []))
    tab, set_tab = solara.use_state(next(iter(TABS)))
    SolaraViz(model, components=[], model_params=CONTROLS, name="LLM Economist", play_interval=200)
    solara.ToggleButtonsSingle(value=tab, values=list(TABS), on_value=set_tab)
    Panels(model.value, tab)


page = Dashboard()
