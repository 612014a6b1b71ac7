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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...schemas.index import INDEX_SCHEMA, INDEX_VERSION
from ..storage import StorageError, Store, redact_url
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

    def __init__(
        self, uri: str, store: Store, partitions: int, base: dict | None = None, stale: Stale | None = None
    ) -> None:
        """`base`: the manifest of the index at `uri` to grow (its rows are kept, the new ones added);
        `stale`: shards of it re-written since, whose old rows go (their new ones come through `add`)."""
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.uri, self.store, self.partitions, self.base = uri.rstrip("/"), store, partitions, base
        self.stale = stale or Stale(frozenset(), frozenset())
        self._spill = tempfile.TemporaryDirectory(prefix="tv3s-index-")
        self._writers: dict[int, pq.ParquetWriter] = {}
        self.rows = base["rows"] if base else 0
        self.generation = base.get("generation", 0) + 1 if base else 0

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
        """Sort every partition and write it, then the manifest; the partition URLs.

        Growing an index writes the partitions that gained rows under new names and switches to them
        with the manifest, written last in one PUT: a crash before it leaves the old index whole."""
        for writer in self._writers.values():
            writer.close()
        urls = []
        try:
            for p in range(self.partitions):
                urls.append(self._partition(p))
        finally:
            self._spill.cleanup()
        manifest = {"version": INDEX_VERSION, "partitions": self.partitions, "rows": self.rows, "files": urls}
        manifest["generation"] = self.generation
        self.store.write(f"{self.uri}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
        return urls

    def _partition(self, p: int) -> str:
        """Partition p's URL after this writer: its old file if it gained no row, else a new sorted file."""
        old = self.base["files"][p] if self.base else None
        if old is not None and p not in self._writers and p not in self.stale.partitions:
            return old
        spilled = os.path.join(self._spill.name, f"{p:05d}.parquet")
        rows = pq.read_table(spilled) if p in self._writers else INDEX_SCHEMA.empty_table()
        if old is not None:
            kept = read_index(old, self.store).select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)
            if self.stale.shards:
                kept = kept.filter(pc.invert(pc.is_in(kept["shard"], pa.array(sorted(self.stale.shards)))))
            rows = pa.concat_tables([kept, rows])
        return self._write(p, rows.sort_by(SORT_KEYS))

    def _write(self, p: int, rows: pa.Table) -> str:
        sink = io.BytesIO()
        metadata = {**INDEX_SCHEMA.metadata, SORTED_KEY: SORTED_VALUE}
        pq.write_table(rows.replace_schema_metadata(metadata), sink, compression="zstd")
        suffix = f".g{self.generation}" if self.generation else ""
        url = f"{self.uri}/part-{p:05d}{suffix}.parquet"
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
    grow: bool = False,
) -> IndexResult:
    """`build_index` streamed into a partitioned index at `uri`: each shard's rows go to their
    partitions as the shard is scanned, so no process holds the archive's index. The result's
    table is empty (the rows are in the partitions); its counts and errors are the whole index's.

    With `grow`, an index already at `uri` keeps its rows and partition count, and only the shards
    it does not hold yet are scanned (numbered after its last): an archive that grows by new shards
    is indexed for the cost of the new ones. The result counts those."""
    urls, errors = store.expand(patterns)
    base = _manifest(uri, store) if grow and is_partitioned(uri, store) else None
    scans, stale = [(urls, 0)], None
    if base is not None:
        partitions = int(base["partitions"])
        scans, stale = _grown(uri, urls, store, workers)
    writer = PartitionedIndexWriter(uri, store, partitions, base, stale)
    members = 0
    for todo, first in scans:
        for shard in shard_indexes(todo, store, key_pattern, workers, progress, ray_from, first):
            writer.add(shard.table)
            errors += shard.errors
            members += shard.members
    writer.close()
    return IndexResult(INDEX_SCHEMA.empty_table(), errors, sum(len(todo) for todo, _ in scans), members)


@dataclass(frozen=True)
class Stale:
    """Shards an index holds that were re-written since (by URL), and the partitions holding their rows."""

    shards: frozenset[str]
    partitions: frozenset[int]


@dataclass(frozen=True)
class _Indexed:
    version: str | None
    order: int
    partitions: frozenset[int]


def _grown(uri: str, urls: list[str], store: Store, workers: int) -> tuple[list[tuple[list[str], int]], Stale]:
    """What growing the index at `uri` over `urls` scans: the shards it lacks (numbered after its last),
    and each shard re-written since it was indexed (its version changed: re-scanned under its own
    number, its old rows dropped); a shard neither new nor re-written costs one metadata request."""
    known, first = _indexed_shards(uri, store)
    held = [u for u in urls if redact_url(u) in known]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        now = dict(zip(held, pool.map(lambda u: _version(u, store), held)))
    rewritten = [u for u in held if now[u] != known[redact_url(u)].version]
    scans = [([u for u in urls if redact_url(u) not in known], first)]
    scans += [([u], known[redact_url(u)].order) for u in rewritten]
    stale = Stale(
        frozenset(redact_url(u) for u in rewritten),
        frozenset(p for u in rewritten for p in known[redact_url(u)].partitions),
    )
    return scans, stale


def _version(url: str, store: Store) -> str | None:
    try:
        return store.stat(url)[1]
    except StorageError:
        return "unreadable"  # re-scanned, so the scan's own error record says why


def _manifest(uri: str, store: Store) -> dict:
    return json.loads(store.read_all(f"{uri.rstrip('/')}/{MANIFEST}"))


def _indexed_shards(uri: str, store: Store) -> tuple[dict[str, _Indexed], int]:
    """The shards an index holds (by URL: the version indexed, the shard's number, the partitions holding
    its rows) and the next free shard number, read a partition at a time."""
    known: dict[str, _Indexed] = {}
    last = -1
    for p, load in enumerate(partition_loaders(uri, store)):
        table = load().select(["shard", "shard_version", "shard_order"])
        shards = table.group_by("shard", use_threads=False).aggregate(
            [("shard_version", "first"), ("shard_order", "min")]
        )
        for row in shards.to_pylist():
            url, before = row["shard"], known.get(row["shard"])
            parts = (before.partitions if before else frozenset()) | {p}
            known[url] = _Indexed(row["shard_version_first"], row["shard_order_min"], parts)
        if table.num_rows:
            last = max(last, int(pc.max(table["shard_order"]).as_py()))
    return known, last + 1


def is_partitioned(uri: str, store: Store) -> bool:
    """Whether `uri` is a partitioned index (a folder with its manifest)."""
    fs, path = store.filesystem(f"{uri.rstrip('/')}/{MANIFEST}")
    return fs.exists(path)


def partition_loaders(uri: str, store: Store) -> list[Callable[[], pa.Table]]:
    """One loader per partition of the index (a single-file index is one), each reading its partition
    when called, so a caller holds only the partitions it is working on."""
    if not is_partitioned(uri, store):
        return [partial(read_index, uri, store)]
    return [partial(read_index, url, store) for url in _manifest(uri, store)["files"]]


def index_partitions(uri: str, store: Store) -> Iterator[pa.Table]:
    """The index's partitions one at a time."""
    for load in partition_loaders(uri, store):
        yield load()
