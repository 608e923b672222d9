"""Each browser session's model is closed when Reset replaces it and when the session ends.

A model with LLM minds holds a client (a thread, connections, perhaps an embedded model server): Mesa's Reset
builds a new model and drops the old one without closing it, so without this every Reset would leave them behind.
"""

from __future__ import annotations

import threading

import solara
import solara.lab

_models: dict[str, object] = {}  # kernel (browser session) id -> the model the session shows
_lock = threading.Lock()


def _session() -> str | None:
    try:
        return solara.get_kernel_id(ipython_fallback=False)
    except RuntimeError:  # built outside a browser session: the module's default model, a test, a script
        return None


def adopt(model) -> None:
    """``model`` is now its session's: the model it replaces is closed."""
    session = _session()
    if session is None:
        return
    with _lock:
        replaced = _models.get(session)
        _models[session] = model
    if replaced is not None and replaced is not model:
        replaced.close()


def live() -> int:
    """Sessions holding a model."""
    with _lock:
        return len(_models)


def _on_session_start():
    session = _session()

    def end():
        with _lock:
            model = _models.pop(session, None)
        if model is not None:
            model.close()

    return end


solara.lab.on_kernel_start(_on_session_start)
