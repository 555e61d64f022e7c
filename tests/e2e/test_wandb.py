"""W&B: the mode never needs a prompt or a network, runs are grouped by sweep, the final tables are logged,
and ``logger=wandb`` on a machine without credentials writes an offline run quickly."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lt_bench.errors import ConfigError
from lt_bench.loggers import (
    choose_wandb_mode,
    confusion_rows,
    final_scalars,
    flatten_config,
    has_credentials,
    per_class_rows,
    run_identity,
    run_tags,
    server_reachable,
    start_or_offline,
    sweep_group,
    wandb_host,
)
from tests.helpers import FAST, ROOT, make_config, read_summary

SUMMARY = {
    "class_counts": [400, 40, 4],
    "test": {
        "top1": 0.6, "balanced_acc": 0.5, "many": 0.9, "medium": 0.5, "few": 0.1, "gmean": 0.35,
        "per_class": [0.9, 0.5, 0.1], "n": 30, "confusion": [[9, 1, 0], [5, 5, 0], [8, 1, 1]],
    },
    "test_last": {
        "top1": 0.5, "balanced_acc": 0.4, "many": 0.8, "medium": 0.4, "few": None, "gmean": 0.0,
        "per_class": [0.8, 0.4, 0.0], "n": 30, "confusion": [[8, 2, 0], [6, 4, 0], [9, 1, 0]],
    },
    "best_epoch": 3,
    "epochs": 5,
    "selected_by": "val/balanced_acc",
}  # fmt: skip


def never() -> bool:
    raise AssertionError("the network must not be probed here")


# -- mode ----------------------------------------------------------------------------------------------
def test_no_credentials_means_offline_without_probing_the_network():
    assert choose_wandb_mode(None, {}, credentials=False, reachable=never) == ("offline", "no W&B API key")


def test_credentials_and_a_reachable_server_mean_online():
    assert choose_wandb_mode(None, {}, True, lambda: True)[0] == "online"
    mode, reason = choose_wandb_mode(None, {}, True, lambda: False)
    assert mode == "offline" and "not reachable" in reason


def test_explicit_modes_win_in_order_config_then_environment():
    assert choose_wandb_mode("disabled", {"WANDB_MODE": "online"}, True, never)[0] == "disabled"
    assert choose_wandb_mode(None, {"WANDB_MODE": "offline"}, True, never) == (
        "offline",
        "WANDB_MODE=offline",
    )
    assert choose_wandb_mode(None, {"WANDB_MODE": "dryrun"}, True, never)[0] == "offline"


def test_online_without_a_key_falls_back_to_offline_instead_of_prompting():
    mode, reason = choose_wandb_mode("online", {}, credentials=False, reachable=never)
    assert mode == "offline" and "wandb login" in reason


def test_online_with_an_unreachable_server_falls_back_to_offline_instead_of_waiting():
    # a node without DNS: wandb itself would wait 90 s, then fail with a CommError traceback
    for requested, env in (("online", {}), (None, {"WANDB_MODE": "online"})):
        mode, reason = choose_wandb_mode(requested, env, credentials=True, reachable=lambda: False)
        assert mode == "offline" and "=online but the W&B server is not reachable" in reason


class FakeLogger:
    """Stands in for WandbLogger: ``experiment`` starts the run, online failing as a garbage server's
    wandb.init does (the CommError text wandb 0.31 gives after its init timeout)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    @property
    def experiment(self):
        import wandb

        if self.mode == "online":
            raise wandb.errors.CommError(
                'Timed out while retrying: Post "http://127.0.0.1:1/graphql": net/http: HTTP/1.x transport '
                'connection broken: malformed HTTP response "garbage"\nConsider increasing the init_timeout'
            )
        return "run"


def test_a_server_that_does_not_start_the_run_means_offline_with_the_reason():
    logger, mode, reason = start_or_offline(FakeLogger, "online", "WANDB_MODE=online")
    assert (logger.mode, mode) == ("offline", "offline")
    assert reason.startswith("W&B did not start the run online: Timed out while retrying")
    assert "\n" not in reason  # one line
    assert start_or_offline(FakeLogger, "offline", "no W&B API key")[1:] == ("offline", "no W&B API key")


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="logger.mode='sometimes'"):
        choose_wandb_mode("sometimes", {}, True, never)


def test_credentials_come_from_the_key_or_a_netrc_entry_for_the_wandb_host(tmp_path):
    assert has_credentials({"WANDB_API_KEY": "x" * 40}, tmp_path)
    assert not has_credentials({}, tmp_path)  # empty HOME
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine example.org login me password secret\n")
    netrc.chmod(0o600)
    assert not has_credentials({}, tmp_path)
    netrc.write_text("machine api.wandb.ai login user password abc\n")
    assert has_credentials({}, tmp_path)
    assert not has_credentials({"WANDB_BASE_URL": "https://wandb.example.org"}, tmp_path)
    assert wandb_host({"WANDB_BASE_URL": "http://wandb.local:8080"}) == ("wandb.local", 8080)
    assert wandb_host({}) == ("api.wandb.ai", 443)


