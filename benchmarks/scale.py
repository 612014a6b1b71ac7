"""Planning at archive scale: time and memory to turn an index of N segments into chains.

A synthetic index of N video segments (10 per video, one-minute segments of 1,800
frames, spread over shards as `tv3s shards pack` fills them) is written as the index
Parquet a job reads. Each measurement runs in a fresh process, so its peak RSS is its own:

- `plan`: read the index and build the job's chain plan (`ChainPlan.build`), partition by
  partition as a job's driver does (`tv3s index --partitions`, --partition-rows segments
  each): seconds, and peak RSS above the interpreter's RSS before planning;
- `first_dispatch`: from the start until the first chain is ready to hand to an actor
  (every partition planned once for the totals; the last one's chains go out first);
- the baseline, in the same run: the previous planner, which made every index row a
  Python dict (`plan_videos` + per-unit objects), at `--baseline-segments` (it needs about
  2 GB per million segments, so it cannot run at 10M).

The last line is one JSON object. The outputs' side of the control plane (commit, status,
query, compaction, resume at U committed units) is measured by benchmarks/outputs.py.
Usage: python benchmarks/scale.py --segments 10000000 [--baseline-segments 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from itertools import groupby
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tv3s.schemas.index import INDEX_SCHEMA
from tv3s.schemas.job import StateSpec

SEGMENTS_PER_VIDEO = 10
SEGMENTS_PER_SHARD = 16  # ~1 GB shards of one-minute 480p segments


def write_index(path: Path, segments: int, partitions: int = 0, chunk: int = 1_000_000) -> None:
    """A synthetic index of `segments` segments, never all in memory: one Parquet file, or with
    `partitions` a partitioned index written by the project's own writer (`tv3s index --partitions`)."""
    from tv3s.pipeline.ingest.partitions import PartitionedIndexWriter
    from tv3s.pipeline.storage import Store

    writer = PartitionedIndexWriter(str(path), Store(), partitions) if partitions else None
    with pq.ParquetWriter(path, INDEX_SCHEMA, compression="zstd") if not partitions else _nothing() as single:
        for start in range(0, segments, chunk):
            n = min(chunk, segments - start)
            i = np.arange(start, start + n)
            video, seg = i // SEGMENTS_PER_VIDEO, i % SEGMENTS_PER_VIDEO
            shard = i // SEGMENTS_PER_SHARD
            names = pa.array([f"drive-{v:09d}" for v in video.tolist()])
            members = pa.array([f"drive-{v:09d}/{s:06d}" for v, s in zip(video.tolist(), seg.tolist())])
            columns = {
                "video_id": names,
                "sample_type": pa.array(np.full(n, "segment")),
                "index": pa.array(seg),
                "shard": pa.array([f"s3://archive/dashcam/shard-{s:08d}.tar" for s in shard.tolist()]),
                "shard_version": pa.array([f"{s:032x}" for s in shard.tolist()]),  # an ETag per shard
                "shard_order": pa.array(shard, pa.int32()),
                "position": pa.array(i % SEGMENTS_PER_SHARD, pa.int32()),
                "key": members,
                "media_member": pc.binary_join_element_wise(members, ".mp4", ""),
                "media_offset": pa.array((i % SEGMENTS_PER_SHARD) * 60_000_000 + 1024),
                "media_size": pa.array(np.full(n, 60_000_000)),
                "meta_member": pc.binary_join_element_wise(members, ".json", ""),
                "meta_offset": pa.array((i % SEGMENTS_PER_SHARD) * 60_000_000 + 512),
                "meta_size": pa.array(np.full(n, 120)),
                "fps": pa.array(np.full(n, 30.0)),
                "start_frame": pa.array(seg * 1800),
                "frames": pa.array(np.full(n, 1800)),
                "camera": pa.array(np.full(n, "front")),
            }
            batch = pa.table(columns, schema=INDEX_SCHEMA)
            writer.add(batch) if writer else single.write_table(batch)
    if writer:
        writer.close()


