"""What cannot work is refused before training, in one line naming the key and the numbers (issue 19, items
9, 14, 16, 17, 18).

- values Lightning or torch would reject only with a traceback (or after a whole epoch), and nonsense that
  would be accepted silently: :func:`lt_bench.config.validate`, in process;
- a run that would not train at all (no batch in an epoch) or hand BatchNorm a batch of one: refused at
  the start of ``fit``, nothing written; a remainder of one sample joins the batch before it;
- data: an empty split names its file, every listed image is checked at start, an image that does not
  decode in a DataLoader worker stops the run with one line naming it.
"""

from __future__ import annotations

import copy
import functools
import json
import pickle
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from lt_bench import check_data as check_module
from lt_bench.config import validate
from lt_bench.data.datamodule import LongTailDataModule
from lt_bench.data.loaders.cifar import load_cifar
from lt_bench.data.loaders.lists import read_coco_list
from lt_bench.errors import ConfigError, DataError
from lt_bench.train import build_run, build_trainer, train
from tests.data_files import write_cifar10, write_imagenet_lt, write_inat
from tests.helpers import make_config, run_cli


# -- item 16, 18: values that reach Lightning or torch unchecked, nonsense accepted silently --------------
@functools.cache
def _composed(*groups: str) -> DictConfig:
    return make_config(*groups)


def _config(groups: tuple[str, ...] = (), **values: Any) -> DictConfig:
    """The composed config of ``groups`` with ``values`` set as a ``+key=value`` override sets them (composed
    once per choice of groups: a composition costs a third of a second, a copy nothing)."""
    cfg = copy.deepcopy(_composed(*groups))
    for key, value in values.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, force_add=True)
    return cfg


REFUSED = [
    ((), {"trainer__devices": 0}, "trainer.devices=0 must be a number of devices >= 1"),
    ((), {"trainer__devices": [0, 0]}, "trainer.devices=[0, 0]"),
    ((), {"trainer__precision": "bogus"}, "trainer.precision='bogus' is not known"),
    ((), {"trainer__strategy": "bogus"}, "trainer.strategy='bogus' is not known"),
    ((), {"trainer__accelerator": "bogus"}, "trainer.accelerator='bogus' is not known"),
    ((), {"trainer__check_val_every_n_epoch": 0}, "trainer.check_val_every_n_epoch=0 must be >= 1"),
    ((), {"trainer__select_by": "val/bogus"}, "trainer.select_by=val/bogus is not a metric the validation"),
    ((), {"dataset__eval_batch_size": 0}, "dataset.eval_batch_size=0 must be >= 1"),
    ((), {"optimizer__momentum": -1}, "optimizer.momentum=-1.0 must be in [0, 1)"),
    ((), {"optimizer__momentum": 0, "optimizer__nesterov": True}, "optimizer.nesterov=true needs"),
    ((), {"seed": -1}, "seed=-1 must be in [0, 2**32)"),
    ((), {"seed": 2**40}, "seed=1099511627776 must be in [0, 2**32)"),
    ((), {"dataset__cutout": -5}, "dataset.cutout=-5 must be >= 0"),
    ((), {"dataset__color_jitter": -0.5}, "dataset.color_jitter=-0.5"),
    ((), {"lr_schedule__warmup_epochs": -3}, "lr_schedule.warmup_epochs=-3 must be >= 0"),
    ((), {"lr_schedule__milestones": [1], "lr_schedule__factors": [-0.1]}, "lr_schedule.factors=[-0.1]"),
    (
        ("lr_schedule=cosine",),
        {"lr_schedule__min_factor": -1},
        "lr_schedule.min_factor=-1.0 must be in [0, 1]",
    ),
    ((), {"method__alhpa": 1}, "method.alhpa: method=standard has no such key"),
    (("method=phase",), {"method__alhpa": 1}, "its keys are: alpha, gamma, local_form, reinit_head"),
    ((), {"logger__project": "x"}, "logger.project: logger=csv has no such key"),
    (("logger=wandb",), {"logger__tgas": ["a"]}, "logger.tgas: logger=wandb has no such key"),
    ((), {"bogus": 1}, "bogus: no such top-level key"),
]


