"""Named registries for what users extend: minds, planners, scenarios, objectives, networks, populations,
bracket sets, presets and prompt styles.

The project's own entries register exactly as a user's do::

    from agents.planner import PLANNERS

    @PLANNERS.register("my_rule")
    class MyRule(FixedRule): ...

After that ``EconomyModel(planner="my_rule")``, ``run.py --planner my_rule`` and the dashboard accept it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator


class Registry[T]:
    """A name -> entry mapping, filled with :meth:`register` (a decorator or a plain call).

    ``base`` (a class, or a tuple of them), where set, is what an entry must subclass, or with ``instances=True``
    be an instance of (for entries that are values, such as bracket sets): anything else is refused with a
    ValueError when it is registered, not when a run first uses it."""

    def __init__(self, kind: str, base: type | tuple[type, ...] | None = None, *, instances: bool = False):
        self.kind = kind
        self.base = base
        self.instances = instances
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None, *, replace: bool = False) -> Callable[[T], T] | T:
        """Register ``entry`` under ``name``; without ``entry``, a decorator that does it."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{self.kind}: a registered name must be an identifier, got {name!r}")

        def add(value: T) -> T:
            if self.base is not None and not self._fits(value):
                bases = self.base if isinstance(self.base, tuple) else (self.base,)
                what = "an instance" if self.instances else "a subclass"
                raise ValueError(f"{self.kind}: {name!r} must be {what} of "
                                 f"{' or '.join(b.__name__ for b in bases)}, not {_short(value)}")
            if name in self._entries and not replace and self._entries[name] is not value:
                raise ValueError(f"{self.kind}: {name!r} is already registered (pass replace=True to replace it)")
            self._entries[name] = value
            return value

        return add if entry is None else add(entry)

    def _fits(self, value: object) -> bool:
        if self.instances:
            return isinstance(value, self.base)
        return isinstance(value, type) and issubclass(value, self.base)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"{self.kind}: unknown {self.kind} {name!r}; allowed: {', '.join(self)}") from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self)})"


def _short(value: object) -> str:
    """A refused entry's repr on one line, cut short: the error names it, it need not print it whole."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."
