"""Name -> builder tables that code outside the package can add to (timm-style registries).

Every pluggable concept (losses, methods, backbones, heads, data sources) owns one :class:`Registry`
where it is defined; a user's module adds its own entries with the same decorator and is imported at
start-up through the top-level ``plugins=[mypackage.mymodule]`` key (:func:`import_plugins`), so
``loss=my_loss`` works without editing lt_bench.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from lt_bench.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of builders for one kind of thing (``kind`` is its config key, e.g. ``loss``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """``@REGISTRY.register("name")`` over a class or function, or ``register("name", obj)``.

        Registering a second, different entry under a taken name is an error: a plugin must not
        replace a built-in silently."""

        def add(obj: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and existing is not obj:
                raise ConfigError(
                    f"{self.kind} {name!r} is registered twice ({_where(existing)} and {_where(obj)}); "
                    "give the new one another name"
                )
            self._entries[name] = obj
            return obj

        return add if entry is None else add(entry)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(
                f"{self.kind}={name!r} is not known; choose one of: {', '.join(sorted(self._entries))} "
                "(your own: register it and list its module in plugins=[...])"
            )
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def defined_in(self, package: str) -> set[str]:
        """Names whose entry is defined in ``package`` (e.g. ``lt_bench``: the built-ins, not plugins)."""
        return {n for n, e in self._entries.items() if getattr(e, "__module__", "").split(".")[0] == package}

    def items(self) -> Iterable[tuple[str, T]]:
        return self._entries.items()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _where(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def import_plugins(modules: Iterable[str]) -> None:
    """Import each ``plugins`` module once so its ``register`` calls run (idempotent)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(
                f"plugins: cannot import {module!r} ({err}); install it or put its folder on PYTHONPATH"
            ) from None
