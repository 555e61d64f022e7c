"""Name -> builder tables that code outside the package can add to (timm-style registries).

Every pluggable concept (losses, methods, backbones, heads, data sources) owns one :class:`Registry`
where it is defined; a user's module adds its own entries with the same decorator and is imported at
start-up through the top-level ``plugins=[mypackage.mymodule]`` key (:func:`import_plugins`), so
``loss=my_loss`` works without editing lt_bench.
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from lt_bench.errors import ConfigError, LtBenchError

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """How lt_bench calls the entries of one kind: ``positional`` arguments, then ``keywords`` by name.
    ``shown``: the signature an entry must accept, as the error shows it."""

    shown: str
    positional: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    # the entry's other parameters are config keys (loss., backbone. ...): one without a default is a key
    # the user must set, which the builder checks by name when it is called, not a wrong signature
    more_from_config: bool = False


# The call each kind's entries get (lt_bench/methods, losses, models, posthoc). An entry whose signature
# cannot take it is refused when it registers, in one line naming this signature: called later, it would
# end in a TypeError traceback in the middle of building the run. Data sources take only their dataset.
# keys, checked against their signature when the dataset is read.
CALLS = {
    "method": Call("__init__(self, cfg, info, schedule)", ("cfg", "info", "schedule")),
    "loss": Call("__init__(self, class_counts, *, <parameters>)", ("class_counts",), more_from_config=True),
    "head": Call("(in_dim, num_classes, <parameters>)", ("in_dim", "num_classes"), more_from_config=True),
    "backbone": Call("(in_channels, <parameters>)", keywords=("in_channels",), more_from_config=True),
    "posthoc": Call("(outputs, tau) -> logits", ("outputs", "tau")),
}


def check_call(kind: str, name: str, obj: object, call: Call) -> None:
    """ConfigError, naming the expected signature, when ``obj`` cannot be called as ``call`` says."""
    try:
        signature = inspect.signature(obj)  # a class: its constructor's, without self
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return
    try:
        bind = signature.bind_partial if call.more_from_config else signature.bind
        bind(*call.positional, **dict.fromkeys(call.keywords))
    except TypeError as err:
        where = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
        raise ConfigError(
            f"{kind} {name!r} ({where}{signature}) cannot take lt_bench's call ({err}); give it the "
            f"signature {call.shown}"
        ) from None


class Registry(Generic[T]):
    """A named table of builders for one kind of thing (``kind`` is its config key, e.g. ``loss``)."""

    def __init__(self, kind: str, call: Call | None = None) -> None:
        self.kind = kind
        self.call = call if call is not None else CALLS.get(kind)  # None: entries are not checked
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """``@REGISTRY.register("name")`` over a class or function, or ``register("name", obj)``.

        Registering a second, different entry under a taken name is an error: a plugin must not
        replace a built-in silently; so is an entry whose signature cannot take the call lt_bench makes
        (:data:`CALLS`)."""

        def add(obj: T) -> T:
            if self.call is not None:
                check_call(self.kind, name, obj, self.call)
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
        except SyntaxError as err:
            where = f"{err.filename}, line {err.lineno}" if err.filename else "its source"
            raise ConfigError(
                f"plugins: {module!r} has a syntax error ({err.msg}, {where}); fix the module, or remove it "
                "from plugins"
            ) from None
        except LtBenchError:  # lt_bench's own refusal (a plug-in registered wrongly): already one line
            raise
        except Exception as err:  # the module's own code failed while it was imported
            message = " ".join(str(err).split())  # one line, whatever the module raised
            raise ConfigError(
                f"plugins: importing {module!r} raised {type(err).__name__}: {message} ({_failed_at(err)}); "
                "fix the module, or remove it from plugins"
            ) from None


def _failed_at(err: BaseException) -> str:
    """``FILE, line N`` of the innermost frame of ``err``'s traceback: where the module's code failed."""
    frames = traceback.extract_tb(err.__traceback__)
    return f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else "no traceback"
