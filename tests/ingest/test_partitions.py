"""A partitioned index: whole videos per partition, sorted for planning, read one partition at a time."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest

from tv3s.cli import main
from tv3s.jobs.plan import plan_chains
from tv3s.pipeline.ingest.index import build_index, read_index, write_table
from tv3s.pipeline.ingest.order import SORT_KEYS
from tv3s.pipeline.ingest.partitions import (
    MANIFEST,
    PartitionedIndexWriter,
    build_partitioned_index,
    index_partitions,
    partition_of,
)
from tv3s.pipeline.storage import Store
from tv3s.schemas.job import StateSpec

from ..jobs.test_plan import index_table
from ..support.jobdata import write_archive


def sample_index() -> pa.Table:
    videos = [f"drive-{v:03d}" for v in range(40)] + ["caméra/7", "a b"]
    return index_table([(v, "segment", s) for v in videos for s in range(5)])


def test_a_video_has_one_partition_the_same_in_every_process():
    ids = pa.array(["drive-1", "drive-2", "drive-1", "caméra/7"])
    parts = partition_of(ids, 7)
    assert parts[0] == parts[2] and all(0 <= p < 7 for p in parts)
    assert partition_of(pa.array(["drive-1"]), 7)[0] == parts[0]  # no per-process salt (hash() has one)
    assert list(partition_of(ids, 1)) == [0, 0, 0, 0]


def test_rows_added_in_any_order_come_out_partitioned_sorted_and_complete(tmp_path):
    table = sample_index()
    shuffled = table.take(pa.array(random.Random(0).sample(range(len(table)), len(table))))
    writer = PartitionedIndexWriter(str(tmp_path / "index"), Store(), 4)
    for start in range(0, len(shuffled), 37):  # batches that cut videos apart
        writer.add(shuffled.slice(start, 37))
    urls = writer.close()
    manifest = json.loads((tmp_path / "index" / MANIFEST).read_text())
    assert manifest["partitions"] == 4 and manifest["rows"] == len(table) and manifest["files"] == urls
    parts = list(index_partitions(str(tmp_path / "index"), Store()))
    assert len(parts) == 4
    seen: set[str] = set()
    for part in parts:
        assert part.equals(part.sort_by(SORT_KEYS))
        videos = set(part["video_id"].to_pylist())
        assert not videos & seen, "a video is in one partition only"
        seen |= videos
    assert pa.concat_tables(parts).sort_by(SORT_KEYS).equals(table.sort_by(SORT_KEYS))


def test_planning_partition_by_partition_gives_the_same_chains(tmp_path):
    table = sample_index()
    writer = PartitionedIndexWriter(str(tmp_path / "index"), Store(), 3)
    writer.add(table)
    writer.close()
    state = StateSpec(policy="split", split_frames=25, warmup_frames=10)
    whole, _ = plan_chains(table, state)
    parts = [c for part in index_partitions(str(tmp_path / "index"), Store()) for c in plan_chains(part, state)[0]]
    assert sorted(parts, key=lambda c: c.id) == sorted(whole, key=lambda c: c.id)


def test_a_single_file_index_is_one_partition(tmp_path):
    table = sample_index()
    write_table(table, str(tmp_path / "index.parquet"), Store())
    (only,) = index_partitions(str(tmp_path / "index.parquet"), Store())
    assert only.equals(read_index(str(tmp_path / "index.parquet"), Store()))


def test_tv3s_index_writes_partitions(tmp_path, capsys):
    shards = write_archive(tmp_path / "archive")
    out = tmp_path / "index"
    assert main(["index", *shards, "--out", str(out), "--partitions", "3", "--no-progress"]) == 0
    parts = list(index_partitions(str(out), Store()))
    assert len(parts) == 3
    assert sum(len(p) for p in parts) == build_index(shards, Store()).table.num_rows
    assert main(["index", *shards, "--out", str(out), "--partitions", "0"]) == 2
    assert "--partitions must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("partitions", [1, 5])
def test_empty_partitions_plan_to_nothing(tmp_path, partitions):
    writer = PartitionedIndexWriter(str(tmp_path / "index"), Store(), partitions)
    writer.add(index_table([("only", "segment", 0)]))
    writer.close()
    chains = [
        c for part in index_partitions(str(tmp_path / "index"), Store()) for c in plan_chains(part, StateSpec())[0]
    ]
    assert [c.video_id for c in chains] == ["only"]


@pytest.mark.parametrize("workers", [1, 3])
def test_a_partitioned_index_is_built_shard_by_shard_with_the_same_rows(tmp_path, workers):
    shards = write_archive(tmp_path / "archive")
    whole = build_index(shards, Store())
    result = build_partitioned_index(shards, str(tmp_path / "index"), Store(), 3, workers=workers)
    assert (result.shards, result.members, result.errors) == (whole.shards, whole.members, whole.errors)
    parts = pa.concat_tables(index_partitions(str(tmp_path / "index"), Store()))
    assert parts.sort_by(SORT_KEYS).equals(whole.table.sort_by(SORT_KEYS))


def test_growing_an_index_scans_only_the_new_shards_and_equals_indexing_them_all(tmp_path):
    shards = write_archive(tmp_path / "archive")
    old, new = shards[:-2], shards[-2:]
    grown = str(tmp_path / "grown")
    build_partitioned_index(old, grown, Store(), 3)
    added = build_partitioned_index(shards, grown, Store(), 5, grow=True)  # the index's own 3 partitions stay
    assert added.shards == len(new)
    fresh = str(tmp_path / "fresh")
    build_partitioned_index(shards, fresh, Store(), 3)
    for a, b in zip(index_partitions(grown, Store()), index_partitions(fresh, Store()), strict=True):
        assert a.equals(b)
    assert build_partitioned_index(shards, grown, Store(), 3, grow=True).shards == 0  # nothing new: nothing scanned
    args = ["index", *shards, "--out", grown, "--partitions", "3", "--grow", "--no-progress"]
    assert main(args) == 0
    assert main(["index", *shards, "--out", grown, "--grow"]) == 2  # --grow needs --partitions


def test_growing_an_index_rescans_the_shards_rewritten_since_and_drops_their_old_rows(tmp_path):
    """A shard re-uploaded under its name (its version changes) is scanned again under its own number;
    the rows it held are replaced, even in partitions that gain nothing from the new scan."""
    import time

    from ..support.datagen import encode, segment_sample, stamped_frames, tar_bytes
    from ..support.jobdata import H, W

    shards = write_archive(tmp_path / "archive")
    grown = str(tmp_path / "grown")
    build_partitioned_index(shards, grown, Store(), 3)
    time.sleep(0.01)
    # the first shard, re-written: cam9 instead of what it held (those videos' rows there must go)
    clip = encode(stamped_frames(9, 0, 5, H, W))
    with open(shards[0], "wb") as f:
        f.write(tar_bytes([segment_sample("cam9", 0, clip, start_frame=0, frames=5, fps=12)]))
    added = build_partitioned_index(shards, grown, Store(), 3, grow=True)
    assert added.shards == 1  # only the re-written shard was scanned
    fresh = str(tmp_path / "fresh")
    build_partitioned_index(shards, fresh, Store(), 3)
    for a, b in zip(index_partitions(grown, Store()), index_partitions(fresh, Store()), strict=True):
        assert a.equals(b)
    assert build_partitioned_index(shards, grown, Store(), 3, grow=True).shards == 0
