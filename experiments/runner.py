"""One model run: keyword arguments from settings, and stepping with a progress bar (ETA, requests/s, tokens)."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from experiments.cli import PARAMETERS
from llm_runtime.errors import StoreCorruptError, StoreError  # noqa: F401 - run.py reports them

__all__ = ["Interrupted", "ResultsNotWritten", "StoreCorruptError", "StoreError", "SweepFailed", "TooManyFailures",
           "baseline_kwargs", "failure_rate", "llm_postfix", "model_kwargs", "step_all", "writing"]


class Interrupted(Exception):
    """Ctrl-C, or LLM servers that stopped answering (``reason``), stopped a run; what is stored is kept and
    ``resume`` continues it (not for a replay, which leaves nothing: ``replay`` again)."""

    def __init__(self, out, step: int | None = None, total: int | None = None, replay: bool = False,
                 reason: str | None = None):
        self.out, self.step, self.total, self.replay, self.reason = out, step, total, replay, reason
        super().__init__(f"interrupted at step {step} of {total}" + (f": {reason}" if reason else ""))


class SweepFailed(Exception):
    """A run of the sweep failed; the finished runs are kept and ``resume`` runs the rest."""

    def __init__(self, out, reason: str):
        self.out = out
        super().__init__(reason)


class ResultsNotWritten(Exception):
    """A results folder could not be written (disk full, read-only, I/O error). ``kept``: what was stored stays
    in the staging folder, and ``resume`` continues; otherwise (a replay, a comparison) nothing is left."""

    def __init__(self, out, error: OSError, kept: bool = True):
        self.out, self.error, self.kept = out, error, kept
        detail = error.strerror or (str(error).splitlines()[0] if str(error) else type(error).__name__)
        name = getattr(error, "filename", None)
        super().__init__(f"{Path(name).name}: {detail}" if name else detail)


@contextmanager
def writing(out, kept: bool = True):
    """An OSError raised in the block (while writing the results of ``out``) as :class:`ResultsNotWritten`."""
    try:
        yield
    except OSError as error:
        raise ResultsNotWritten(out, error, kept) from error


class TooManyFailures(Exception):
    """A run whose share of failed LLM requests ended above ``--max-failure-rate`` (its results are written)."""

    def __init__(self, out, stats: dict, limit: float):
        self.out, self.stats, self.limit = out, stats, limit
        failed = sum(stats["failures"].values())
        super().__init__(f"{failed} of {stats['requests']} LLM requests failed ({100 * failure_rate(stats):.1f} %, "
                         f"above --max-failure-rate {100 * limit:g} %); results in {out}")


def failure_rate(stats: dict) -> float:
    """The share of a client's requests that ended without a valid answer."""
    return sum(stats["failures"].values()) / stats["requests"] if stats["requests"] else 0.0


def model_kwargs(s: dict, *, seed: int, run_id: str, store: str | None, store_mode: str = "record",
                 agent_interval: int = 0, **overrides) -> dict:
    """``EconomyModel`` keyword arguments for the settings ``s`` (names as in run.py's flags)."""
    kwargs = {name: s[name] for name in PARAMETERS if name in s}
    kwargs.update(agent_interval=agent_interval, llm_store=store, llm_store_mode=store_mode, run_id=run_id,
                  rng=seed, **overrides)
    return kwargs


# what makes the economy (population, preferences, taxes, objective, time); not who decides or how (minds,
# planner, scenario, network, LLM settings)
BASELINE_SHARED = ("workers", "preset", "brackets", "objective", "tax_year_length", "max_steps", "population", "eta",
                   "frisch", "hours_grid", "standard_deduction", "initial_rates")


def baseline_kwargs(s: dict, planner: str, **overrides) -> dict:
    """A baseline planner with rational workers on the same economy, population and seed (no data per worker)."""
    kwargs = {name: s[name] for name in BASELINE_SHARED if name in s}
    kwargs.update(planner=planner, agent_interval=0, rng=s["seed"], **overrides)
    return kwargs


def llm_postfix(model, elapsed: float) -> str:
    """Requests/s (answers from servers), tokens, failures, store hits, the in-flight limit and 429 waits so far."""
    if model.llm is None:
        return ""
    stats = model.llm.accounting.to_dict()
    tokens = stats["prompt_tokens"] + stats["completion_tokens"]
    limit = getattr(model.llm, "limit", None)
    return (f"req/s={stats['calls'] / max(elapsed, 1e-9):.1f} tokens={tokens:,} "
            f"failures={sum(stats['failures'].values())} stored={stats['store_hits']}"
            + (f" limit={limit:,}" if limit is not None else "")
            + (f" 429-waits={stats['rate_limit_waits']:,}" if stats.get("rate_limit_waits") else ""))


def step_all(model, desc: str, progress: bool = True) -> float:
    """Step ``model`` until it stops; returns the seconds taken. KeyboardInterrupt propagates."""
    start = time.perf_counter()
    bar = tqdm(total=model.max_steps, initial=int(model.time), desc=desc, unit="step", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    done = threading.Event()

    def tick():  # LLM steps can be long: refresh the counters while a step runs
        while not done.wait(1.0):
            bar.set_postfix_str(llm_postfix(model, time.perf_counter() - start), refresh=True)

    ticker = threading.Thread(target=tick, daemon=True) if progress and model.llm is not None else None
    if ticker:
        ticker.start()
    try:
        while model.running:
            model.step()
            bar.set_postfix_str(llm_postfix(model, time.perf_counter() - start), refresh=False)
            bar.update(1)
    finally:
        done.set()
        if ticker:
            ticker.join()
        bar.close()
    return time.perf_counter() - start
