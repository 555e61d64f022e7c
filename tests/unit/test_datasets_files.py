"""Datasets from their standard files: MNIST/Fashion-MNIST idx, SVHN .mat, ImageNet-LT lists, iNat json.

Every test writes a tiny dataset in the REAL on-disk format and loads it through the code users run.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch

from lt_bench import check_data as check_module
from lt_bench.data.datamodule import LongTailDataModule
from lt_bench.data.files import IndexLists
from lt_bench.data.loaders.idx import read_idx
from lt_bench.data.loaders.lists import load_imagenet_lt, load_inat2018
from lt_bench.data.samplers import EpochBatches, draw_epoch, global_batches, rank_slice
from lt_bench.data.sources import SOURCES, ImageSource, TensorSplit
from lt_bench.errors import ConfigError, DataError
from lt_bench.schedules import Schedule
from lt_bench.train import train
from tests.data_files import TRAIN_COUNTS, idx_bytes, write_idx_set, write_imagenet_lt, write_inat, write_svhn
from tests.helpers import ROOT, make_config, read_summary

# ----------------------------------------------------------------------------------- MNIST / SVHN


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_load_in_file_order(tmp_path, gz):
    write_idx_set(tmp_path, gz=gz)
    source = SOURCES.get("mnist")(root=tmp_path)
    assert source.train.images.shape == (60, 1, 28, 28) and source.train.images.dtype == torch.uint8
    assert source.test.images.shape == (20, 1, 28, 28)
    assert torch.equal(source.train.labels, torch.arange(10).repeat(6))
    assert torch.equal(source.train.images[:, 0, 27, 27].long(), source.train.labels)
    assert source.train.images[7, 0, 0, 0] == 7 and source.num_classes == 10


def test_torchvision_raw_layout_for_fashion_mnist(tmp_path):
    write_idx_set(tmp_path / "FashionMNIST" / "raw", gz=True)
    source = SOURCES.get("fashion_mnist")(root=tmp_path)
    assert len(source.train.labels) == 60 and len(source.test.labels) == 20


def test_idx_errors_name_the_path_and_layout(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte") as err:
        SOURCES.get("mnist")(root=tmp_path)
    assert "MNIST/raw" in str(err.value) and str(tmp_path) in str(err.value)
    write_idx_set(tmp_path)
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"\x12\x34" + bad.read_bytes()[2:])
    with pytest.raises(DataError, match="magic"):
        SOURCES.get("mnist")(root=tmp_path)
    truncated = tmp_path / "bad-idx"
    truncated.write_bytes(idx_bytes(np.zeros((3, 4, 4), np.uint8))[:-5])
    with pytest.raises(DataError, match="bad-idx"):
        read_idx(truncated)


def test_svhn_maps_label_10_to_digit_0(tmp_path):
    write_svhn(tmp_path)
    source = SOURCES.get("svhn")(root=tmp_path)
    assert source.train.images.shape == (40, 3, 32, 32) and source.test.images.shape == (10, 3, 32, 32)
    assert torch.equal(source.train.labels, torch.arange(1, 41) % 10)  # 1..9, then 10 -> 0
    assert source.train.images[0, :, 1, 2].tolist() == [10, 20, 30]  # HxWxCxN -> N,C,H,W
    assert int(source.train.images[9, 0, 0, 0]) == 10 and int(source.train.labels[9]) == 0


def test_svhn_missing_and_malformed(tmp_path):
    with pytest.raises(DataError, match="train_32x32.mat") as err:
        SOURCES.get("svhn")(root=tmp_path)
    assert "test_32x32.mat" in str(err.value)
    write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="test_32x32.mat"):
        SOURCES.get("svhn")(root=tmp_path)


@pytest.mark.parametrize("profile", ["exp", "step", "even_minority"])
def test_in_memory_sources_take_every_profile(tmp_path, profile):
    write_idx_set(tmp_path, per_class_train=20)
    cfg = make_config(
        "dataset=mnist",
        f"dataset.root={tmp_path}",
        f"dataset.profile={profile}",
        "dataset.imbalance_factor=10",
    )
    info = LongTailDataModule(cfg.dataset, seed=0).prepare()
    expected = {
        "exp": [int(20 * 0.1 ** (i / 9)) for i in range(10)],
        "step": [20] * 5 + [2] * 5,
        "even_minority": [2, 20] * 5,
    }[profile]
    assert info.class_counts == expected and info.test_size == 20 and info.in_channels == 1


# ------------------------------------------------------------------------------ ImageNet-LT / iNat


def test_imagenet_lt_lists_and_split_dir(tmp_path):
    root, lists = tmp_path / "imagenet", tmp_path / "lists"
    n = write_imagenet_lt(root, lists)
    source = load_imagenet_lt(root, lists, use_val_list=True)
    assert len(source.train) == n["train"] and len(source.test) == n["test"] and len(source.val) == 6
    assert source.num_classes == 3
    assert torch.bincount(source.train.labels).tolist() == TRAIN_COUNTS
    with pytest.raises(DataError, match="ImageNet_LT_train.txt") as err:
        load_imagenet_lt(root)  # lists are not in the root
    assert "expected layout" in str(err.value)


def test_imagenet_lt_malformed_line_names_file_and_line(tmp_path):
    write_imagenet_lt(tmp_path)
    (tmp_path / "ImageNet_LT_test.txt").write_text("val/a.JPEG 0\nval/b.JPEG cat\n")
    with pytest.raises(DataError, match=r"ImageNet_LT_test.txt:2"):
        load_imagenet_lt(tmp_path)


def test_inat_json(tmp_path):
    write_inat(tmp_path)
    source = load_inat2018(tmp_path)
    assert torch.bincount(source.train.labels).tolist() == [5, 3, 1]
    assert len(source.test) == 3 and source.val is None and source.num_classes == 3
    assert source.train.paths[0] == "train_val2018/Plantae/0/train_0.jpg"
    (tmp_path / "val2018.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "x.jpg"}]}))
    with pytest.raises(DataError, match="val2018.json"):
        load_inat2018(tmp_path)
    (tmp_path / "train2018.json").unlink()
    with pytest.raises(DataError, match="train2018.json") as err:
        load_inat2018(tmp_path)
    assert "COCO-style" in str(err.value)


def test_file_datamodule_batches_and_shared_epoch_order(tmp_path):
    write_imagenet_lt(tmp_path)
    cfg = make_config(
        "dataset=imagenet_lt",
        f"dataset.root={tmp_path}",
        "dataset.image_size=32",
        "dataset.num_workers=0",
        "dataset.batch_size=4",
        "dataset.eval_batch_size=5",
    )
    module = LongTailDataModule(cfg.dataset, seed=3)
    info = module.prepare()
    assert info.class_counts == TRAIN_COUNTS and info.in_channels == 3 and info.image_size == 32
    assert info.test_size == 6 and info.val_size == 0
    loader = module.train_dataloader()
    _set_sampler_epoch(loader, 2)  # what Lightning calls at the start of every epoch
    assert loader.batch_sampler.sampler.epoch == 2
    batches = [module.on_after_batch_transfer(b, 0) for b in loader]
    x, y, idx = batches[0]
    assert x.dtype == torch.float32 and x.shape == (4, 3, 32, 32)
    order = draw_epoch(module.data.train.labels, 3, 2, None)
    assert torch.cat([b[2] for b in batches]).tolist() == order.tolist()
    assert torch.equal(torch.cat([b[1] for b in batches]), module.data.train.labels[order])
    test = list(module.test_dataloader())
    assert [len(b[1]) for b in test] == [5, 1] and len(test[0]) == 2
    # DDP: two ranks' slices of each global batch are the single-process batch (class-aware too)
    probs = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    labels = module.data.train.labels
    ranks = [
        IndexLists(EpochBatches(labels, 4, seed=3, sampling_fn=lambda e: probs, rank=r, world_size=2))
        for r in (0, 1)
    ]
    for r in ranks:
        r.sampler.set_epoch(1)
    expected = global_batches(draw_epoch(labels, 3, 1, probs), 4, False, world_size=2)
    for step, (a, b) in enumerate(zip(*ranks, strict=True)):
        assert (
            a == rank_slice(expected[step], 0, 2).tolist() and b == rank_slice(expected[step], 1, 2).tolist()
        )


def _labels_as_images(root: str) -> ImageSource:
    """An in-memory source whose training labels are the ImageNet-LT list's under ``root``."""
    labels = load_imagenet_lt(root).train.labels
    split = TensorSplit(torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8), labels)
    return ImageSource(split, split, num_classes=3, mean=(0.5,), std=(0.5,))