@contextlib.contextmanager
def _nothing():
    yield None


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory now (VmRSS) or at its peak (VmHWM). Not getrusage's ru_maxrss: a
    child process keeps its parent's value across exec, so it would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(kind: str, index: Path) -> dict:
    """One measurement in this (fresh) process (the code imported before the first reading)."""
    from tv3s.jobs.plan import ChainPlan
    from tv3s.pipeline.ingest.partitions import index_partitions
    from tv3s.pipeline.storage import Store

    Store().filesystem("/")  # fsspec's local filesystem loaded too
    before = rss_mb()
    started = time.perf_counter()
    if kind == "partitioned":  # what a job's driver does: plan each partition once, hand out the last first
        chains, errors, plan = 0, [], None
        for part in index_partitions(str(index), Store()):
            plan = None  # one partition at a time, as the driver holds them
            plan, found = ChainPlan.build(part, StateSpec())
            chains, errors = chains + len(plan), errors + found
            del part
        planned = time.perf_counter()
        first = plan[0]
    elif kind == "columnar":
        plan, errors = ChainPlan.build(pq.read_table(index), StateSpec())
        planned = time.perf_counter()
        first = plan[0]
        chains = len(plan)
    else:
        table = pq.read_table(index)
        chains_list, errors = baseline_plan(table, StateSpec())
        planned = time.perf_counter()
        first, chains = chains_list[0], len(chains_list)
    ready = time.perf_counter()
    peak = rss_mb("VmHWM")
    assert first.units and not errors
    return {
        "plan_s": round(planned - started, 2),
        "first_dispatch_s": round(ready - started, 2),
        "plan_peak_rss_mb": round(peak - before),
        "chains": chains,
    }


def baseline_plan(table: pa.Table, state: StateSpec) -> tuple[list, list]:
    """The previous planner (kept here as the baseline): every row a dict, sorted and grouped in Python."""
    from tv3s.jobs.plan import Chain, Unit, unit_number

    order = table.sort_by([("video_id", "ascending"), ("index", "ascending"), ("shard_order", "ascending")])
    chains, errors = [], []
    for video_id, rows in groupby(order.to_pylist(), key=lambda r: r["video_id"]):
        rows = list(rows)
        main = Counter(r["sample_type"] for r in rows).most_common(1)[0][0]
        kept, expected, run, units = [], 0 if main == "segment" else rows[0]["index"], -1, []
        for r in rows:
            if kept and kept[-1]["index"] == r["index"]:
                continue
            kept.append(r)
            if r["index"] != expected or run < 0:
                run += 1
            expected = r["index"] + 1
            number = unit_number(main, r["index"], state.frames_per_unit)
            if units and units[-1].index == number:
                units[-1] = Unit(number, units[-1].rows + (r,), units[-1].run)
            else:
                units.append(Unit(number, (r,), run))
        chains.append(Chain(video_id, main, tuple(units), tuple(u.index for u in units)))
    chains.sort(key=lambda c: (-c.weight, c.video_id, c.units[0].index))
    return chains, errors


def measure(kind: str, index: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--index", str(index)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--baseline-segments", type=int, default=1_000_000)
    parser.add_argument("--partition-rows", type=int, default=500_000, help="segments per index partition")
    parser.add_argument("--child", choices=["columnar", "baseline", "partitioned"])
    parser.add_argument("--index", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.index)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small.parquet"
        write_index(small, args.baseline_segments)
        base, same = measure("baseline", small), measure("columnar", small)
        print(f"at {args.baseline_segments:,} segments: previous planner {base}, columnar {same}")
        print(
            f"  ratio previous/columnar: time {base['plan_s'] / max(same['plan_s'], 1e-9):.1f}x, "
            f"peak memory {base['plan_peak_rss_mb'] / max(same['plan_peak_rss_mb'], 1):.1f}x"
        )
        big = Path(tmp) / "index"
        write_index(big, args.segments, partitions=max(1, -(-args.segments // args.partition_rows)))
        result = measure("partitioned", big)
        print(
            json.dumps(
                {
                    "segments": args.segments,
                    **result,
                    "baseline_at": args.baseline_segments,
                    "baseline": base,
                    "columnar_at_baseline": same,
                }
            )
        )


if __name__ == "__main__":
    main()
