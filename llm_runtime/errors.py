"""Exceptions raised by the LLM layer (one bad answer never raises; these mean misuse or misconfiguration).

A bad setting raises :class:`validation.ParameterError`, as every bad parameter of the project does."""


class ReplayMissError(LookupError):
    """Replay-only mode met a request that is not in the response store."""


class StoreError(RuntimeError):
    """The response store cannot be written: the run stops at once rather than fetch answers it cannot keep."""


class StoreCorruptError(ValueError):
    """The response store file is damaged; found when it is opened, before any work."""


class ServerStopped(RuntimeError):
    """The servers stopped answering: every request of a batch failed at the transport level (refused, reset,
    unresolvable, timed out, 5xx), or a 429 asked to wait beyond the budget. The run is interrupted, not finished:
    what is stored is kept and a resume asks the rest."""
