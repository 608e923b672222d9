"""The LLM Economist on Mesa: run experiments from the command line.

    .venv/bin/python run.py                     # the main job (`run`): baselines, then LLM workers, planner
    .venv/bin/python run.py compare             # baseline planners side by side on one rational population
    .venv/bin/python run.py sweep --grid planner=saez,blackbox --seeds 1,2,3     # a grid x seeds, one table
    .venv/bin/python run.py resume --run results/<run>   # continue an interrupted run (stored answers replay)
    .venv/bin/python run.py replay --run results/<run>   # rerun a finished run from its stored answers
    .venv/bin/python run.py dashboard           # the Solara dashboard on http://127.0.0.1:8765

(or `python run.py ...` in a shell where `source .venv/bin/activate` was run). Settings come from flags, else
from a TOML file (--config), else from the defaults below; every model parameter is a flag, a TOML key and a
--grid name under one name. `.venv/bin/python run.py COMMAND --help` lists every option with its default. Bad
input exits with status 2 and a one-line message, before any work starts.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from experiments.config import ConfigError, resolve
from experiments.folders import resume_command
from experiments.runner import (Interrupted, ResultsNotWritten, StoreCorruptError, StoreError, SweepFailed,
                                TooManyFailures)

# the embedded model: the paper's 5 workers for two tax years of 2 steps (21 requests, about a minute)
RUN_DEFAULTS = {"workers": 5, "max_steps": 4, "tax_year_length": 2, "worker_mind": "llm", "planner": "llm"}
COMPARE_DEFAULTS = {"workers": 100, "max_steps": 250, "tax_year_length": 25}
SWEEP_DEFAULTS = {"workers": 100, "max_steps": 100, "tax_year_length": 25, "worker_mind": "rational"}
# with a server named (LLM_BASE_URL, OPENAI_API_KEY, --base-url, ...): the paper's default experiment and size
RUN_DEFAULTS_WITH_SERVER = {**RUN_DEFAULTS, "workers": 5, "max_steps": 2500, "tax_year_length": 25}
DEFAULTS = {"run": RUN_DEFAULTS, "run_with_server": RUN_DEFAULTS_WITH_SERVER, "compare": COMPARE_DEFAULTS,
            "sweep": SWEEP_DEFAULTS}


SERVER_STOPPED = 75  # EX_TEMPFAIL: the LLM servers stopped answering; resume once they answer again




def dispatch(command: str, settings: dict) -> int:
    from experiments import experiment

    if command == "run":
        experiment.run(settings)
    elif command == "compare":
        experiment.compare(settings)
    elif command == "sweep":
        from experiments import sweep

        sweep.run(settings, Path(settings["out"]))
    elif command == "resume":
        experiment.resume(Path(settings["run"]), asked=settings)
    elif command == "replay":
        experiment.replay(Path(settings["run"]), asked=settings)
    elif command == "dashboard":
        from visualization.server import serve

        print(f"dashboard: http://{settings['host']}:{settings['port']}", flush=True)
        return serve(host=settings["host"], port=settings["port"], plugins=settings["plugin"]) or 0
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():  # Ctrl-C stops cleanly even if started ignoring it
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        command, settings = resolve(argv, DEFAULTS)
    except ConfigError as error:
        print(f"run.py: error: {error}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return int(done.code or 0)
    try:
        return dispatch(command, settings)
    except SweepFailed as failed:
        print(f"run.py: sweep: a run failed ({failed}); finished runs are kept. After fixing the cause, resume "
              f"with:\n  {resume_command(failed.out)}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        code, why = (SERVER_STOPPED, f" ({stop.reason})") if stop.reason else (130, "")
        if stop.replay:
            print(f"\nrun.py: replay stopped at step {stop.step} of {stop.total}{why}; it wrote nothing.",
                  file=sys.stderr)
            return code
        print(f"\nrun.py: stopped at step {stop.step} of {stop.total}{why}; stored responses are kept. Resume "
              f"with:\n  {resume_command(stop.out)}", file=sys.stderr)
        return code
    except ConfigError as error:  # the model's own checks, raised before any result is written
        print(f"run.py: error: {error}", file=sys.stderr)
        return 2
    except ResultsNotWritten as failed:  # disk full, read-only, I/O error while the results folder was written
        from experiments.folders import partial_dir

        where = partial_dir(failed.out)
        if failed.kept:
            print(f"run.py: {command}: could not write the results in {where} ({failed}); the stored LLM answers "
                  f"are kept there, and this continues the run: {resume_command(failed.out)}", file=sys.stderr)
        else:
            print(f"run.py: {command}: could not write the results in {where} ({failed}); it wrote nothing: run "
                  f"it again once it can write there", file=sys.stderr)
        return 1
    except TooManyFailures as failed:  # the results are written, and say so at the top of summary.md
        print(f"run.py: {command}: {failed}", file=sys.stderr)
        return 1
    except StoreCorruptError as error:  # found when the store is opened, before any work
        print(f"run.py: {command}: {error}", file=sys.stderr)
        return 2
    except StoreError as error:  # the run stopped rather than fetch answers it could not keep
        print(f"run.py: {command}: {error}", file=sys.stderr)
        return 1
    except LookupError as error:  # replay met a request that was never stored
        print(f"run.py: {command}: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
