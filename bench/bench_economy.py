"""Benchmarks of the economy core; prints figures.

    python bench/bench_economy.py [--workers 1000000] [--loop-sample 20000] [--oracle-workers 1000]

1. One full model step (plan, work, settle, vote, collect) with N rational workers and
   agent collection off, best of 5 steps.
2. The naive comparison: a plain Mesa model whose agents compute their own best response (and
   tax) in ``Agent.step`` under ``shuffle_do``, timed on a sample and scaled to N.
3. The 7-bracket Stackelberg oracle with 1,000 workers.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import mesa
import numpy as np


from public_finance.economy import HOURS_CAP, best_response
from model.model import EconomyModel


def bench_step(workers: int) -> tuple[float, float, EconomyModel]:
    start = time.perf_counter()
    model = EconomyModel(workers=workers, population="paper_gb2", agent_interval=0, max_steps=10, rng=1)
    build = time.perf_counter() - start
    times = []
    for _ in range(5):
        start = time.perf_counter()
        model.step()
        times.append(time.perf_counter() - start)
    return build, min(times), model


class PlainWorker(mesa.Agent):
    """A worker of the naive model: its own best response and tax in plain Python, one agent at a time."""

    def __init__(self, model, skill: float):
        super().__init__(model)
        self.skill, self.hours, self.tax = skill, 0.0, 0.0

    def foc(self, hours: float, net_wage: float, income: float) -> float:
        """Marginal utility of an hour (log consumption, isoelastic disutility): falls with hours."""
        prefs = self.model.preferences
        return net_wage / (net_wage * hours + income) - prefs.kappa * hours ** (1.0 / prefs.frisch)

    def step(self):
        model, skill = self.model, self.skill
        edges, rates, taxes_at_edges = model.edges, model.rates, model.taxes_at_edges
        hours = HOURS_CAP
        for j, rate in enumerate(rates):  # rates rise, so utility is concave: the first segment the FOC ends in
            low = min(edges[j] / skill, HOURS_CAP)
            high = min(edges[j + 1] / skill, HOURS_CAP) if j + 1 < len(edges) else HOURS_CAP
            net_wage = skill * (1.0 - rate)
            income = model.rebate + rate * edges[j] - taxes_at_edges[j] + model.preferences.base_consumption
            if high > low and self.foc(high, net_wage, income) < 0:
                if low > 0 and self.foc(low, net_wage, income) <= 0:
                    hours = low
                    break
                for _ in range(60):  # bisection
                    middle = 0.5 * (low + high)
                    low, high = (middle, high) if self.foc(middle, net_wage, income) > 0 else (low, middle)
                hours = 0.5 * (low + high)
                break
        self.hours = hours
        income = skill * hours
        self.tax = sum(rate * max(0.0, min(income, upper) - lower)
                       for rate, lower, upper in zip(rates, edges, [*edges[1:], math.inf]))


class PlainEconomy(mesa.Model):
    """The same economy written as a plain Mesa model: state on agents, ``shuffle_do("step")``."""

    def __init__(self, skills, schedule, preferences, rebate: float, rng=None):
        super().__init__(rng=rng)
        lower_z, _, rates = schedule.segments()
        self.edges, self.rates = lower_z.tolist(), rates.tolist()
        self.taxes_at_edges = schedule.tax(lower_z).tolist()
        self.preferences, self.rebate = preferences, rebate
        for skill in skills:
            PlainWorker(self, float(skill))

    def step(self):
        self.agents.shuffle_do("step")
        self.rebate = float(np.mean(self.agents.get("tax")))


def bench_plain_mesa(model: EconomyModel, sample: int) -> float:
    """Seconds per worker of one step of the plain Mesa model, on ``sample`` of the model's workers."""
    plain = PlainEconomy(model.workforce.skill[:sample], model.schedule, model.preferences, model.expected_rebate,
                         rng=1)
    start = time.perf_counter()
    plain.step()
    seconds = (time.perf_counter() - start) / sample
    ours = np.array(plain.agents.get("hours"))
    exact = best_response(model.workforce.skill[:sample], model.schedule, model.expected_rebate, model.preferences)
    print(f"plain Mesa hours agree with the vectorised best response to {np.max(np.abs(ours - exact)):.1e} h")
    return seconds


def machine_state() -> str:
    load = os.getloadavg()[0]
    return f"{'quiet' if load < 0.5 * (os.cpu_count() or 1) else 'loaded'} machine (load average {load:.1f})"


def bench_oracle(workers: int) -> tuple[float, EconomyModel]:
    start = time.perf_counter()
    model = EconomyModel(workers=workers, population="paper_gb2", planner="oracle", agent_interval=0, max_steps=1,
                         rng=1)
    return time.perf_counter() - start, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1_000_000)
    parser.add_argument("--plain-sample", type=int, default=20_000)
    parser.add_argument("--oracle-workers", type=int, default=1000)
    args = parser.parse_args()

    print(f"started on a {machine_state()}")
    build, step, model = bench_step(args.workers)
    per_worker = bench_plain_mesa(model, args.plain_sample)
    plain = per_worker * args.workers
    print(f"model construction, {args.workers:,} workers: {build:.2f} s")
    print(f"one full step, {args.workers:,} rational workers (agent collection off): {step:.3f} s")
    print(f"plain Mesa model, best response in Agent.step under shuffle_do: {1e6 * per_worker:.1f} us/worker "
          f"-> {plain:.1f} s for {args.workers:,} (timed on {args.plain_sample:,})")
    print(f"speed-up of the batched step over the plain Mesa model: {plain / step:.0f}x")
    seconds, oracle = bench_oracle(args.oracle_workers)
    rates = " ".join(f"{100 * r:.0f}" for r in oracle.schedule.rates)
    print(f"7-bracket oracle, {args.oracle_workers:,} workers: {seconds:.1f} s (rates % {rates}, "
          f"objective {oracle.objective:.4f})")
    print(f"finished on a {machine_state()}")


if __name__ == "__main__":
    main()