@pytest.mark.parametrize("world_size", [1, 2])
def test_both_backends_draw_the_same_index_order(tmp_path, world_size):
    write_imagenet_lt(tmp_path)
    SOURCES.register("labels_as_images", _labels_as_images)
    # epoch 0 a permutation, then class-aware draws (sampling exponent 0.5, then class-balanced)
    schedule = Schedule(e0=0, e1=2, sampling="exponent")
    common = (
        f"dataset.root={tmp_path}",
        "dataset.image_size=16",
        "dataset.batch_size=5",  # 12 = 2 * 5 + 2: on two processes the last 2 join the batch before
        "dataset.drop_last=false",
    )
    orders = {}
    for source in ("imagenet_lt", "labels_as_images"):
        cfg = make_config("dataset=imagenet_lt", f"dataset.source={source}", "dataset.num_workers=0", *common)
        for rank in range(world_size):
            module = LongTailDataModule(cfg.dataset, seed=7, schedule=schedule)
            module.prepare()
            module.trainer = SimpleNamespace(global_rank=rank, world_size=world_size)
            loader = module.train_dataloader()
            for epoch in range(3):
                _set_sampler_epoch(loader, epoch)
                batches = [module.on_after_batch_transfer(b, 0) for b in loader]
                orders[source, rank, epoch] = [b[2].tolist() for b in batches]
    for key in [k for k in orders if k[0] == "imagenet_lt"]:
        assert orders[key] == orders[("labels_as_images", *key[1:])], key
    assert orders["imagenet_lt", 0, 0] != orders["imagenet_lt", 0, 1]  # the epochs really differ


