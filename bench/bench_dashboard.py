"""Benchmarks of the dashboard; prints figures.

    python bench/bench_dashboard.py [--workers 100] [--steps 30] [--no-browser]

1. Server side: one model step plus the redraw of the dashboard's SolaraViz page showing one of its
   pages of panels (Solara render, matplotlib PNG encoding included), headless, median and 90th
   percentile.
2. In the browser (when /usr/bin/chromium and playwright are present): press Step on the
   running dashboard until the new step counter and plots are in the DOM.
Goal: one step plus redraw with 100 workers within 300 ms (median); the exit status is 1 when a
headless median misses it.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ipyvuetify as v
import solara
from mesa.visualization import SolaraViz
from mesa.visualization.utils import force_update

from visualization.app import COMPONENTS, NAME, PAGES
from visualization.baselines import baseline_objectives
from visualization.parameters import CONTROLS, DEFAULTS, DashboardEconomy

GOAL_MS = 300.0


def summary(times_ms: list[float]) -> str:
    ordered = sorted(times_ms)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"median {statistics.median(ordered):6.1f} ms, p90 {p90:6.1f} ms, max {ordered[-1]:6.1f} ms"


def bench_headless(workers: int, steps: int, page: int) -> float:
    model = DashboardEconomy(**{**DEFAULTS, "workers": str(workers), "max_steps": steps + 10})
    start = time.perf_counter()
    baseline_objectives(model.model_kwargs)
    baselines_s = time.perf_counter() - start
    start = time.perf_counter()
    box, context = solara.render(SolaraViz(model, components=COMPONENTS, model_params=CONTROLS, name=NAME),
                                 handle_error=False)
    context.find(v.Tabs).widget.v_model = page
    first_ms = 1000 * (time.perf_counter() - start)
    step_ms, total_ms = [], []
    for _ in range(steps):
        start = time.perf_counter()
        model.step()
        stepped = time.perf_counter()
        force_update()  # what the model controller does after a step: every panel redraws
        done = time.perf_counter()
        step_ms.append(1000 * (stepped - start))
        total_ms.append(1000 * (done - start))
    context.close()
    median = statistics.median(total_ms)
    name = list(PAGES)[page]
    print(f"page {page} ({name}, {len(PAGES[name])} panels), {workers} workers: "
          f"baselines {baselines_s:.2f} s once, first render {first_ms:.0f} ms")
    print(f"  step alone:        {summary(step_ms)}")
    print(f"  step plus redraw:  {summary(total_ms)}  [goal <= {GOAL_MS:.0f} ms: "
          f"{'met' if median <= GOAL_MS else 'MISSED'}]")
    return median


def bench_browser(workers: int, steps: int) -> None:
    chromium = Path("/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("browser: skipped (playwright not installed)")
        return
    if not chromium.exists():
        print(f"browser: skipped ({chromium} not found)")
        return
    from visualization import server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)
    process = server.serve(port=port, wait=False, stdout=log, stderr=subprocess.STDOUT)
    try:
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
        with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
            context = playwright.chromium.launch_persistent_context(profile, executable_path=str(chromium),
                                                                    args=args, headless=True,
                                                                    viewport={"width": 1500, "height": 1100})
            page = context.new_page()
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"dashboard server exited with {process.returncode}; log: {log.name}")
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            page.get_by_text("Time: 0.0").wait_for(timeout=90_000)
            page.wait_for_function("document.querySelectorAll('img').length >= 6", timeout=60_000)
            field = page.get_by_label("Workers (2-10000)")
            field.fill(str(workers))
            field.press("Enter")
            page.get_by_role("button", name="Reset", exact=True).click()
            page.get_by_text(f"{workers} workers").wait_for()
            times_ms, counter_ms = [], []
            button = page.get_by_role("button", name="Step", exact=True)
            for step in range(1, steps + 1):
                before = page.locator("img").evaluate_all("images => images.map(image => image.src)")
                start = time.perf_counter()
                button.click()
                page.wait_for_function("n => document.body.innerText.includes(`Step ${n} of`)", arg=step,
                                       polling=10)
                counter_ms.append(1000 * (time.perf_counter() - start))
                # the objective chart
                page.wait_for_function(f"document.images[1].src !== {before[1]!r}", polling=10)
                times_ms.append(1000 * (time.perf_counter() - start))
            context.close()
        print(f"browser (chromium), {workers} workers, click Step until")
        print(f"  the step counter updates:      {summary(counter_ms)}")
        print(f"  counter and plots update:      {summary(times_ms)}")
    finally:
        process.terminate()
        process.wait(timeout=10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--no-browser", action="store_true", help="skip the browser measurement")
    parser.add_argument("--no-headless", action="store_true", help="skip the headless measurement")
    args = parser.parse_args(argv)
    medians = [bench_headless(args.workers, args.steps, page)
               for page in (() if args.no_headless else range(len(PAGES)))]
    if not args.no_browser:
        bench_browser(args.workers, min(args.steps, 15))
    return 1 if any(median > GOAL_MS for median in medians) else 0


if __name__ == "__main__":
    sys.exit(main())
