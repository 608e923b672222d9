"""Sweeps: a parameter grid x seeds, one run per task, on local processes or a Dask cluster.

Each finished run is kept in ``<out>.partial/runs/`` at once, so ``resume`` skips what is done; LLM runs share
one response store (SQLite in WAL mode, safe for several processes), each run under its own run id.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from experiments import results
from experiments.config import sweep_points
from experiments.folders import held
from experiments.plugins import load_model_class, load_plugins
from experiments.runner import Interrupted, ResultsNotWritten, SweepFailed, model_kwargs, writing

TABLE_NAME = "runs.parquet"


def tasks(s: dict, store: Path) -> list[dict]:
    """One task per (grid point, seed), in a fixed order, each with its run id and model arguments."""
    out = []
    for point in sweep_points(s):
        for seed in s["seeds"]:
            index = len(out)
            run_id = f"run-{index:04d}"
            out.append({"index": index, "run": run_id, "seed": seed, "plugins": s.get("plugin", []),
                        "model_class": s.get("model_class"),
                        "params": {k: point[k] for k in s["grid"]},
                        "kwargs": model_kwargs(point, seed=seed, run_id=run_id, store=str(store.absolute()))})
    return out


def run_task(task: dict) -> pd.DataFrame:
    """Run one model to the end; its model data, one row per step, with the run's parameters and seed."""
    load_plugins(task.get("plugins", []))  # a fresh process knows only the project's own entries
    model = load_model_class(task.get("model_class"))(**task["kwargs"])
    try:
        while model.running:
            model.step()
        frame = results.model_frame(model).reset_index()
    finally:
        model.close()
    columns = {"run": task["run"], "seed": task["seed"], **task["params"]}
    for position, (name, value) in enumerate(columns.items()):
        frame.insert(position, name, value)
    return frame


def exit_with_parent() -> None:
    """Pool initializer: end this worker process at once when the sweep's process dies (even by kill -9)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="sweep-parent-watch", daemon=True).start()


def run_local(todo: list[dict], jobs: int) -> Iterator[tuple[dict, pd.DataFrame]]:
    """Tasks on a pool of fresh (spawned) processes; yields each as it finishes."""
    context = multiprocessing.get_context("spawn")
    # each worker ends if this process dies (even by kill -9), so no orphan goes on running the sweep
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo)) or 1, mp_context=context,
                             initializer=exit_with_parent) as pool:
        pending = {pool.submit(run_task, task): task for task in todo}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        finally:
            for future in pending:
                future.cancel()


def run_dask(todo: list[dict], jobs: int, scheduler: str | None) -> Iterator[tuple[dict, pd.DataFrame]]:
    """Tasks on a Dask cluster (``scheduler`` address, or a local cluster of ``jobs`` worker processes)."""
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=min(jobs, len(todo)) or 1, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
    client = Client(scheduler or cluster)
    try:
        futures = {client.submit(run_task, task, key=f"economy-{task['run']}-{id(todo)}", pure=False): task
                   for task in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run(s: dict, out: Path, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) a sweep and write ``<out>/runs.parquet``: one row per run and step."""
    taken = held(out, "--run") if resume else \
        results.start(out, {"command": "sweep", "settings": s}, "--out", s.get("overwrite", False))
    with taken as partial:
        return _run(s, out, partial, progress)


def _run(s: dict, out: Path, partial: Path, progress: bool) -> Path:
    done_dir = partial / "runs"
    with writing(out):
        done_dir.mkdir(exist_ok=True)
    every = tasks(s, partial / results.STORE_NAME)
    todo = [t for t in every if not (done_dir / f"{t['run']}.parquet").is_file()]
    bar = tqdm(total=len(every), initial=len(every) - len(todo), desc=f"sweep ({s['executor']})", unit="run",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    executor = run_dask(todo, s["jobs"], s["scheduler"]) if s["executor"] == "dask" else run_local(todo, s["jobs"])
    try:
        for task, frame in executor if todo else ():
            partial_file = done_dir / f".{task['run']}.parquet.tmp"
            with writing(out):
                frame.to_parquet(partial_file)
                os.replace(partial_file, done_dir / f"{task['run']}.parquet")  # whole or absent, even under kill -9
            bar.update(1)
    except KeyboardInterrupt:
        executor.close()
        raise Interrupted(out, bar.n, len(every)) from None
    except ResultsNotWritten:
        executor.close()
        raise
    except Exception as error:  # a run failed (or the cluster did): the finished runs are kept for resume
        executor.close()
        raise SweepFailed(out, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") \
            from error
    finally:
        bar.close()
    table = pd.concat([pd.read_parquet(done_dir / f"{t['run']}.parquet") for t in every], ignore_index=True)
    summary = summarise(table, s)
    with writing(out):
        table.to_parquet(partial / TABLE_NAME)
        (partial / "summary.md").write_text(summary, encoding="utf-8")
        shutil.rmtree(done_dir)
        results.finish(out)
    print(summary)
    print(f"results: {out / TABLE_NAME}")
    return out


def summarise(table: pd.DataFrame, s: dict) -> str:
    """Final-step objective per grid point: mean and standard deviation over seeds."""
    last = table.groupby("run").tail(1)
    keys = list(s["grid"])
    stats = (last.groupby(keys)["objective"].agg(["mean", "std", "count"]) if keys else
             last["objective"].agg(["mean", "std", "count"]).to_frame("all runs").T)
    return (f"# sweep {len(table['run'].unique())} runs\n\n{s['max_steps']} steps, seeds "
            f"{', '.join(map(str, s['seeds']))}, executor {s['executor']}.\n\nFinal-step objective:\n\n```\n"
            f"{results.table_text(stats)}\n```\n\nTable: `{TABLE_NAME}`, one row per run and step (columns: run, "
            f"seed, swept parameters, step, every model reporter).\n")
