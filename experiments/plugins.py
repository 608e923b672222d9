"""User files that register planners, minds, scenarios, objectives, networks or populations (``--plugin``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from validation import ParameterError

ALLOWED = "a Python file that imports and registers"


def load_plugins(paths: list[str]) -> None:
    """Import each Python file once; its ``register`` calls make its entries available by name."""
    for path in paths:
        if "\0" in path:
            raise ParameterError("--plugin", f"{path!r} is not a file path", "the path of a .py file")
        try:
            file = Path(path).resolve()
            found = file.suffix == ".py" and file.is_file()
        except (OSError, RuntimeError) as error:  # a name too long for the file system, a loop of links
            raise ParameterError("--plugin", f"{path!r} cannot be read ({getattr(error, 'strerror', None) or error})",
                                 "the path of a .py file") from None
        name = f"plugin_{file.stem}"
        if getattr(sys.modules.get(name), "__file__", None) == str(file):
            continue
        spec = importlib.util.spec_from_file_location(name, file) if found else None
        if spec is None:
            raise ParameterError("--plugin", f"{path!r} is not a Python file", "the path of a .py file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as error:  # the user's code, even sys.exit() or KeyboardInterrupt: bad input, one line
            del sys.modules[name]
            text = str(error).splitlines()[0] if str(error) else ""
            raise ParameterError("--plugin", f"{path} failed to load ({type(error).__name__}"
                                 + (f": {text})" if text else ")"), ALLOWED) from None
