"""User files that register planners, minds, scenarios, objectives, networks or populations (``--plugin``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from validation import ParameterError


def load_plugins(paths: list[str]) -> None:
    """Import each Python file once; its ``register`` calls make its entries available by name."""
    for path in paths:
        if "\0" in path:
            raise ParameterError("--plugin", f"{path!r} is not a file path", "the path of a .py file")
        file = Path(path).resolve()
        name = f"plugin_{file.stem}"
        if getattr(sys.modules.get(name), "__file__", None) == str(file):
            continue
        spec = importlib.util.spec_from_file_location(name, file) if file.suffix == ".py" else None
        if spec is None or not file.is_file():
            raise ParameterError("--plugin", f"{path!r} is not a Python file", "the path of a .py file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:  # the user's code: any failure is bad input, reported in one line
            del sys.modules[name]
            raise ParameterError("--plugin", f"{path} failed to load ({type(error).__name__}: "
                                 f"{str(error).splitlines()[0] if str(error) else ''})",
                                 "a Python file that imports and registers") from None
