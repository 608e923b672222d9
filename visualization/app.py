"""The LLM Economist dashboard: ``solara run visualization/app.py`` or :func:`visualization.server.serve`.

Mesa's :class:`~mesa.visualization.SolaraViz` supplies the sidebar (step/play/reset controller,
the model parameters of :data:`~visualization.parameters.CONTROLS`, the step counter) and lays
the panels out in a draggable grid on two pages: the economy (page 0) and its agents (page 1).
Reset builds a new :class:`~visualization.parameters.DashboardEconomy` from the controls.

Every browser session starts from the module-level model below and gets a model of its own on
its first Reset.
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

model = DashboardEconomy(**DEFAULTS)
page = SolaraViz(model, components=COMPONENTS, model_params=CONTROLS, name=NAME,
                 play_interval=PLAY_INTERVAL_MS)
page  # noqa: B018
