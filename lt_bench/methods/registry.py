"""``method=NAME`` selects ``METHODS.get(NAME)``, a LightningModule class registered where it is defined.

Its own module so that every method module can import it without importing the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lt_bench.registry import Registry

if TYPE_CHECKING:
    from lt_bench.methods.base import LongTailModule

METHODS: Registry[type[LongTailModule]] = Registry("method")
