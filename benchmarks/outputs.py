"""The outputs' side of the control plane at U committed units: commit, resume, status, query, compaction.

For each U in --units, an output (local disk, or the loopback S3 server with --s3) holds a
job's U committed units, 10 per video, as a real job leaves them before compaction: one
small file per unit in `frames` and in the `units` ledger, and one application
transaction per unit in each table's log. The first --real-units units are committed by
the project's own writer (`ManifestWriter.commit_units`: the per-unit cost, and its S3
requests); the rest are laid down in bulk with the same files, transactions and log checkpoints
(writing 100k units one by one would take hours and measure nothing new). Then, timed:

- `commit_unmerged`: one more unit through `ManifestWriter.commit_units` at this size, with one
  file per unit in each table (the cost of an append grows with the table's files);
- `status` over a ledger never merged (one file per unit), then every table's small files merged
  as a running job does every 500 units (`merge_small_files`), and after it:
- `commit`: one more unit, as a running job commits it;
- `resume read`: `finished_videos` + `committed_units` of one video (what a re-run reads);
- `status`: `job_progress` (one aggregate over the ledger);
- `query`: `connect` + `SELECT count(*) FROM frames`;
- `compact`: Delta optimize + checkpoint + vacuum of every table; then status and query again.

With --s3 each figure also gives the S3 requests it made (counted by a proxy in front of
the server). Machines here are shared and noisy: compare ratios within one run.
Usage: python benchmarks/outputs.py --units 1000,10000,100000 [--s3] [--real-units 200]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the S3 server's request counter

from tv3s.jobs.runner import job_paths  # noqa: E402
from tv3s.jobs.status import job_progress  # noqa: E402
from tv3s.pipeline.outputs.commit import Output  # noqa: E402
from tv3s.pipeline.outputs.compact import compact, merge_small_files  # noqa: E402
from tv3s.pipeline.outputs.manifest import (  # noqa: E402
    SUMMARY_UNIT,
    ManifestWriter,
    RunInfo,
    UnitKey,
    VideoPartial,
    encode_parquet,
    safe_key,
    unit_name,
)
from tv3s.pipeline.outputs.masks import encode_mask_png  # noqa: E402
from tv3s.pipeline.outputs.query import connect, run_query  # noqa: E402
from tv3s.schemas.classes import generic_classes  # noqa: E402
from tv3s.schemas.manifest import FRAMES_SCHEMA, UNITS_SCHEMA, FrameRow  # noqa: E402

UNITS_PER_VIDEO = 10
FRAMES_PER_UNIT = 4
BULK = 5000  # units per bulk commit
CLASSES = generic_classes(8)
RUN = RunInfo("bench", "bench:model", None, "{}", CLASSES.names, CLASSES.palette, "stream")


# Content digests a caller's index gives the videos (benchmarks/scale.py sets them from its plan, so that a
# resume over its index finds these units' videos finished); any other video gets one of its own.
PLANNED_CONTENTS: dict[str, str] = {}


def video_id(u: int) -> str:
    return f"drive-{u // UNITS_PER_VIDEO:09d}"  # as benchmarks/scale.py's index names them


def content(u: int) -> str:
    """The content digest of unit u's video, as a job's plan gives it (see `ManifestWriter.video_scope`)."""
    vid = video_id(u)
    return PLANNED_CONTENTS.get(vid) or hashlib.blake2b(vid.encode(), digest_size=8).hexdigest()


def scope(u: int) -> str:
    return f"{safe_key(video_id(u))}.{content(u)}"


def unit_rows(u: int, mask: bytes) -> pa.Table:
    """The frames of unit u (4 rows of a 16x16 frame, statistics included)."""
    n = FRAMES_PER_UNIT
    first = (u % UNITS_PER_VIDEO) * n
    hist = [[256] + [0] * 7] * n
    columns = {f.name: pa.nulls(n, f.type) for f in FRAMES_SCHEMA}
    columns |= {
        "job_id": pa.array(["bench"] * n),
        "video_id": pa.array([video_id(u)] * n),
        "unit_index": pa.array([u % UNITS_PER_VIDEO] * n, pa.int32()),
        "frame_index": pa.array(range(first, first + n), pa.int64()),
        "source_url": pa.array([f"s3://archive/{video_id(u)}.tar"] * n),
        "source_frame_index": pa.array(range(n), pa.int64()),
        "width": pa.array([16] * n, pa.int32()),
        "height": pa.array([16] * n, pa.int32()),
        "mask_png": pa.array([mask] * n, pa.binary()),
        "class_histogram": pa.array(hist, FRAMES_SCHEMA.field("class_histogram").type),
        "mean_confidence": pa.array([0.9] * n, pa.float32()),
        "low_confidence_fraction": pa.array([0.1] * n, pa.float32()),
        "mean_entropy": pa.array([0.3] * n, pa.float32()),
        "temporal_state": pa.array(["carried"] * n),
        "warmup_frames": pa.array([0] * n, pa.int32()),
        "frame_stride": pa.array([1] * n, pa.int32()),
    }
    for name in ("model_id", "inference_mode", "precision", "code_version"):
        columns[name] = pa.array([RUN.provenance()[name]] * n)
    return pa.Table.from_pydict(columns, schema=FRAMES_SCHEMA)


def ledger_row(u: int, frames: int) -> pa.Table:
    partial = VideoPartial(
        (u % 10, u % 10),
        frames,
        0,
        frames - 1,
        16,
        16,
        "s3://archive/x.tar",
        (256 * frames,) + (0,) * 7,
        0.9 * frames,
        0.1 * frames,
        0.3 * frames,
        0.0,
        0,
        None,
        0,
        0,
        0,
    )
    row = {"job_id": "bench", "video_id": video_id(u), "scope": scope(u), "name": unit_name(u % 10, u % 10)}
    row |= {"kind": "units", "unit_first": u % 10, "unit_last": u % 10, "frames": frames, "error_rows": 0}
    row |= {"partial": json.dumps(partial.to_json()), "resume_point": None, "committed_at": "", "code_version": "x"}
    return pa.Table.from_pylist([row], schema=UNITS_SCHEMA)


def bulk_commit(
    output: Output, table: str, schema: pa.Schema, parts: list[tuple[str, pa.Table]], merged: bool = False
) -> None:
    """One Delta commit adding one file per unit (with `merged`, one file for all: as a running job's
    merges leave them), with each unit's application transaction."""
    from deltalake import CommitProperties, DeltaTable, Transaction
    from deltalake.transaction import AddAction

    if output.table(table) is None:
        DeltaTable.create(output.table_uri(table), schema, name=table, storage_options=output.delta_options())
    actions = []
    for _, data in [("", pa.concat_tables(t for _, t in parts))] if merged else parts:
        rel = f"{table}/part-{uuid.uuid4().hex}.parquet"
        blob = encode_parquet(data)
        output.fs.pipe_file(output.full(rel), blob)
        stats = json.dumps(_stats(data))
        actions.append(AddAction(rel.split("/", 1)[1], len(blob), {}, int(time.time() * 1000), True, stats))
    props = CommitProperties(app_transactions=[Transaction(app_id, 1) for app_id, _ in parts])
    dt = output.table(table)
    dt.create_write_transaction(actions, "append", schema, commit_properties=props)
    # One bulk commit stands for BULK unit commits, after which delta-rs would have checkpointed
    # (every 100 commits): without this the log would be replayed from its start at every load.
    dt.update_incremental()
    dt.create_checkpoint()


