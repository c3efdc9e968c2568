"""Writing a release: Hugging Face's Parquet layout, streamed a day at a time, and its card.

The folder is ``data/train-00000-of-000NN.parquet`` plus ``README.md``. It is written beside
the old one and swapped in whole, so a reader never sees half a release.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from wildchat_dag.defs.release.release_schema import RELEASE_ARROW_SCHEMA


@dataclass
class WrittenRelease:
    folder: Path
    shards: list[Path] = field(default_factory=list)
    rows: int = 0
    # Arrow's in-memory size, which the card's num_bytes means; and the files' size on disk.
    num_bytes: int = 0
    download_size: int = 0


def shard_name(index: int, shards: int) -> str:
    return f"train-{index:05d}-of-{shards:05d}.parquet"


def write_shards(
    folder: Path, days: Iterable[pa.Table], total_rows: int, shard_rows: int
) -> WrittenRelease:
    """Write ``total_rows`` rows, arriving a day at a time, as shards of ``shard_rows`` rows.
    Fails if the days hold another number of rows (the tables changed while exporting)."""
    shards = max(1, math.ceil(total_rows / shard_rows))
    data = folder / "data"
    data.mkdir(parents=True)
    written = WrittenRelease(folder)
    writer: pq.ParquetWriter | None = None
    in_shard = 0

    def open_shard() -> pq.ParquetWriter:
        path = data / shard_name(len(written.shards), shards)
        written.shards.append(path)
        return pq.ParquetWriter(path, RELEASE_ARROW_SCHEMA, compression="zstd")

    for day in days:
        table = day.select(RELEASE_ARROW_SCHEMA.names).cast(RELEASE_ARROW_SCHEMA)
        offset = 0
        while offset < table.num_rows:
            if writer is None:
                writer = open_shard()
            piece = table.slice(offset, min(shard_rows - in_shard, table.num_rows - offset))
            writer.write_table(piece)
            written.rows += piece.num_rows
            written.num_bytes += piece.nbytes
            in_shard += piece.num_rows
            offset += piece.num_rows
            if in_shard == shard_rows:
                writer.close()
                writer, in_shard = None, 0
    if writer is None and not written.shards:
        # An empty release still has its one (empty) file, so it loads.
        writer = open_shard()
    if writer is not None:
        writer.close()
    if written.rows != total_rows or len(written.shards) != shards:
        raise RuntimeError(
            f"expected {total_rows} rows in {shards} shards, wrote {written.rows} in "
            f"{len(written.shards)}: the release tables changed during the export; run it again"
        )
    written.download_size = sum(p.stat().st_size for p in written.shards)
    return written


def staging_folder(folder: Path) -> Path:
    """A fresh folder beside ``folder`` to write the next release into."""
    staging = folder.with_name(f".{folder.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    return staging


def swap_in(staging: Path, folder: Path) -> None:
    """Replace ``folder`` by ``staging``: two renames, so the old release stays whole until the
    new one is in place."""
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
