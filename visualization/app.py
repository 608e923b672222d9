"""The LLM Economist dashboard: ``solara run visualization/app.py`` or :func:`visualization.server.serve`.

Mesa's :class:`~mesa.visualization.SolaraViz` supplies the sidebar (step/play/reset controller,
the model parameters of :data:`~visualization.parameters.CONTROLS`, the step counter) and lays
the panels out in a draggable grid on two pages: the economy (page 0) and its agents (page 1).
Reset builds a new :class:`~visualization.parameters.DashboardEconomy` from the controls.

Every browser session starts from the module-level model below and gets a model of its own on
its first Reset. :func:`Layout` is the page's frame: Solara's app layout plus the dashboard's CSS.
"""

from __future__ import annotations

import os

import solara
from mesa.visualization import SolaraViz

from experiments.plugins import load_plugins
from visualization.server import PLUGINS_VARIABLE

# first: the controls list the names registered when they are built
load_plugins([path for path in os.environ.get(PLUGINS_VARIABLE, "").split(os.pathsep) if path])

from visualization.charts import (CurrentSchedule, HoursHistogram, IncomeDistribution,  # noqa: E402
                                  InequalityChart, ObjectiveChart, ScheduleHistory)
from visualization.panels import (ElectionResults, InequalitySummary, LLMAccounting, RunStatus,  # noqa: E402
                                  SocialNetwork, WorkerInspector)
from visualization.parameters import CONTROLS, DEFAULTS, DashboardEconomy  # noqa: E402

PAGES = {
    "Economy": [RunStatus, CurrentSchedule, ObjectiveChart, ScheduleHistory, HoursHistogram,
                IncomeDistribution, InequalityChart, InequalitySummary],
    "Agents": [RunStatus, ElectionResults, SocialNetwork, WorkerInspector, LLMAccounting],
}
"""The panels of each page of the grid, in order (SolaraViz names the pages "Page 0", "Page 1")."""

PANEL_HEIGHT_PX = 380  # a SolaraViz grid cell: 10 rows of 30 px with 10 px gaps


def fitted(panel):
    """``panel`` in a box the height of its grid cell, scrolling when the content is taller."""

    @solara.component
    def Fitted(model):
        with solara.Column(style={"max-height": f"{PANEL_HEIGHT_PX}px", "overflow-y": "auto"}):
            panel(model)

    return Fitted


COMPONENTS = [(fitted(panel), page) for page, panels in enumerate(PAGES.values()) for panel in panels]
"""``components`` for :class:`~mesa.visualization.SolaraViz`: ``(component, page)`` pairs."""

NAME = "LLM Economist"
PLAY_INTERVAL_MS = 200

# Vuetify shows a slider's value in its thumb label only while the slider is dragged, and SolaraViz
# builds its sliders without a way to change that; the rule keeps every thumb label in view
SLIDER_VALUES_CSS = """
.v-slider .v-slider__thumb-label-container { display: block !important; }
.v-slider .v-slider__thumb-label.v-slider__thumb-label {
    transform: translateX(-50%) !important; bottom: auto; top: 7px; width: auto !important;
    height: auto !important; min-width: 20px; border-radius: 0; font-size: 0.75rem;
    background-color: transparent !important; color: rgba(0, 0, 0, 0.6) !important;
}
.theme--dark .v-slider .v-slider__thumb-label.v-slider__thumb-label {
    color: rgba(255, 255, 255, 0.7) !important;
}
.v-slider .v-slider__thumb-label > * { transform: none !important; }
.v-input__slider { padding-bottom: 12px; }
"""


@solara.component
def Layout(children=()):
    """Solara's app layout (what ``solara run`` uses by default) around the page and the dashboard's CSS."""
    # one child: AppLayout would take the first of several for its sidebar
    solara.AppLayout(children=[solara.Div(children=[solara.Style(SLIDER_VALUES_CSS), *children])])


model = DashboardEconomy(**DEFAULTS)
page = SolaraViz(model, components=COMPONENTS, model_params=CONTROLS, name=NAME,
                 play_interval=PLAY_INTERVAL_MS)
page  # noqa: B018