def _stats(data: pa.Table) -> dict:
    """Delta file statistics as delta-rs writes them (row count, min/max of the string and integer
    columns), so that readers skip files exactly as they do over a real job's files."""
    keep = [f.name for f in data.schema if pa.types.is_string(f.type) or pa.types.is_integer(f.type)]
    lo = {c: pc.min(data[c]).as_py() for c in keep}
    hi = {c: pc.max(data[c]).as_py() for c in keep}
    nulls = {c: data[c].null_count for c in keep}
    return {
        "numRecords": data.num_rows,
        "minValues": {k: v for k, v in lo.items() if v is not None},
        "maxValues": {k: v for k, v in hi.items() if v is not None},
        "nullCount": nulls,
    }


def lay_down(output: Output, start: int, stop: int, mask: bytes, merged: bool = False) -> None:
    for lo in range(start, stop, BULK):
        units = range(lo, min(stop, lo + BULK))
        keys = [UnitKey("bench", scope(u), unit_name(u % 10, u % 10)).app_id for u in units]
        frames = [(k, unit_rows(u, mask)) for k, u in zip(keys, units)]
        bulk_commit(output, "frames", FRAMES_SCHEMA, frames, merged)
        ledger = [(k, ledger_row(u, FRAMES_PER_UNIT)) for k, u in zip(keys, units)]
        ends = [u for u in units if u % UNITS_PER_VIDEO == UNITS_PER_VIDEO - 1]  # a video's last unit: its summary
        ledger += [(UnitKey("bench", scope(u), SUMMARY_UNIT).app_id, summary_row(u)) for u in ends]
        bulk_commit(output, "units", UNITS_SCHEMA, ledger, merged)