def test_server_reachable_is_a_bounded_tcp_check():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert server_reachable("127.0.0.1", port, timeout=1.0)
    start = time.monotonic()
    assert not server_reachable("127.0.0.1", port, timeout=1.0)  # closed now: refused at once
    assert time.monotonic() - start < 1.5


# -- identity and payloads -----------------------------------------------------------------------------
def test_config_is_logged_flat_with_dot_keys():
    flat = flatten_config({"loss": {"name": "vs", "gamma": 0.2, "after_e0": {}}, "seed": 1, "l": [1, 2]})
    assert flat == {"loss.name": "vs", "loss.gamma": 0.2, "loss.after_e0": {}, "seed": 1, "l": [1, 2]}


def test_sweep_tag_is_the_sweep_directory_name():
    assert sweep_group("/tmp/ablation_e0") == "ablation_e0"
    assert sweep_group("multirun/2026-11-24/10-23-01") == "2026-11-24_10-23-01"


def test_outside_hydra_the_group_is_the_configured_one():
    assert run_identity(make_config("logger=wandb")) == (None, None)
    assert run_identity(make_config("logger=wandb", "logger.group=mine")) == ("mine", None)
    assert run_tags(make_config("logger=wandb", "loss=la")) == [
        "method=standard",
        "loss=la",
        "schedule=none",
        "dataset=mnist_lt",
    ]


def test_in_a_multirun_the_group_is_the_setting_and_the_name_adds_the_seed():
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from tests.helpers import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        hydra_cfg = compose(
            "config",
            overrides=["hydra.mode=MULTIRUN", "hydra.sweep.dir=/runs/loss_ablation", "loss=la", "seed=1"],
            return_hydra_config=True,
        )
    hydra_cfg.hydra.job.override_dirname = "loss=la,seed=1"  # what Hydra fills in for each job
    HydraConfig.instance().set_config(hydra_cfg)
    try:
        # the group is the setting (overrides without seed and execution-only keys), whatever the sweep
        assert run_identity(make_config("logger=wandb", "seed=1")) == ("loss=la", "loss=la, seed=1")
        assert run_identity(make_config("logger=wandb", "logger.group=mine"))[0] == "mine"
        assert "sweep=loss_ablation" in run_tags(make_config("logger=wandb"))
    finally:
        HydraConfig.instance().cfg = None  # other tests run outside Hydra


def test_per_class_and_confusion_rows():
    assert per_class_rows(SUMMARY) == [[0, 400, 0.9, 0.8], [1, 40, 0.5, 0.4], [2, 4, 0.1, 0.0]]
    rows = confusion_rows(SUMMARY["test"]["confusion"])
    assert len(rows) == 9 and rows[3] == ["1", "0", 5]
    assert sum(r[2] for r in rows) == SUMMARY["test"]["n"]


def test_final_scalars_skip_missing_values():
    scalars = final_scalars(SUMMARY)
    assert scalars["final/test/balanced_acc"] == 0.5
    assert scalars["final/test_last/gmean"] == 0.0
    assert "final/test_last/few" not in scalars
    assert scalars["final/best_epoch"] == 3 and scalars["final/selected_by"] == "val/balanced_acc"


# -- real (offline) W&B --------------------------------------------------------------------------------
def offline_env(home: Path) -> dict[str, str]:
    """No key, no mode, an empty HOME: what a fresh machine without `wandb login` looks like."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    return {**env, "HOME": str(home), "PYTHONWARNINGS": "ignore"}


def run_offline(args: list[str], home: Path, timeout: float) -> subprocess.CompletedProcess:
    """``python ARGS`` in the offline environment, stdin closed so any prompt would fail instead of wait."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**offline_env(home), "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


LOG_FINAL_SCRIPT = """
import json, sys
from pathlib import Path
import wandb
from tests.helpers import make_config
from lt_bench.loggers import build_logger, log_final
csv_logger, logger = build_logger(make_config("logger=wandb"), Path(sys.argv[1]))  # csv is always one
logger.log_metrics({"train/loss": 1.0}, step=0)
log_final(logger, json.loads(sys.argv[2]))
assert wandb.run is None, "log_final must finish the run"
print("finished")
"""


