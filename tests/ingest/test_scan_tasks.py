"""Shard scans as Ray tasks give the index a single process gives, rows and errors alike, in shard order."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tv3s.cli import main
from tv3s.pipeline.ingest.index import build_index, read_index
from tv3s.pipeline.ingest.partitions import index_partitions
from tv3s.pipeline.ingest.scan_tasks import ray_shard_indexes
from tv3s.pipeline.storage import Store

from ..support.jobdata import write_archive
from ..support.raycluster import ray_cluster

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster(worker_nodes=1, cpus_per_node=2) as (c, address):
        yield c, address


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    paths = write_archive(root)
    (root / "broken.tar").write_bytes(b"not a tar archive at all" * 40)
    return [*paths, str(root / "broken.tar"), str(root / "missing.tar")]


def test_tasks_give_the_single_process_index(cluster, shards):
    """(The cluster fixture connects this process to the cluster.)"""
    alone = build_index(shards, Store())
    parts = list(ray_shard_indexes(shards, Store(), per_task=2, in_flight=2))
    on_ray = build_index(shards, Store(), ray_from=1)
    assert pa.concat_tables([p.table for p in parts]).equals(alone.table)  # shard order, global shard numbers
    assert on_ray.table.equals(alone.table) and on_ray.errors == alone.errors
    assert {e.kind.value for e in alone.errors} >= {"not_found"} and len(alone.errors) >= 2


def test_tv3s_index_scans_on_a_cluster(cluster, shards, tmp_path):
    _, address = cluster
    assert main(["index", *shards, "--out", str(tmp_path / "one.parquet"), "--no-progress"]) == 0
    args = ["index", *shards, "--out", str(tmp_path / "parts"), "--partitions", "3", "--no-progress"]
    assert main([*args, "--address", address]) == 0
    rows = pa.concat_tables(index_partitions(str(tmp_path / "parts"), Store()))
    alone = read_index(str(tmp_path / "one.parquet"), Store())
    key = [("video_id", "ascending"), ("index", "ascending")]
    assert rows.sort_by(key).equals(alone.sort_by(key).replace_schema_metadata(rows.schema.metadata))