def summary_row(u: int) -> pa.Table:
    """The ledger row that says unit u's video is finished (its summary row is in `videos`)."""
    row = {"job_id": "bench", "video_id": video_id(u), "scope": scope(u), "name": SUMMARY_UNIT, "kind": "summary"}
    row |= {"frames": 0, "error_rows": 0, "committed_at": "", "code_version": "x"}
    return pa.Table.from_pylist([row], schema=UNITS_SCHEMA)


def write_plan(output: Output, units: int) -> None:
    """The job's plan as `tv3s status` reads it: plan.json and one chain table."""
    videos = -(-units // UNITS_PER_VIDEO)
    paths = job_paths("bench")
    output.fs.makedirs(output.full(paths["chains"]), exist_ok=True)
    output.fs.pipe_file(output.full(paths["plan"]), json.dumps({"name": "bench"}).encode())
    first = [v * UNITS_PER_VIDEO for v in range(videos)]
    chains = pa.table(
        {
            "video_id": [video_id(u) for u in first],
            "video_units": [UNITS_PER_VIDEO] * videos,
            "content": [content(u) for u in first],
        }
    )
    output.fs.pipe_file(output.full(f"{paths['chains']}/part-00000.parquet"), encode_parquet(chains))


class Counter:
    """S3 requests seen by the proxy (None on local disk)."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy

    def __call__(self) -> int | None:
        return None if self.proxy is None else len(self.proxy.log)


def timed(label: str, fn: Callable[[], object], requests: Counter, repeat: int = 1) -> dict:
    before = requests()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    seconds = (time.perf_counter() - start) / repeat
    made = None if before is None else (requests() - before) / repeat
    shown = "" if made is None else f"   {made:8.0f} requests"
    print(f"  {label:34s} {seconds:9.3f} s{shown}", flush=True)
    return {"seconds": seconds, "requests": made}


def measure(output: Output, units: int, real: int, requests: Counter, merged: bool = False) -> dict:
    mask = encode_mask_png(np.zeros((16, 16), np.uint8))
    writer = ManifestWriter(output, RUN)
    out: dict = {"units": units}
    real = min(real, units)
    start = time.perf_counter()
    before = requests()
    for u in range(real):
        writer.commit_units(video_id(u), u % 10, u % 10, _frame_rows(u, mask), content=content(u))
    if real:
        made = None if before is None else (requests() - before) / real
        out["commit_real"] = {"seconds": (time.perf_counter() - start) / real, "requests": made}
        print(f"  per unit, first {real} units (writer)   {out['commit_real']['seconds']:9.3f} s", flush=True)
    start = time.perf_counter()
    lay_down(output, real, units, mask, merged)
    write_plan(output, units)
    print(f"  laid down {units - real} more units in {time.perf_counter() - start:.1f} s", flush=True)
    fresh = iter(range(units + UNITS_PER_VIDEO * 1000, units + UNITS_PER_VIDEO * 2000, UNITS_PER_VIDEO))

    def commit_one() -> None:  # a unit of a video of its own
        extra = next(fresh)
        writer.commit_units(video_id(extra), 0, 0, _frame_rows(extra, mask), content=content(extra))

    if not merged:
        out["commit_unmerged"] = timed("commit a unit, files never merged", commit_one, requests, repeat=5)
        progress = lambda: job_progress(output, "bench")  # noqa: E731
        out["status_unmerged"] = timed("status, ledger never merged", progress, requests)
    out["merge"] = timed("merge small files (a job: every 500)", lambda: merge_small_files(output), requests)
    out["commit"] = timed("commit a unit, files merged", commit_one, requests, repeat=5)
    out["resume"] = timed(
        "resume read", lambda: (writer.finished_videos(), writer.committed_units(video_id(0), content(0))), requests
    )
    out["status"] = timed("status", lambda: job_progress(output, "bench"), requests)
    counted = job_progress(output, "bench")["units_done"]
    if counted != units:  # the figures are of a status that counts right, or of nothing
        raise SystemExit(f"status counted {counted} units done of the plan's {units}")
    out["query"] = timed(
        "query open + count(*)", lambda: run_query(connect(output), "SELECT count(*) FROM frames"), requests
    )
    out["compact"] = timed("compact", lambda: compact(output, grace_s=0), requests)
    out["status_compacted"] = timed("status after compact", lambda: job_progress(output, "bench"), requests)
    out["query_compacted"] = timed(
        "query after compact", lambda: run_query(connect(output), "SELECT count(*) FROM frames"), requests
    )
    return out


def _frame_rows(u: int, mask: bytes) -> list[FrameRow]:
    return [FrameRow(**r) for r in unit_rows(u, mask).to_pylist()]


@contextlib.contextmanager
def location(s3: bool) -> Iterator[tuple[Output, Counter]]:
    if not s3:
        with tempfile.TemporaryDirectory() as tmp:
            yield Output(tmp), Counter(None)
        return
    from tests.support.faultproxy import fault_proxy
    from tv3s.local_s3 import s3_server

    with s3_server() as server, fault_proxy(server.endpoint_url) as proxy:
        bucket = server.make_bucket("bench-outputs")
        opts = {**server.storage_options, "client_kwargs": {"endpoint_url": proxy.url}}
        yield Output(f"{bucket}/{uuid.uuid4().hex}", opts), Counter(proxy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", default="1000,10000", help="comma-separated unit counts")
    parser.add_argument("--real-units", type=int, default=200, help="units committed one by one by the writer")
    parser.add_argument("--s3", action="store_true", help="on the loopback S3 server, counting requests")
    parser.add_argument(
        "--merged",
        action="store_true",
        help="lay units down as a running job's merges leave them (a file per 5,000 units): reaches 1M units in "
        "minutes, for the costs that grow with the units' transactions rather than with files",
    )
    args = parser.parse_args()
    results = []
    for units in (int(u) for u in args.units.split(",")):
        print(f"\n== {units:,} committed units ({'S3' if args.s3 else 'local disk'}) ==", flush=True)
        with location(args.s3) as (output, requests):
            results.append(measure(output, units, args.real_units, requests, args.merged))
    print(json.dumps({"s3": args.s3, "results": results}))


if __name__ == "__main__":
    main()
