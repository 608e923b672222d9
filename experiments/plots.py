"""PNG plots of a run (matplotlib's Agg canvas, no display needed)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

DPI = 110


def _figure(title: str, xlabel: str, ylabel: str):
    figure = Figure(figsize=(7, 4.2), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    return figure, axes


def _counts(axes) -> None:
    """Whole numbers on a count axis (matplotlib would tick 0.5 workers on small populations)."""
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def _save(figure: Figure, axes, path: Path) -> Path:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def rates(frame: pd.DataFrame, path: Path) -> Path:
    """Marginal rate of each bracket over time."""
    figure, axes = _figure("Marginal rates per bracket", "step", "rate (%)")
    for column in [c for c in frame.columns if c.startswith("rate_")]:
        axes.step(frame.index, 100 * frame[column], where="post", label=f"bracket {column.split('_')[1]}")
    axes.set_ylim(-2, 102)
    return _save(figure, axes, path)


def objective(frame: pd.DataFrame, baselines: dict[str, pd.DataFrame], name: str, label: str, path: Path) -> Path:
    """The run's objective over time, with each baseline's as a dashed line."""
    figure, axes = _figure(f"Objective ({name}) over time", "step", name)
    axes.plot(frame.index, frame["objective"], linewidth=2.2, color="black", label=label)
    for baseline, data in baselines.items():
        axes.plot(data.index, data["objective"], linestyle="--", linewidth=1.2, label=baseline)
    return _save(figure, axes, path)


def hours(values: np.ndarray, path: Path, cap: float = 100.0) -> Path:
    """Distribution of hours worked in the last step."""
    figure, axes = _figure("Hours worked (last step)", "hours per week", "workers")
    axes.hist(np.asarray(values, dtype=float), bins=np.linspace(0, cap, 26), color="tab:blue", edgecolor="white")
    _counts(axes)
    return _save(figure, axes, path)


def income(pre_tax: np.ndarray, post_tax: np.ndarray, path: Path) -> Path:
    """Pre- and post-tax income distributions in the last step: pre-tax filled, post-tax outlined on top, so
    neither hides the other; the top 1% are pooled in the last bin, so the bulk is not squeezed into a few."""
    figure, axes = _figure("Income (last step)", "annual income (top 1% pooled in the last bin)", "workers")
    pre, post = np.asarray(pre_tax, dtype=float), np.asarray(post_tax, dtype=float)
    both = np.concatenate([pre, post])
    top = max(float(np.quantile(both, 0.99)), 1.0)
    bins = np.linspace(min(0.0, both.min()), top, 31)
    axes.hist(np.minimum(pre, top), bins=bins, histtype="stepfilled", alpha=0.35, color="tab:orange",
              edgecolor="tab:orange", linewidth=1.2, label="pre-tax")
    axes.hist(np.minimum(post, top), bins=bins, histtype="step", color="tab:green", linewidth=2.2,
              label="post-tax (with rebate)")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"${value / 1000:,.0f}k"))
    _counts(axes)
    return _save(figure, axes, path)


def elections(records: list[dict], path: Path) -> Path:
    """Vote share of each tax year's winner, labelled with the winner."""
    figure, axes = _figure("Elections", "election (tax year)", "winner's vote share (%)")
    shares, labels = [], []
    for record in records:
        votes = Counter({int(k): v for k, v in record["votes"].items()})
        total = sum(votes.values()) or 1
        shares.append(100 * votes.get(int(record["leader"]), 0) / total)
        labels.append(f"worker {record['leader']}")
    positions = np.arange(1, len(records) + 1)
    axes.bar(positions, shares, color="tab:purple")
    for x, share, label in zip(positions, shares, labels, strict=True):
        axes.annotate(label, (x, share), ha="center", va="bottom", fontsize=8)
    axes.set_xticks(positions)
    axes.set_ylim(0, 105)
    return _save(figure, axes, path)
