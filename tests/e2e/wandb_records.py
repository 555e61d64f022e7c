"""Read an offline W&B run back from its ``.wandb`` file (what ``wandb sync`` would upload).

The file is wandb's record log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then LevelDB-log
blocks of 32 KiB, each record chunked as ``crc32 (4) | length (2) | type (1) | payload`` (type 1 full,
2 first, 3 middle, 4 last); a block's tail shorter than a chunk header is padding. Each assembled record
is a ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    """Every record of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, version = HEADER.unpack_from(data, 0)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    out, pos, parts = [], HEADER.size, []
    while pos + CHUNK.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:  # padding to the next block
            pos += left
            continue
        _, length, kind = CHUNK.unpack_from(data, pos)
        pos += CHUNK.size
        if kind == 0 and length == 0:  # zero-filled tail (a preallocated or unflushed end)
            break
        parts.append(data[pos : pos + length])
        pos += length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            out.append(record)
            parts = []
    return out


@dataclass
class OfflineRun:
    """What one offline run holds, as plain Python values."""

    path: Path
    run_id: str = ""
    group: str = ""
    job_type: str = ""
    name: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    def keys(self) -> set[str]:
        return {k for row in self.history for k in row}

    def column(self, key: str) -> list[Any]:
        return [row[key] for row in self.history if key in row]


def _item_key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_run(run_folder: Path) -> OfflineRun:
    """The run in ``<run dir>/wandb/offline-run-*`` (the folder holding ``run-<id>.wandb``)."""
    (path,) = Path(run_folder).glob("run-*.wandb")
    run = OfflineRun(path=path)
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.group, run.job_type = r.run_id, r.run_group, r.job_type
            run.name, run.tags = r.display_name, list(r.tags)
            for item in r.config.update:
                run.config[_item_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[_item_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({_item_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_item_key(item)] = json.loads(item.value_json)
        elif kind == "files":
            run.files += [f.path for f in record.files.files]
        elif kind == "artifact":
            a = record.artifact
            run.artifacts.append(
                {"type": a.type, "name": a.name, "aliases": list(a.aliases),
                 "files": [e.path for e in a.manifest.contents]}
            )  # fmt: skip
    return run


def offline_runs(run_dir: Path, wait_s: float = 20.0) -> list[OfflineRun]:
    """Every offline W&B run written under ``<run_dir>/wandb``.

    ``wandb.finish`` can return before wandb's service process has flushed the whole record log to disk,
    so a run read too early may lack its header record: read again until every run has its id (or
    ``wait_s`` passes, and the caller's assertions say what is missing)."""
    deadline = time.monotonic() + wait_s
    while True:
        runs = [read_run(p) for p in sorted((Path(run_dir) / "wandb").glob("offline-run-*"))]
        if all(run.run_id for run in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)
