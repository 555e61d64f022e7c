"""Two real processes over gloo draw, between them, exactly what one process draws: for every sampling
schedule, across epochs and schedule phases, each global batch's union over the ranks is the single
process's batch (same samples, same augmentation keys)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lt_bench.config_nodes import params_of
from lt_bench.data.memory import TrainLoader
from lt_bench.data.samplers import EpochBatches
from lt_bench.data.sources import TensorSplit
from lt_bench.schedules import Schedule
from tests.helpers import make_config

SCHEDULES = ["none", "rs", "drs", "pps", "pb"]  # instance, class-balanced, deferred, progressive, mixture
EPOCHS = 6  # the schedules below switch or ramp inside these epochs
COUNTS = [40, 20, 10, 5, 3]  # 78 samples: batches of 8 leave a last batch of 6
BATCH = 8


def _labels() -> torch.Tensor:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]


def _probability_tables() -> dict[str, list[torch.Tensor | None]]:
    tables = {}
    for name in SCHEDULES:
        cfg = make_config(f"schedule={name}", "trainer.max_epochs=6", "schedule.e0=2", "schedule.e1=4")
        if name in ("none", "rs", "pb"):
            cfg = make_config(f"schedule={name}", "trainer.max_epochs=6")
        schedule = Schedule(**params_of(cfg.schedule))
        tables[name] = [schedule.class_sampling_probs(e, COUNTS) for e in range(EPOCHS)]
    return tables


def _draws(tables, rank: int, world_size: int) -> dict[str, list[list[tuple[list[int], list[int]]]]]:
    """Per schedule, per epoch, per batch: (sample indices, augmentation keys) this rank trains on."""
    labels = _labels()
    images = torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8)
    out = {}
    for name, table in tables.items():
        batches = EpochBatches(
            labels, BATCH, seed=3, sampling_fn=table.__getitem__, rank=rank, world_size=world_size
        )
        loader = TrainLoader(TensorSplit(images, labels), batches)
        epochs = []
        for epoch in range(EPOCHS):
            loader.sampler.set_epoch(epoch)  # what Lightning calls each epoch
            epochs.append([(idx.tolist(), keys.tolist()) for _, _, keys, idx in loader])
        out[name] = epochs
    return out


def _worker(rank: int, world_size: int, init_file: str, tables, result_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    mine = _draws(tables, rank, world_size)
    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, mine)  # through the real collective, as a DDP run would see them
    if rank == 0:
        torch.save(gathered, result_file)
    dist.destroy_process_group()


def test_two_gloo_ranks_draw_exactly_the_single_process_batches(tmp_path):
    tables = _probability_tables()
    result_file = tmp_path / "draws.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), tables, str(result_file)), nprocs=2, join=True)
    per_rank = torch.load(result_file)
    single = _draws(tables, rank=0, world_size=1)
    for name in SCHEDULES:
        for epoch in range(EPOCHS):
            batches = single[name][epoch]
            assert len(per_rank[0][name][epoch]) == len(per_rank[1][name][epoch]) == len(batches)
            for b, (indices, keys) in enumerate(batches):
                (i0, k0), (i1, k1) = per_rank[0][name][epoch][b], per_rank[1][name][epoch][b]
                assert sorted(i0 + i1) == sorted(indices), (name, epoch, b)
                assert sorted(k0 + k1) == sorted(keys), (name, epoch, b)
                assert abs(len(i0) - len(i1)) <= 1
    # the schedules really changed what was drawn (the test would pass vacuously otherwise)
    first, last = single["pps"][0], single["pps"][EPOCHS - 1]
    assert sorted(i for b in first for i in b[0]) != sorted(i for b in last for i in b[0])
