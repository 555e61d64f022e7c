"""Two CPU processes over gloo: every test sample is counted exactly once; a SIGTERM stops both ranks; and
multi-node DDP (``trainer.num_nodes``): two "nodes" of one process each, started by hand on this machine
as a cluster's launcher starts them (one process per node, NODE_RANK / MASTER_ADDR / MASTER_PORT set), give
exactly the figures of one node running the same two processes (``trainer=ddp_cpu``)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT, cli_command, cli_env, read_summary, run_cli, sigterm_after_first_checkpoint

pytestmark = pytest.mark.slow

# one epoch of three batches; 370 test images, an odd number per process shard
ARGS = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "dataset.test_per_class=37"]


@pytest.fixture(scope="module")
def one_node(tmp_path_factory) -> Path:
    """The run directory of ``trainer=ddp_cpu`` (one node, two processes), run once for the module."""
    run_dir = tmp_path_factory.mktemp("one_node") / "run"
    result = run_cli("trainer=ddp_cpu", *ARGS, run_dir=run_dir, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_two_process_ddp_counts_every_test_sample_once(one_node):
    summary = read_summary(one_node)
    assert summary["test"]["n"] == 370
    assert np.load(one_node / summary["test"]["confusion"]).sum() == 370


def test_sigterm_stops_both_processes_at_one_step_and_the_run_resumes(run_dir):
    # Lightning 2.6's own handler broadcasts inside the signal handler and hangs two gloo ranks here
    args = [
        "trainer=ddp_cpu",
        "trainer.max_epochs=12",
        "trainer.limit_train_batches=2",
        "dataset.test_per_class=10",
    ]
    returncode, stderr = sigterm_after_first_checkpoint(*args, run_dir=run_dir, timeout=200)
    assert returncode == 143, stderr[-3000:]
    assert stderr.count("lt_bench: error: stopped by SIGTERM") == 1  # rank 0 alone says so
    resumed = run_cli(*args, "ckpt_path=last", run_dir=run_dir, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_summary(run_dir)["test"]["n"] == 100


# -- two nodes --------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_of_one_process_give_the_figures_of_one_node_of_two(one_node, tmp_path):
    two_nodes = tmp_path / "two_nodes"
    port = _free_port()
    command = cli_command(
        "trainer.accelerator=cpu",
        "trainer.strategy=ddp",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        *ARGS,
        run_dir=two_nodes,  # shared storage, as on a cluster
    )
    nodes = []
    for node_rank in (0, 1):
        env = cli_env(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            NODE_RANK=str(node_rank),
            LOCAL_RANK="0",  # the launcher started this process: Lightning starts no other
            RANK=str(node_rank),  # global rank, read before the trainer exists (rank 0 owns the directory)
            WORLD_SIZE="2",
        )
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

    single = read_summary(one_node)
    multi = read_summary(two_nodes)
    assert multi["test"]["n"] == single["test"]["n"] == 370  # every test image once over the two nodes
    assert multi["config"]["trainer"]["num_nodes"] == 2
    for key in ("top1", "balanced_acc", "per_class", "nll"):
        assert multi["test"][key] == single["test"][key], key