@pytest.mark.parametrize(("groups", "values", "needle"), REFUSED)
def test_validate_refuses_in_one_line(groups, values, needle):
    with pytest.raises(ConfigError) as err:
        validate(_config(groups, **values))
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_the_command_line_values_reach_validate_as_these():
    """The shortcut above sets what the command line sets (one of the cases, composed for real)."""
    with pytest.raises(ConfigError, match="trainer.devices=0 must be"):
        validate(make_config("trainer.devices=0"))
    with pytest.raises(ConfigError, match="method.alhpa: method=standard has no such key"):
        validate(make_config("+method.alhpa=1"))


PASSING = [
    ((), {"trainer__devices": "auto"}),
    ((), {"trainer__devices": -1}),
    ((), {"trainer__devices": [0]}),
    ((), {"trainer__devices": "0,1", "trainer__strategy": "ddp"}),
    ((), {"trainer__precision": "bf16-mixed"}),
    ((), {"trainer__precision": "16"}),
    ((), {"trainer__select_by": "val/gmean"}),
    ((), {"optimizer__momentum": 0}),
    ((), {"optimizer__nesterov": True}),
    ((), {"seed": 2**32 - 1}),
    (("lr_schedule=cosine",), {"lr_schedule__min_factor": 1}),
    ((), {"lr_schedule__warmup_epochs": 0}),
    (("method=phase",), {"method__alpha": 0.5}),
    (("method=arconvl",), {"method__latent_dim": 2}),
    (("logger=wandb",), {"logger__tags": ["ablation"], "logger__job_type": "train"}),  # docs/sweeps.md
]


@pytest.mark.parametrize(("groups", "values"), PASSING)
def test_valid_values_still_pass(groups, values):
    validate(_config(groups, **values))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_this_machine_lacks_is_refused():
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu: this machine has no such device"):
        validate(_config(trainer__accelerator="gpu"))


def test_data_check_refuses_an_out_of_range_seed(capsys):
    assert check_module.main(["seed=-1"]) == 2
    assert "seed=-1 must be in [0, 2**32)" in capsys.readouterr().err


# -- item 9, 14: an epoch that cannot train, a batch of one ------------------------------------------------
SMALL = (
    "dataset=synthetic",
    "dataset.per_class=40",
    "dataset.test_per_class=5",
    "dataset.image_size=8",
    "backbone.channels=[4,8]",
)


def _module(*overrides: str, world_size: int = 1, limit=None) -> LongTailDataModule:
    cfg = make_config(*SMALL, *overrides)
    module = LongTailDataModule(cfg.dataset, seed=0)
    module.prepare()
    module.trainer = SimpleNamespace(global_rank=0, world_size=world_size, limit_train_batches=limit)
    return module


@pytest.mark.parametrize(
    ("overrides", "world_size", "limit", "needles"),
    [
        (
            ["dataset.batch_size=100000", "dataset.drop_last=true"],
            1,
            None,
            ["dataset.batch_size=100000", "0 batch"],
        ),
        (["dataset.batch_size=1"], 2, None, ["dataset.batch_size=1", "2 process(es)", "at least 4"]),
        (["dataset.batch_size=1"], 1, None, ["dataset.batch_size=1", "BatchNorm"]),
        ([], 1, 0.01, ["trainer.limit_train_batches=0.01", "0 batch(es) per process per epoch"]),
    ],
)
def test_a_training_epoch_that_cannot_train_is_refused_with_its_numbers(
    overrides, world_size, limit, needles
):
    module = _module(*overrides, world_size=world_size, limit=limit)
    with pytest.raises(ConfigError) as err:
        module.train_dataloader()
    message = str(err.value)
    assert f"training set {module.info.train_size} images" in message and "\n" not in message
    for needle in needles:
        assert needle in message


