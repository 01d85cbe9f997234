"""Read an offline W&B run's ``.wandb`` transaction log back into its records.

The file is W&B's own format: a 7-byte header (``:W&B``, magic 0xBEE1, version 0) and then LevelDB-log
records in 32 KiB blocks (crc32c, length, type FULL/FIRST/MIDDLE/LAST), each payload one
``wandb_internal_pb2.Record`` protobuf. wandb 0.31 ships no Python reader (its Go core writes the log), so the
tests decode it with wandb's own protobuf classes.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2

HEADER = struct.Struct("<4sHB")
RECORD = struct.Struct("<IHB")
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[Any]:
    data = Path(path).read_bytes()
    ident, magic, version = HEADER.unpack_from(data)
    if (ident, magic, version) != (b":W&B", 0xBEE1, 0):
        raise ValueError(f"{path} is not a W&B transaction log")
    records, pending, pos = [], b"", HEADER.size
    while pos + RECORD.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < RECORD.size:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = RECORD.unpack_from(data, pos)
        if (kind == 0 and length == 0) or pos + RECORD.size + length > len(data):
            break  # the end of the log, or a record W&B's core is still writing
        pending += data[pos + RECORD.size: pos + RECORD.size + length]
        pos += RECORD.size + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def settled_records(path: Path, timeout: float = 60.0) -> list[Any]:
    """The records once W&B's core process has flushed the run (it writes after ``finish`` returns)."""
    deadline = time.time() + timeout
    while True:
        try:
            records = read_records(path) if Path(path).exists() else []
        except DecodeError:  # caught mid-write: a record's bytes are not all on disk yet
            if time.time() > deadline:
                raise
            records = []
        kinds = {r.WhichOneof("record_type") for r in records}
        if "exit" in kinds or time.time() > deadline:
            return records
        time.sleep(0.2)


def history_rows(path: Path) -> list[dict[str, Any]]:
    """Each ``run.log`` call as a dict (W&B's own ``_step``/``_timestamp``/``_runtime`` keys included)."""
    rows = []
    for record in settled_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def run_id(path: Path) -> str:
    return next(r.run.run_id for r in settled_records(path) if r.WhichOneof("record_type") == "run")
