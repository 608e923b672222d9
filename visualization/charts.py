"""Matplotlib chart components: tax schedule, objective with baselines, distributions and time series.

Each chart draws a small PNG only when the data it shows changes (its memo key), so a step
redraws the time series but not, say, an unchanged hours histogram. The time series redrawn every
step keep their axes and update their lines in place, which halves the cost of a redraw.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import solara
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mesa.visualization.utils import update_counter

from visualization.baselines import baseline_objectives

BASELINE_COLOURS = {"us_federal": "tab:red", "saez": "tab:green", "oracle": "tab:purple"}
# a chart fills its grid cell (about 520 x 390 px at 1500 px wide) and its smallest text, 8 pt, is 11 px
FIGURE_SIZE = (5.0, 3.3)
DPI = 100


def png(figure: Figure, draw: Callable) -> bytes:
    """PNG bytes of ``figure`` cleared and drawn on by ``draw(figure, axes)``.

    Reusing one figure per chart keeps its renderer, whose text-layout cache makes redraws cheaper.
    """
    figure.clear()
    axes = figure.subplots()
    plain_numbers(axes)
    figure.subplots_adjust(left=0.14, right=0.88, bottom=0.2, top=0.9)
    draw(figure, axes)
    return encode(figure)


def plain_numbers(axes) -> None:
    """Tick labels as the numbers themselves: never an offset (``1e-10+6.6e1``) or a scientific multiplier."""
    axes.ticklabel_format(useOffset=False, style="plain")


MIN_RELATIVE_SPAN = 0.01  # a series that moves by less than 1 % of its level is shown as flat


def readable_span(axes) -> None:
    """Widen the y-axis to at least :data:`MIN_RELATIVE_SPAN` of its level, so that floating-point noise in a
    flat series is drawn as the flat line it is, not as a swing across the whole chart."""
    low, high = axes.get_ylim()
    middle = (low + high) / 2
    span = MIN_RELATIVE_SPAN * max(abs(middle), 1e-3)
    if high - low < span:
        axes.set_ylim(middle - span / 2, middle + span / 2)


def encode(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def redraw(figure: Figure, state: dict, draw: Callable, update: Callable | None, layout) -> bytes:
    """PNG bytes of the chart: ``update(artists)`` on the figure last drawn for the same ``layout``,
    else a fresh ``draw(figure, axes)`` whose return value becomes the ``artists``."""
    if update is not None and state.get("layout", object()) == layout:
        update(state["artists"])
        return encode(figure)
    artists = {}
    image = png(figure, lambda figure, axes: artists.update(artists=draw(figure, axes)))
    state.update(layout=layout, artists=artists.get("artists"))
    return image


def update_lines(artists: dict) -> None:
    """Give each line of ``artists["lines"]`` (line -> y values) its new data, then rescale the axes."""
    for line, values in artists["lines"].items():
        line.set_data(np.arange(values.size), values)
    for axes in artists["axes"]:
        axes.relim()
        axes.autoscale_view()
        readable_span(axes)


@solara.component
def Chart(draw: Callable, key: list, size=FIGURE_SIZE, update: Callable | None = None, layout=None):
    """A chart redrawn only when ``key`` changes.

    With ``update``, a redraw for the same ``layout`` as the last one calls ``update(artists)`` on the
    existing figure (``artists`` is what ``draw`` returned) instead of drawing it again.
    """
    figure = solara.use_memo(lambda: Figure(figsize=size, dpi=DPI), [])
    state = solara.use_memo(dict, [])
    image = solara.use_memo(lambda: redraw(figure, state, draw, update, layout), key)
    solara.Image(image, format="png")


def bracket_labels(schedule) -> list[str]:
    def dollars(value):
        return f"${value / 1000:,.0f}k" if value >= 1000 else f"${value:,.0f}"
    return [f"{dollars(lo)}+" for lo in schedule.edges]


def model_series(model, column: str) -> np.ndarray:
    return np.asarray(model.datacollector.model_vars[column], dtype=float)


def steps_axis(axes):
    axes.set_xlabel("Step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def workers_axis(axes):
    """A count of workers: whole-number ticks."""
    axes.set_ylabel("workers")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


@solara.component
def CurrentSchedule(model):
    """Marginal rate per bracket in force now."""
    update_counter.get()
    schedule = model.schedule

    def draw(figure, axes):
        axes.set_title("Tax schedule in force", fontsize=11)
        axes.bar(range(schedule.n_brackets), 100 * schedule.rates, color="tab:blue")
        axes.set_xticks(range(schedule.n_brackets), bracket_labels(schedule), rotation=30, fontsize=8)
        axes.set_ylabel("marginal rate (%)")
        axes.set_ylim(0, 100)
        if schedule.deduction:
            axes.set_xlabel(f"taxable income (after a ${schedule.deduction:,.0f} deduction)", fontsize=9)

    Chart(draw, [id(model), tuple(schedule.rates)])


@solara.component
def ScheduleHistory(model):
    """Each bracket's rate over the run: the rates the planner set, each in force until the next change."""
    update_counter.get()
    history = model.planner.history

    now = max(int(model.time), 1)  # drawn up to the step shown, not to the end of the run

    def draw(figure, axes):
        steps = [step for step, _ in history] + [now]
        rates = np.array([rates for _, rates in history] + [history[-1][1]])
        axes.set_title(f"Rate history ({len(history) - 1} changes)", fontsize=11)
        lines = [axes.step(steps, 100 * rates[:, j], where="post", label=label)[0]
                 for j, label in enumerate(bracket_labels(model.schedule))]
        axes.set_ylabel("marginal rate (%)")
        axes.set_ylim(0, 100)
        axes.set_xlim(0, now)
        steps_axis(axes)
        axes.legend(fontsize=8, ncol=2, loc="upper left")
        return {"lines": lines, "axes": axes}

    def update(artists):  # a step without new rates: the last rates reach one step further
        for line in artists["lines"]:
            steps, rates = line.get_data()
            line.set_data(np.append(np.asarray(steps)[:-1], now), rates)
        artists["axes"].set_xlim(0, now)

    Chart(draw, [id(model), len(history), now], update=update, layout=(id(model), len(history)))


