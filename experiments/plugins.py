"""User files that register planners, minds, scenarios, objectives, networks, population sources, bracket sets,
presets or prompt styles (``--plugin``), and a user's subclass of ``EconomyModel`` (``--model-class``)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from validation import ParameterError

ALLOWED = "a Python file that imports and registers"
MODEL_CLASS = "module:Class or path/to/file.py:Class, a subclass of model.model.EconomyModel"


def load_plugins(paths: list[str]) -> None:
    """Import each Python file once; its ``register`` calls make its entries available by name."""
    for path in paths:
        load_file(path, "--plugin", ALLOWED)


def load_file(path: str, field: str, allowed: str, file_words: str = "the path of a .py file"):
    """The module of the Python file ``path``, imported once (a file named by ``--plugin`` and ``--model-class``
    is the same module); each problem is a one-line ParameterError naming ``field``: ``file_words`` say what is
    allowed when ``path`` is not a readable Python file, ``allowed`` when it fails to load."""
    if "\0" in path:
        raise ParameterError(field, f"{path!r} is not a file path", file_words)
    try:
        file = Path(path).resolve()
        found = file.suffix == ".py" and file.is_file()
    except (OSError, RuntimeError) as error:  # a name too long for the file system, a loop of links
        raise ParameterError(field, f"{path!r} cannot be read ({getattr(error, 'strerror', None) or error})",
                             file_words) from None
    name = f"plugin_{file.stem}"
    if getattr(sys.modules.get(name), "__file__", None) == str(file):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file) if found else None
    if spec is None:
        raise ParameterError(field, f"{path!r} is not a Python file", file_words)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as error:  # the user's code, even sys.exit() or KeyboardInterrupt: bad input, one line
        del sys.modules[name]
        raise ParameterError(field, f"{path} failed to load ({_cause(error)})", allowed) from None
    return module


def _cause(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return type(error).__name__ + (f": {text}" if text else "")


def load_model_class(spec: str | None) -> type:
    """The model class ``spec`` names (``module:Class`` or ``path/to/file.py:Class``), ``EconomyModel`` for None;
    anything but a subclass of ``EconomyModel`` is a ParameterError naming ``--model-class``."""
    from model.model import EconomyModel

    if spec is None:
        return EconomyModel
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        raise ParameterError("--model-class", f"{spec!r} is not module:Class or path/to/file.py:Class", MODEL_CLASS)
    if where.endswith(".py"):
        module = load_file(where, "--model-class", MODEL_CLASS, MODEL_CLASS)
    else:
        try:
            module = importlib.import_module(where)
        except BaseException as error:  # not found, or the user's module failed while it was imported
            raise ParameterError("--model-class", f"{where} failed to import ({_cause(error)})",
                                 MODEL_CLASS + " (the module on PYTHONPATH)") from None
    found = getattr(module, name, None)
    if not isinstance(found, type) or not issubclass(found, EconomyModel):
        raise ParameterError("--model-class", f"{where} has no {name}" if found is None else
                             f"{spec} is not a subclass of EconomyModel", MODEL_CLASS)
    return found


def model_class_spec(spec: str) -> str:
    """``spec`` checked, with a file's path made absolute (resume, replay and sweep workers load it again)."""
    load_model_class(spec)
    where, _, name = spec.rpartition(":")
    return f"{Path(where).resolve()}:{name}" if where.endswith(".py") else spec