def test_a_run_that_would_not_train_stops_before_writing_anything(tmp_path):
    cfg = make_config(*SMALL, "dataset.batch_size=100000", "dataset.drop_last=true")
    with pytest.raises(ConfigError, match="would not train at all"):
        train(cfg, tmp_path)
    assert not (tmp_path / "summary.json").exists() and not (tmp_path / "checkpoints").exists()


def test_a_remainder_of_one_sample_trains_a_full_epoch_through_batchnorm1d(tmp_path):
    """The convnet ends in BatchNorm1d, which raises on a batch of one in training mode."""
    n = _module().info.train_size
    batch_size = next(b for b in range(16, n) if n % b == 1)
    cfg = make_config(*SMALL, f"dataset.batch_size={batch_size}", "trainer.max_epochs=1", "logger=csv")
    validate(cfg)
    _, datamodule, model = build_run(cfg)
    trainer, _ = build_trainer(cfg, tmp_path, datamodule.has_val)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == n // batch_size  # the last sample joined the batch before it


# -- item 17: data -------------------------------------------------------------------------------------
def test_an_empty_cifar_test_batch_names_the_file(tmp_path, capsys):
    folder = write_cifar10(tmp_path)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"labels": [], b"data": np.zeros((0, 3072), dtype=np.uint8)}, f, protocol=2)
    with pytest.raises(DataError, match=r"test_batch holds no images"):
        load_cifar(tmp_path, 10)
    assert check_module.main(["dataset=cifar10_lt", f"dataset.root={tmp_path}"]) == 2
    assert "test_batch holds no images" in capsys.readouterr().err


def test_an_inat_category_id_that_is_not_an_integer_is_a_data_error(tmp_path):
    write_inat(tmp_path)
    path = tmp_path / "train2018.json"
    data = json.loads(path.read_text())
    data["categories"][1]["id"] = "abc"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"train2018.json: categories\[\].id 'abc' is not an integer"):
        read_coco_list(path, "help")


def test_every_listed_image_is_checked_at_start(tmp_path):
    write_imagenet_lt(tmp_path)
    (tmp_path / "val/n00000002/ILSVRC2012_val_test21.JPEG").unlink()  # the last test image, not the first
    cfg = make_config("dataset=imagenet_lt", f"dataset.root={tmp_path}")
    with pytest.raises(DataError, match="1 test image.*ILSVRC2012_val_test21.JPEG"):
        LongTailDataModule(cfg.dataset, seed=0).prepare()


def test_an_image_that_does_not_decode_in_a_worker_is_one_line_naming_it(tmp_path):
    write_imagenet_lt(tmp_path)
    broken = tmp_path / "val/n00000001/ILSVRC2012_val_test10.JPEG"
    broken.write_bytes(b"not a jpeg")
    cfg = make_config("dataset=imagenet_lt", f"dataset.root={tmp_path}", "dataset.num_workers=1")
    module = LongTailDataModule(cfg.dataset, seed=0)
    module.prepare()
    with pytest.raises(DataError) as err:
        list(module.test_dataloader())
    assert str(err.value).startswith(f"could not read image {broken} (")
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)


@pytest.mark.heavy
def test_two_processes_with_a_batch_of_one_stop_in_one_line_each_before_training(run_dir):
    """DDP with dataset.batch_size=1: each process would get a batch of 0 or 1 samples."""
    result = run_cli("trainer=ddp_cpu", "dataset.batch_size=1", "dataset.test_per_class=10", run_dir=run_dir)
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("lt_bench: error: ")]
    assert errors and all("dataset.batch_size=1" in e and "2 process(es)" in e for e in errors), result.stderr
    assert not (run_dir / "summary.json").exists() and not (run_dir / "checkpoints").exists()