def distinct_series(series: dict[str, np.ndarray], tolerance: float = 1e-6) -> dict[str, np.ndarray]:
    """The series with those that coincide (within ``tolerance`` of their level at every step) merged into one,
    labelled with every name (``saez = us_federal``): dashed lines drawn on top of each other would show one."""
    merged: dict[str, np.ndarray] = {}
    for name, values in series.items():
        same = next((label for label, kept in merged.items() if kept.shape == values.shape and np.allclose(
            kept, values, rtol=tolerance, atol=tolerance * max(1.0, float(np.max(np.abs(kept)))))), None)
        if same is None:
            merged[name] = values
        else:
            merged[f"{same} = {name}"] = merged.pop(same)
    return merged


@solara.component
def ObjectiveChart(model):
    """The planner's objective over time, with the baseline planners' on the same population."""
    update_counter.get()
    baselines = solara.use_memo(lambda: baseline_objectives(model.model_kwargs), [id(model)])
    now = int(model.time)

    def draw(figure, axes):
        objective = model_series(model, "objective")
        axes.set_title(f"Objective: {model.objective_name}", fontsize=11)
        run, = axes.plot(np.arange(objective.size), objective, color="tab:blue", linewidth=2, label="this run")
        drawn = distinct_series({name: series for name, series in baselines.items() if not isinstance(series, str)})
        for label, series in drawn.items():
            axes.plot(np.arange(series.size), series, linestyle="--",
                      color=BASELINE_COLOURS[label.split(" = ")[0]], label=label)
        steps_axis(axes)
        readable_span(axes)
        axes.legend(fontsize=8, loc="lower right")
        return {"run": run, "axes": [axes]}

    def update(artists):
        update_lines({"lines": {artists["run"]: model_series(model, "objective")}, "axes": artists["axes"]})

    Chart(draw, [id(model), now], update=update, layout=id(model))
    for name, series in baselines.items():
        if isinstance(series, str):
            solara.Text(f"{name}: {series}")


def round_up(value: float, digits: int = 2) -> float:
    """``value`` rounded up to ``digits`` significant digits."""
    unit = 10.0 ** (np.floor(np.log10(value)) - digits + 1)
    return float(np.ceil(value / unit) * unit)


