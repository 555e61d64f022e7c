"""The source contract: the :data:`SOURCES` registry, the types a loader returns, and :func:`load_source`.

``dataset.source`` names a loader registered here; the built-in loaders live in
:mod:`lt_bench.data.loaders` (one module per family) and register themselves when :mod:`lt_bench.data`
is imported. A source only reads (or generates) data; making it long-tailed is
:mod:`lt_bench.data.profiles`' job. Sources never download anything: a missing file raises
:class:`~lt_bench.errors.DataError` naming the path looked for, the expected layout and where to get
the files.

Every source registers its loader in :data:`SOURCES` where it is defined (``@SOURCES.register("name")``),
and the loader's keyword parameters are the ``dataset.`` keys it reads: :func:`load_source` passes it
exactly those (``seed`` receives the run's seed). A loader returns one of the two types defined here,
each served by its backend:

- :class:`ImageSource`: uint8 tensors (:class:`TensorSplit`), served from memory by
  :mod:`lt_bench.data.memory`;
- :class:`FileSource`: lists of image files (:class:`FileList`), decoded by DataLoader workers in
  :mod:`lt_bench.data.files`.

A source of your own is a loader in your module::

    @SOURCES.register("my_scans")
    def load_my_scans(root: str, contrast: float = 1.0, seed: int = 0) -> ImageSource: ...

listed in ``plugins=[my_package.my_module]``; its dataset YAML sets ``source: my_scans`` and, next to the
keys of :class:`lt_bench.config.DatasetConfig`, its own ``contrast`` (see :mod:`lt_bench.config`).

This module imports no other module of :mod:`lt_bench.data`: loaders and backends import it, never the
reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lt_bench.errors import ConfigError
from lt_bench.registry import Registry
from lt_bench.signature import REQUIRED, builder_params

# The one loader parameter that is not a dataset key: it receives the run's seed.
SEED = "seed"

# The usual ImageNet statistics, a FileSource's default normalisation (0..1 scale).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class TensorSplit:
    """One split held in memory: uint8 images ``[N, C, H, W]`` and their int64 labels ``[N]``."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Tensor) -> TensorSplit:
        return TensorSplit(self.images[indices], self.labels[indices])

    def to(self, device: torch.device) -> TensorSplit:
        return TensorSplit(self.images.to(device), self.labels.to(device))


@dataclass
class ImageSource:
    """A training pool and a test set (and, when the source has one, a validation split) in memory.

    ``mean``/``std`` are per-channel normalisation statistics on the [0, 1] scale.
    """

    train: TensorSplit
    test: TensorSplit
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    val: TensorSplit | None = None


@dataclass
class FileList:
    """One split of image files: paths relative to the source's root and their int64 labels."""

    paths: list[str]
    labels: Tensor

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Tensor) -> FileList:
        idx = indices.tolist()
        return FileList([self.paths[i] for i in idx], self.labels[indices].clone())


@dataclass
class FileSource:
    """A file-based dataset: the splits its list files define, over ``root``."""

    name: str
    root: Path
    train: FileList
    test: FileList
    val: FileList | None
    num_classes: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


SOURCES: Registry[Callable[..., ImageSource | FileSource]] = Registry("dataset.source")


def require_root(root: str | Path | None, holds: str) -> Path:
    """``dataset.root`` as a path.

    Raises:
        ConfigError: ``root`` is not set; the message says what the folder must hold.
    """
    if root is None or str(root) == "":
        raise ConfigError(f"dataset.root is not set; set dataset.root=DIR where DIR holds {holds}")
    return Path(root).expanduser()


def _parameters(name: str) -> dict[str, Any]:
    """``{dataset key: default}`` of source ``name``'s loader (``REQUIRED`` when it has none)."""
    return builder_params(SOURCES.get(name), leading=())


def source_keys(name: str) -> tuple[str, ...]:
    """The ``dataset.`` keys source ``name`` reads: its loader's parameters, less ``seed``.

    Raises:
        ConfigError: no source is registered as ``name`` (the message lists those that are).
    """
    return tuple(key for key in _parameters(name) if key != SEED)


def load_source(cfg: Mapping[str, Any], seed: int) -> ImageSource | FileSource:
    """Load ``cfg.source``, passing its loader exactly the dataset keys it declares and the run's seed.

    A key the loader declares without a default must be set in ``cfg``; one with a default takes it
    when ``cfg`` does not set it.

    Raises:
        ConfigError: unknown source, a required key unset, or the loader's own configuration errors.
    """
    name = cfg["source"]
    kwargs: dict[str, Any] = {}
    for key, parameter in _parameters(name).items():  # parameter: its default
        if key == SEED:
            kwargs[key] = seed
        elif key in cfg:
            kwargs[key] = cfg[key]
        elif parameter is REQUIRED:
            raise ConfigError(
                f"dataset.source={name!r} reads dataset.{key}, which is not set; set it in the dataset YAML "
                f"or with dataset.{key}=VALUE"
            )
    return SOURCES.get(name)(**kwargs)
