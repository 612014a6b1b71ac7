"""Shard scans as Ray tasks: `tv3s index --address`, and a job's shards indexed by its cluster.

One process waits on storage for `workers` shards at a time, so an archive of a million
shards is hours of round trips from one machine (a shard's header scan is a few ranged
GETs of ~30 ms on S3). As Ray tasks, each task scans a batch of shards with its own threads
on whichever node has a CPU free; the driver takes their results in shard order and holds
at most `in_flight` batches, so it never holds the archive's index either.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from tqdm import tqdm

from ..storage import Store
from .index import ShardIndex, iter_shard_indexes
from .samples import DEFAULT_KEY_PATTERN

SHARDS_PER_TASK = 16
# A job connected to a cluster scans on it from this many shards: fewer are as quick from the
# driver's own threads, and need no worker node (an autoscaling cluster would start one).
JOB_RAY_FROM = 4 * SHARDS_PER_TASK


def _scan_batch(urls: list[str], first: int, store: Store, key_pattern: str, workers: int) -> list[ShardIndex]:
    """One task: the indexes of a batch of shards, numbered from `first` (their place in the archive)."""
    return list(iter_shard_indexes(urls, store, key_pattern, workers, first=first))


def ray_shard_indexes(
    urls: list[str],
    store: Store,
    key_pattern: str = DEFAULT_KEY_PATTERN,
    workers: int = 8,
    progress: bool = False,
    per_task: int = SHARDS_PER_TASK,
    in_flight: int | None = None,
    first: int = 0,
) -> Iterator[ShardIndex]:
    """Each shard's index, in shard order (numbered from `first`), scanned by Ray tasks on the cluster this process is connected
    to (`ray.init` first); a lost task is retried by Ray (a scan only reads)."""
    import ray

    scan = ray.remote(num_cpus=1, max_retries=3)(_scan_batch)
    if in_flight is None:
        in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    batches = ((start, urls[start : start + per_task]) for start in range(0, len(urls), per_task))
    with tqdm(total=len(urls), unit="shard", desc="index", disable=not progress) as bar:
        pending: deque = deque()
        for start, batch in batches:
            pending.append(scan.remote(batch, first + start, store, key_pattern, workers))
            if len(pending) >= in_flight:
                yield from _taken(pending.popleft(), bar)
        while pending:
            yield from _taken(pending.popleft(), bar)


def _taken(ref, bar: tqdm) -> Iterator[ShardIndex]:
    import ray

    shards = ray.get(ref)
    bar.update(len(shards))
    yield from shards
