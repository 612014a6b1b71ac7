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

With --units U, the outputs' side of a job of U committed units (laid down by
benchmarks/outputs.py's writers, merged as a running job keeps them): `status_s`, `query_s`
(open + count(*)) before and after one compaction (`compact_s`), and `resume_plan_s` (a fully
committed job run again: its finished videos read, its index of U segments planned, every
chain skipped). With --s3-units, status and query S3 request counts at those sizes on the
loopback S3 server. benchmarks/outputs.py measures commits and more of the outputs' side.

The last line is one JSON object.
Usage: python benchmarks/scale.py --segments 10000000 --units 200000 --s3-units 1000,10000
       [--baseline-segments 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
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


def outputs_side(units: int, partition_rows: int, tmp: Path) -> dict:
    """The outputs' side of a job of `units` committed units, laid down by benchmarks/outputs.py's writers
    as a running job keeps them (files merged every 500 units): `status_s`, `query_s` (open + count(*))
    before and after one `tv3s compact` (`compact_s`), and `resume_plan_s`: what a driver does before
    its first dispatch when the job is run again fully committed (read the finished videos, plan its
    index of `units` segments partition by partition, skip every chain)."""
    import outputs as bench

    from tv3s.jobs.plan import ChainPlan
    from tv3s.jobs.runner import _Pending
    from tv3s.jobs.status import job_progress
    from tv3s.pipeline.ingest.partitions import partition_loaders
    from tv3s.pipeline.outputs.commit import Output
    from tv3s.pipeline.outputs.compact import compact
    from tv3s.pipeline.outputs.manifest import ManifestWriter
    from tv3s.pipeline.outputs.masks import encode_mask_png
    from tv3s.pipeline.outputs.query import connect, run_query
    from tv3s.pipeline.storage import Store

    index = tmp / "job-index"
    write_index(index, units, partitions=max(1, -(-units // partition_rows)))
    loaders = partition_loaders(str(index), Store())
    for load in loaders:  # the contents the job's plan gives its videos, so that they are finished
        plan = ChainPlan.build(load(), StateSpec())[0]
        ids = plan.video_ids(np.arange(plan.videos)).to_pylist()
        bench.PLANNED_CONTENTS.update(zip(ids, plan.content.to_pylist()))
    output = Output(str(tmp / "out"))
    bench.lay_down(output, 0, units, encode_mask_png(np.zeros((16, 16), np.uint8)), merged=True)
    bench.write_plan(output, units)
    out = {"units": units}
    out["status_s"], progress = timed(lambda: job_progress(output, "bench"))
    assert progress["units_done"] == units, progress
    out["query_before_compact_s"], _ = timed(lambda: run_query(connect(output), "SELECT count(*) FROM frames"))
    out["compact_s"], _ = timed(lambda: compact(output, grace_s=0))
    out["query_s"], _ = timed(lambda: run_query(connect(output), "SELECT count(*) FROM frames"))

    def resume() -> bool:
        finished = ManifestWriter(output, bench.RUN).finished_videos()
        plans = (ChainPlan.build(load(), StateSpec())[0] for load in loaders)
        return bool(_Pending(plans, units // SEGMENTS_PER_VIDEO, finished))

    out["resume_plan_s"], left = timed(resume)
    assert not left, "a fully committed job still had chains to hand out"
    return out


def s3_requests(units: int) -> dict:
    """S3 requests (counted by a proxy before the loopback S3 server) of status and query at `units`
    committed units, laid down as a running job keeps them and compacted once."""
    import outputs as bench

    from tv3s.pipeline.outputs.compact import compact
    from tv3s.pipeline.outputs.masks import encode_mask_png

    with bench.location(s3=True) as (output, requests):
        bench.lay_down(output, 0, units, encode_mask_png(np.zeros((16, 16), np.uint8)), merged=True)
        bench.write_plan(output, units)
        compact(output, grace_s=0)
        status = bench.timed(f"status at {units:,} units, S3", lambda: bench.job_progress(output, "bench"), requests)
        query = bench.timed(
            f"query at {units:,} units, S3",
            lambda: bench.run_query(bench.connect(output), "SELECT count(*) FROM frames"),
            requests,
        )
    return {"units": units, "status_requests": status["requests"], "query_requests": query["requests"]}


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return round(time.perf_counter() - start, 3), result


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
    parser.add_argument("--units", type=int, default=0, help="committed units of a job's output (0: none)")
    parser.add_argument("--s3-units", default="", help="comma-separated unit counts for S3 request counts")
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
        shutil.rmtree(big)
        side = outputs_side(args.units, args.partition_rows, Path(tmp)) if args.units else {}
        print(f"outputs at {args.units:,} units: {side}", flush=True)
        s3 = [s3_requests(int(u)) for u in args.s3_units.split(",") if u]
        print(
            json.dumps(
                {
                    "segments": args.segments,
                    **result,
                    **side,
                    "s3": s3,
                    "baseline_at": args.baseline_segments,
                    "baseline": base,
                    "columnar_at_baseline": same,
                }
            )
        )


if __name__ == "__main__":
    main()
