"""The parameters a registered builder (backbone, head, dataset source) accepts, read from its signature:
the signature is their one definition, so a user's builder needs no table of its own. (Losses declare
range checks too and read them with :func:`lt_bench.losses.base.constructor_params`.)"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lt_bench.errors import ConfigError

# the default of a parameter that has none: the config must give it
REQUIRED = inspect.Parameter.empty


def builder_params(builder: Callable[..., Any], leading: Sequence[str]) -> dict[str, Any]:
    """``{name: default}`` of ``builder``'s parameters (a class: its constructor's) after the ``leading``
    ones that every builder of its kind takes first (``in_channels``; ``in_dim, num_classes``);
    :data:`REQUIRED` marks one without a default.

    Raises ConfigError naming the builder (a bug in a plugin's builder, reported like a config error) when
    the leading parameters are not first, or for ``*args``/``**kwargs``: a catch-all would accept a
    misspelt config key without a word.
    """
    where = getattr(builder, "__qualname__", repr(builder))
    params = list(inspect.signature(builder).parameters.values())
    if [p.name for p in params[: len(leading)]] != list(leading):
        raise ConfigError(f"{where}: its parameters must start with {', '.join(leading)}")
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        raise ConfigError(
            f"{where}: takes *args or **kwargs; name every parameter, so a misspelt key is an error"
        )
    return {p.name: p.default for p in params[len(leading) :]}


def check_params(kind: str, name: str, accepted: dict[str, Any], given: Iterable[str]) -> None:
    """ConfigError, naming the valid keys, when ``given`` has a key ``accepted`` lacks or misses a required
    one."""
    given = set(given)
    unknown = sorted(given - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "(none)"
        raise ConfigError(f"{kind} {name!r} has no parameter(s) {', '.join(unknown)}; valid: {valid}")
    missing = [key for key, default in accepted.items() if default is REQUIRED and key not in given]
    if missing:
        raise ConfigError(f"{kind} {name!r} needs {', '.join(missing)}: set {kind}.{missing[0]}=...")
