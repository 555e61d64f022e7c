"""summary.hardware: the device a run's figures were computed on, as summary.json records it."""

from __future__ import annotations

import torch

from lt_bench.summary import hardware


def test_a_cpu_run_names_the_processor_and_torch() -> None:
    record = hardware(torch.device("cpu"))
    assert record["device"] == "cpu"
    assert record["name"] and record["name"] != "unknown"  # /proc/cpuinfo's model name here
    assert record["torch"] == torch.__version__


def test_a_gpu_run_names_the_card(monkeypatch) -> None:
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: asked.append(d) or "NVIDIA H100 80GB HBM3")
    record = hardware(torch.device("cuda", 0))
    assert record == {"device": "cuda", "name": "NVIDIA H100 80GB HBM3", "torch": torch.__version__}
    assert asked == [torch.device("cuda", 0)]