@pytest.mark.slow
def test_log_final_writes_the_tables_and_finishes_the_run(tmp_path):
    # in a subprocess: wandb keeps process-wide state that must not leak into other tests
    home = tmp_path / "home"
    home.mkdir()
    run_dir = tmp_path / "run"
    result = run_offline(["-c", LOG_FINAL_SCRIPT, str(run_dir), json.dumps(SUMMARY)], home, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "finished" in result.stdout
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    tables = offline / "files" / "media" / "table" / "final"
    (per_class,) = tables.glob("per_class_*.table.json")
    data = json.loads(per_class.read_text())
    assert data["columns"] == ["class", "train_count", "test_recall", "test_last_recall"]
    assert data["data"] == per_class_rows(SUMMARY)
    (confusion,) = tables.glob("confusion_matrix_*.table.json")
    cells = json.loads(confusion.read_text())["data"]
    assert ["2", "0", 8] in cells and len(cells) == 9
    assert f"wandb sync {run_dir / 'wandb'}" in result.stderr


@pytest.fixture(scope="module")
def offline_cli_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, float]:
    """``python -m lt_bench logger=wandb`` with no key, no WANDB_MODE and an empty HOME (run once)."""
    root = tmp_path_factory.mktemp("wandb_cli")
    home = root / "home"
    home.mkdir()
    run_dir = root / "run"
    command = ["-m", "lt_bench", *FAST, "trainer.max_epochs=1", "logger=wandb", f"hydra.run.dir={run_dir}"]
    start = time.monotonic()
    result = run_offline(command, home, timeout=180)
    return result, run_dir, time.monotonic() - start


@pytest.mark.slow
def test_cli_with_wandb_and_no_credentials_writes_an_offline_run(offline_cli_run):
    result, run_dir, elapsed = offline_cli_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert (run_dir / "summary.json").exists()
    sync_lines = [line for line in result.stderr.splitlines() if "wandb sync" in line]
    assert len(sync_lines) == 1 and "offline (no W&B API key)" in sync_lines[0]
    assert elapsed < 180


TRAIN_CALLS_LOG_FINAL = "log_final(" in (ROOT / "lt_bench" / "train.py").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not TRAIN_CALLS_LOG_FINAL, reason="train.py does not call loggers.log_final yet")
def test_cli_run_logs_the_final_tables(offline_cli_run):
    result, run_dir, _ = offline_cli_run
    assert result.returncode == 0, result.stderr[-3000:]
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    tables = offline / "files" / "media" / "table" / "final"
    (per_class,) = tables.glob("per_class_*.table.json")
    summary = read_summary(run_dir)
    assert json.loads(per_class.read_text())["data"] == per_class_rows(summary)
    assert list(tables.glob("confusion_matrix_*.table.json"))


@pytest.mark.slow
@pytest.mark.heavy  # a multirun of its own, beyond the suite's 10-minute budget (make test-heavy)
def test_multirun_jobs_get_one_wandb_run_each(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    sweep = tmp_path / "sweep"
    command = ["-m", "lt_bench", "--multirun", *FAST, "trainer.max_epochs=1", "logger=wandb", "seed=0,1"]
    result = run_offline([*command, f"hydra.sweep.dir={sweep}"], home, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [list((sweep / job / "wandb").glob("offline-run-*")) for job in ("0", "1")]
    assert [len(r) for r in runs] == [1, 1]
    assert runs[0][0].name.split("-")[-1] != runs[1][0].name.split("-")[-1]  # distinct run ids


# -- a server that is not W&B (real processes, a local socket: the network is never touched) ----------
@contextlib.contextmanager
def garbage_server():
    """A local TCP server that accepts connections and answers every request with garbage."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            with connection, contextlib.suppress(OSError):
                connection.settimeout(2)
                connection.recv(65536)
                connection.sendall(b"garbage\r\n\r\nnot W&B\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def online_cli_run(base_url: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path, float]:
    home = tmp_path / "home"
    home.mkdir()
    run_dir = tmp_path / "run"
    env = {**offline_env(home), "PYTHONPATH": str(ROOT), "WANDB_MODE": "online", "WANDB_API_KEY": "k" * 40}
    env["WANDB_BASE_URL"] = base_url
    command = ["-m", "lt_bench", *FAST, "trainer.max_epochs=1", "logger=wandb", f"hydra.run.dir={run_dir}"]
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return result, run_dir, time.monotonic() - start


@pytest.mark.faults
def test_a_server_that_accepts_tcp_but_is_not_wandb_means_an_offline_run(tmp_path):
    with garbage_server() as port:
        result, run_dir, elapsed = online_cli_run(f"http://127.0.0.1:{port}", tmp_path)
    print(f"\nWANDB_MODE=online, garbage server: the run took {elapsed:.1f} s (init timeout 20 s)")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "wandb sync" in x]
    assert "offline (W&B did not start the run online:" in line
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert (run_dir / "summary.json").exists()
    assert elapsed < 150


@pytest.mark.faults
def test_online_with_nothing_listening_means_an_offline_run_at_once(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on once closed: refused, as without DNS
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result, run_dir, elapsed = online_cli_run(f"http://127.0.0.1:{port}", tmp_path)
    print(f"\nWANDB_MODE=online, nothing listening: the run took {elapsed:.1f} s")
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if "wandb sync" in x]
    assert "offline (WANDB_MODE=online but the W&B server is not reachable)" in line
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
