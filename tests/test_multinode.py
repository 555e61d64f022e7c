"""Multi-node DDP (``trainer.num_nodes``): two "nodes" of one process each, started by hand on this machine
as a cluster's launcher starts them (one process per node, NODE_RANK / MASTER_ADDR / MASTER_PORT set), give
exactly the figures of one node running the same two processes (``trainer=ddp_cpu``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.helpers import FAST, ROOT, run_cli

pytestmark = pytest.mark.slow

ARGS = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "dataset.test_per_class=37"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_of_one_process_give_the_figures_of_one_node_of_two(tmp_path):
    one_node = tmp_path / "one_node"
    result = run_cli("trainer=ddp_cpu", *ARGS, run_dir=one_node, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]

    two_nodes = tmp_path / "two_nodes"
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "lt_bench",
        *FAST,
        f"hydra.run.dir={two_nodes}",  # shared storage, as on a cluster
        "trainer.accelerator=cpu",
        "trainer.strategy=ddp",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        *ARGS,
    ]
    nodes = []
    for node_rank in (0, 1):
        env = {
            **os.environ,
            "PYTHONWARNINGS": "ignore",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "NODE_RANK": str(node_rank),
            "LOCAL_RANK": "0",  # the launcher started this process: Lightning starts no other
            "RANK": str(node_rank),  # global rank, read before the trainer exists (rank 0 owns the directory)
            "WORLD_SIZE": "2",
        }
        nodes.append(
            subprocess.Popen(
                command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    try:
        outcomes = [node.communicate(timeout=400) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for node, (_, stderr) in zip(nodes, outcomes, strict=True):
        assert node.returncode == 0, stderr[-3000:]

    single = json.loads((one_node / "summary.json").read_text())
    multi = json.loads((two_nodes / "summary.json").read_text())
    assert multi["test"]["n"] == single["test"]["n"] == 370  # every test image once over the two nodes
    assert multi["config"]["trainer"]["num_nodes"] == 2
    for key in ("top1", "balanced_acc", "per_class", "nll"):
        assert multi["test"][key] == single["test"][key], key