def test_missing_image_or_root_is_one_clear_error(tmp_path):
    write_imagenet_lt(tmp_path)
    first = tmp_path / "train/n00000000/n00000000_0.JPEG"
    first.unlink()
    cfg = make_config("dataset=imagenet_lt", f"dataset.root={tmp_path}")
    with pytest.raises(DataError, match="n00000000_0.JPEG"):
        LongTailDataModule(cfg.dataset, seed=0).prepare()
    cfg = make_config("dataset=inat2018", f"dataset.root={tmp_path / 'nowhere'}")
    with pytest.raises(DataError, match="nowhere"):
        LongTailDataModule(cfg.dataset, seed=0).prepare()
    with pytest.raises(ConfigError, match="use_val_list"):
        cfg = make_config("dataset=inat2018", f"dataset.root={tmp_path}", "dataset.use_val_list=true")
        write_inat(tmp_path)
        LongTailDataModule(cfg.dataset, seed=0).prepare()


def test_check_command(tmp_path, capsys):
    write_inat(tmp_path, counts=(150, 30, 2))
    assert check_module.main(["dataset=inat2018", f"dataset.root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "classes           3" in out and "train images      182" in out
    assert "imbalance factor  75.0" in out and "many / medium / few classes  1 / 1 / 1" in out
    (tmp_path / "train_val2018/Plantae/2/train_1.jpg").unlink()
    assert check_module.main(["dataset=inat2018", f"dataset.root={tmp_path}"]) == 2
    assert "train_1.jpg" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--open"], ["--open", "-5"], ["--open", "x", "dataset=mnist_lt"]])
def test_check_command_refuses_an_open_count_that_is_not_a_number_ge_0(args, capsys):
    assert check_module.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lt_bench.check_data: error: --open needs a number")


def test_check_command_line_reports_missing_files(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "lt_bench.check_data", "dataset=svhn", f"dataset.root={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train_32x32.mat" in result.stderr and "expected layout" in result.stderr


def test_imagenet_lt_end_to_end(tmp_path, run_dir, fast_plots):
    n = write_imagenet_lt(tmp_path / "imagenet")
    cfg = make_config(
        "dataset=imagenet_lt",
        f"dataset.root={tmp_path / 'imagenet'}",
        "backbone=resnet10",
        "trainer.max_epochs=1",
        "dataset.image_size=32",
        "dataset.num_workers=0",
        "dataset.batch_size=4",
    )
    train(cfg, run_dir)  # in process: the files are what this test is about, not the command line
    summary = read_summary(run_dir)
    assert summary["test"]["n"] == n["test"]
    assert summary["class_counts"] == TRAIN_COUNTS
