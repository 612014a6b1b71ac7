"""An index in partitions: every video's samples in one partition, chosen by a hash of its id.

A single index file of a petabyte archive (100M samples) is more than one process should
hold; planning needs all of a video's samples together, never all videos at once. So an
index can be a folder of Parquet partitions, each holding whole videos (partition =
hash(video_id) mod P) sorted for planning, plus `_partitions.json` (written last: a folder
without it is not an index yet). Rows are added in any order, a batch at a time, and
spilled to per-partition files as they come; `close` sorts each partition on its own. A
single-file index reads as one partition.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...schemas.index import INDEX_SCHEMA, INDEX_VERSION
from ..storage import Store
from .index import IndexResult, read_index, shard_indexes
from .order import SORT_KEYS, SORTED_KEY, SORTED_VALUE
from .samples import DEFAULT_KEY_PATTERN

MANIFEST = "_partitions.json"


def partition_of(video_ids: pa.Array | pa.ChunkedArray, partitions: int) -> np.ndarray:
    """The partition of each row's video: blake2b of the id, so it is the same on every machine and run
    (Python's hash() is salted per process). Hashed once per distinct id, not per row."""
    encoded = pa.chunked_array([video_ids]) if isinstance(video_ids, pa.Array) else video_ids
    encoded = encoded.combine_chunks().dictionary_encode()
    per_id = np.array(
        [
            int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little") % partitions
            for v in encoded.dictionary.to_pylist()
        ],
        dtype=np.int64,
    )
    return per_id[encoded.indices.to_numpy(zero_copy_only=False)] if len(per_id) else np.zeros(0, np.int64)


class PartitionedIndexWriter:
    """Rows in, a partitioned index out; holds one batch and one partition at a time."""

    def __init__(self, uri: str, store: Store, partitions: int) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.uri, self.store, self.partitions = uri.rstrip("/"), store, partitions
        self._spill = tempfile.TemporaryDirectory(prefix="tv3s-index-")
        self._writers: dict[int, pq.ParquetWriter] = {}
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        """Spill a batch of index rows to the partitions of their videos."""
        table = table.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)
        part = partition_of(table["video_id"], self.partitions)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.partitions + 1))
        for p in np.flatnonzero(np.diff(bounds)).tolist():
            rows = table.take(pa.array(order[bounds[p] : bounds[p + 1]]))
            if p not in self._writers:
                path = os.path.join(self._spill.name, f"{p:05d}.parquet")
                self._writers[p] = pq.ParquetWriter(path, INDEX_SCHEMA)
            self._writers[p].write_table(rows)
        self.rows += len(table)

    def close(self) -> list[str]:
        """Sort every partition and write it, then the manifest; the partition URLs."""
        for writer in self._writers.values():
            writer.close()
        urls = []
        try:
            for p in range(self.partitions):
                spilled = os.path.join(self._spill.name, f"{p:05d}.parquet")
                rows = pq.read_table(spilled) if p in self._writers else INDEX_SCHEMA.empty_table()
                urls.append(self._write(p, rows.sort_by(SORT_KEYS)))
        finally:
            self._spill.cleanup()
        manifest = {"version": INDEX_VERSION, "partitions": self.partitions, "rows": self.rows, "files": urls}
        self.store.write(f"{self.uri}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
        return urls

    def _write(self, p: int, rows: pa.Table) -> str:
        sink = io.BytesIO()
        metadata = {**INDEX_SCHEMA.metadata, SORTED_KEY: SORTED_VALUE}
        pq.write_table(rows.replace_schema_metadata(metadata), sink, compression="zstd")
        url = f"{self.uri}/part-{p:05d}.parquet"
        self.store.write(url, sink.getvalue())
        return url


def build_partitioned_index(
    patterns: Iterable[str],
    uri: str,
    store: Store,
    partitions: int,
    key_pattern: str = DEFAULT_KEY_PATTERN,
    workers: int = 8,
    progress: bool = False,
    ray_from: int | None = None,
) -> IndexResult:
    """`build_index` streamed into a partitioned index at `uri`: each shard's rows go to their
    partitions as the shard is scanned, so no process holds the archive's index. The result's
    table is empty (the rows are in the partitions); its counts and errors are the whole index's."""
    urls, errors = store.expand(patterns)
    writer = PartitionedIndexWriter(uri, store, partitions)
    members = 0
    for shard in shard_indexes(urls, store, key_pattern, workers, progress, ray_from):
        writer.add(shard.table)
        errors += shard.errors
        members += shard.members
    writer.close()
    return IndexResult(INDEX_SCHEMA.empty_table(), errors, len(urls), members)


def is_partitioned(uri: str, store: Store) -> bool:
    """Whether `uri` is a partitioned index (a folder with its manifest)."""
    fs, path = store.filesystem(f"{uri.rstrip('/')}/{MANIFEST}")
    return fs.exists(path)


def partition_loaders(uri: str, store: Store) -> list[Callable[[], pa.Table]]:
    """One loader per partition of the index (a single-file index is one), each reading its partition
    when called, so a caller holds only the partitions it is working on."""
    if not is_partitioned(uri, store):
        return [partial(read_index, uri, store)]
    manifest = json.loads(store.read_all(f"{uri.rstrip('/')}/{MANIFEST}"))
    return [partial(read_index, url, store) for url in manifest["files"]]


def index_partitions(uri: str, store: Store) -> Iterator[pa.Table]:
    """The index's partitions one at a time."""
    for load in partition_loaders(uri, store):
        yield load()
