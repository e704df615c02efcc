"""Read an offline W&B run file (`wandb/offline-run-*/run-*.wandb`) without syncing it.

The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of records, each with a
7-byte header (crc32, little-endian length, type: 1 full, 2 first, 3 middle, 4 last) whose payload
is a serialised `wandb_internal_pb2.Record`. Useful to check a run's contents before `wandb sync`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
FILE_HEADER = 7
RECORD_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes):
    pos, chunks = FILE_HEADER, []
    while pos + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < RECORD_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + RECORD_HEADER])
        pos += RECORD_HEADER
        if kind == 0 and length == 0:
            pos += left_in_block - RECORD_HEADER  # zero padding to the block end
            continue
        chunk, pos = data[pos : pos + length], pos + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            chunks = [chunk]
        elif kind == MIDDLE:
            chunks.append(chunk)
        elif kind == LAST:
            chunks.append(chunk)
            yield b"".join(chunks)


def read_records(path: str | Path):
    """Every Record of an offline run file, in order."""
    from wandb.proto import wandb_internal_pb2

    for payload in _payloads(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        yield record


def _item_value(item):
    return json.loads(item.value_json) if item.value_json else None


def summarize_run(path: str | Path) -> dict:
    """History rows, final summary, config, group, tags and run id of an offline run file."""
    out = {"history": [], "summary": {}, "config": {}, "group": "", "tags": [], "run_id": "", "files": []}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): _item_value(i) for i in record.history.item})
        elif kind == "summary":
            for i in record.summary.update:
                out["summary"][i.key or "/".join(i.nested_key)] = _item_value(i)
        elif kind == "config":
            for i in record.config.update:
                out["config"][i.key or "/".join(i.nested_key)] = _item_value(i)
        elif kind == "run":
            out["run_id"], out["group"] = record.run.run_id, record.run.run_group
            out["tags"] = list(record.run.tags)
            for i in record.run.config.update:
                out["config"][i.key or "/".join(i.nested_key)] = _item_value(i)
        elif kind == "files":
            out["files"].extend(f.path for f in record.files.files)
    return out


def find_run_files(root: str | Path) -> list[Path]:
    return sorted(Path(root).rglob("offline-run-*/run-*.wandb"))
