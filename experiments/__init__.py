"""Experiments as users run them: settings, results folders, plots, sweeps, progress and resume (see run.py)."""