HOURS_BIN_WIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)


def hours_bins(hours: np.ndarray, cap: float, bins: int = 20) -> np.ndarray:
    """Bin edges over the hours' own spread (whole hours or fractions of one, about ``bins`` bins), within
    [0, ``cap``]: hours bunched near 40 get several bars, not one."""
    low, high = float(np.min(hours)), float(np.max(hours))
    width = next((w for w in HOURS_BIN_WIDTHS if (high - low) / w <= bins), cap / bins)
    start = max(0.0, np.floor(low / width) * width - width)
    stop = min(cap, np.ceil(high / width) * width + width)
    return np.arange(start, stop + width / 2, width)


@solara.component
def HoursHistogram(model):
    """Distribution of weekly hours this step."""
    update_counter.get()
    hours = model.workforce.hours
    bins = hours_bins(hours, model.hours_cap)
    mean = f"{hours.mean():.1f}"

    def draw(figure, axes):
        axes.set_title(f"Weekly hours (mean {mean})", fontsize=11)
        axes.hist(hours, bins=bins, color="tab:orange", edgecolor="white")
        axes.set_xlabel("hours per week")
        workers_axis(axes)

    # keyed by what the picture shows, not the raw hours: small moves within a bin need no new PNG
    Chart(draw, [id(model), mean, np.histogram(hours, bins)[0].tobytes()])


@solara.component
def IncomeDistribution(model):
    """Pre-tax and post-tax (after tax and rebate) income this step."""
    update_counter.get()
    outcome = model.outcome
    # the top 1% pooled in the last bin, whose edge is rounded so that it moves only with the distribution
    top = round_up(max(np.quantile(outcome.income, 0.99),
                       np.quantile(outcome.income - outcome.tax + outcome.rebate, 0.99), 1.0))
    pre_tax = np.minimum(outcome.income, top)
    post_tax = np.minimum(outcome.income - outcome.tax + outcome.rebate, top)
    bins = np.linspace(0, top, 31)

    def draw(figure, axes):
        axes.set_title("Income distribution", fontsize=11)
        # pre-tax filled, post-tax outlined on top: where they overlap both stay visible
        axes.hist(pre_tax, bins=bins, histtype="stepfilled", alpha=0.35, color="tab:blue", edgecolor="tab:blue",
                  label="pre-tax")
        axes.hist(post_tax, bins=bins, histtype="step", linewidth=2, color="tab:green", label="post-tax + rebate")
        axes.set_xlabel("annual income ($; top 1% pooled in the last bin)", fontsize=9)
        workers_axis(axes)
        axes.legend(fontsize=8)

    counts = [np.histogram(values, bins)[0].tobytes() for values in (pre_tax, post_tax)]
    Chart(draw, [id(model), top, *counts])


@solara.component
def InequalityChart(model):
    """Gini coefficients of pre- and post-tax income (left axis) and mean income (right axis) over time."""
    update_counter.get()

    def series():
        return {"gini_pre_tax": model_series(model, "gini_pre_tax"),
                "gini_post_tax": model_series(model, "gini_post_tax"),
                "mean_income": model_series(model, "mean_income") / 1000}

    def draw(figure, axes):
        axes.set_title("Gini coefficients and mean income", fontsize=11)
        values = series()
        lines = {}
        for column, colour in (("gini_pre_tax", "tab:blue"), ("gini_post_tax", "tab:green")):
            lines[column], = axes.plot(np.arange(values[column].size), values[column], color=colour,
                                       label=column.replace("_", " "))
        axes.set_ylabel("Gini")
        steps_axis(axes)
        income = axes.twinx()
        plain_numbers(income)
        lines["mean_income"], = income.plot(np.arange(values["mean_income"].size), values["mean_income"],
                                            color="tab:grey", linestyle=":", label="mean income")
        income.set_ylabel("mean income ($k)")
        figure.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.14, 0.2))
        for shown in (axes, income):
            readable_span(shown)
        return {"lines": lines, "axes": [axes, income]}

    def update(artists):
        values = series()
        update_lines({"lines": {line: values[column] for column, line in artists["lines"].items()},
                      "axes": artists["axes"]})

    Chart(draw, [id(model), int(model.time)], update=update, layout=id(model))
