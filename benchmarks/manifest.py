"""What the manifest costs per frame, and how fast SQL over a big output is.

1. Per frame at 1080p with 124 classes (VSPW), from spatially smooth 1/4-resolution
   logits like a decode head's: the label map by the official rule (needed by any
   output, reported for scale), PNG encoding of the mask alone (the baseline), and the
   manifest path: PNG + statistics + the validated row + the unit committed exactly
   once to the Delta tables on local disk (frames, then the ledger row), amortised over a part of --frames
   frames. Goal: manifest / PNG <= 1.5.
2. Query time over --rows generated frame rows (default 1M) committed as --parts units
   to a local output's Delta table, then after `compact`: opening the output (loading the
   tables' snapshots, creating the DuckDB views) and a few typical queries. The rows are 16x16 frames
   with real mask PNGs: 1M 1080p masks would be ~100 GB, and no query here reads them.

These machines are noisy and shared: compare the ratios, run twice.
Usage: python benchmarks/manifest.py [--frames 8] [--rows 1000000] [--parts 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from statistics import median

import numpy as np
import pyarrow as pa
import torch

from tv3s.pipeline.outputs.commit import Output
from tv3s.pipeline.outputs.compact import compact
from tv3s.pipeline.outputs.manifest import FrameSource, ManifestWriter, RunInfo, VideoLabeler
from tv3s.pipeline.outputs.masks import encode_mask_png, logits_to_labels
from tv3s.pipeline.outputs.query import connect, run_query
from tv3s.pipeline.outputs.stats import frame_stats
from tv3s.schemas.classes import VSPW
from tv3s.schemas.manifest import FRAMES_SCHEMA, ResetReason, TemporalState

QUERIES = {
    "count": "SELECT count(*) FROM frames",
    "per-video means": "SELECT video_id, avg(mean_confidence), min(temporal_agreement) FROM frames "
    "GROUP BY 1 ORDER BY 2 LIMIT 10",
    "filter on stats + a class": "SELECT count(*) FROM frames WHERE low_confidence_fraction > 0.3 "
    "AND class_histogram[20] > 64",
    "100 least confident": "SELECT job_id, video_id, frame_index FROM frames ORDER BY mean_confidence LIMIT 100",
}


def smooth_logits(num_classes: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, num_classes, h // 16, w // 16, generator=g) * 4
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]


def per_frame(frames: int, height: int, width: int) -> None:
    run = RunInfo("bench", "bench:model", None, "{}", VSPW.names, VSPW.palette, "stream")
    h, w = -(-height // 4), -(-width // 4)
    base = smooth_logits(124, h, w, 0)
    logits = [(base + 0.3 * smooth_logits(124, h, w, i + 1)).contiguous() for i in range(frames)]
    sources = [
        FrameSource(
            "video",
            0,
            i,
            "s3://bucket/shard.tar",
            width,
            height,
            "video.mp4",
            i,
            temporal_state=TemporalState.reset if i == 0 else TemporalState.carried,
            state_reset_reason=ResetReason.video_start if i == 0 else None,
        )
        for i in range(frames)
    ]
    t_labels, t_png, t_stats, t_describe = [], [], [], []
    labels = []
    for x in logits:
        start = time.perf_counter()
        labels.append(logits_to_labels(x, (height, width)))
        t_labels.append(time.perf_counter() - start)
    previous = None
    for lab, x in zip(labels, logits, strict=True):
        start = time.perf_counter()
        encode_mask_png(lab)
        t_png.append(time.perf_counter() - start)
        start = time.perf_counter()
        frame_stats(x, lab, previous)
        t_stats.append(time.perf_counter() - start)
        previous = lab
    labeler = VideoLabeler(run)
    rows = []
    for x, lab, source in zip(logits, labels, sources, strict=True):
        start = time.perf_counter()
        rows.append(labeler.describe(x, lab, source))  # PNG + statistics + validated row
        labeler.remember(lab, source)
        t_describe.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        writer = ManifestWriter(Output(tmp), run)
        start = time.perf_counter()
        writer.commit_units("video", 0, 0, rows, units_expected=1)
        t_write = (time.perf_counter() - start) / frames
    labels_s, png, stats = median(t_labels), median(t_png), median(t_stats)
    manifest = median(t_describe) + t_write
    print(f"\n== per frame, {width}x{height}, 124 classes, part of {frames} frames (medians, ms) ==")
    print(f"  label map (official resize + argmax, needed anyway)  {labels_s * 1e3:8.1f}")
    print(f"  PNG encoding alone (baseline)                         {png * 1e3:8.1f}")
    print(f"  statistics alone                                      {stats * 1e3:8.1f}")
    print(
        f"  manifest: PNG + stats + row + Delta commit            {manifest * 1e3:8.1f}"
        f"   (commit share {t_write * 1e3:.1f})"
    )
    print(f"  manifest / PNG                                        {manifest / png:8.2f}   (goal <= 1.5)")
    print(f"  mask PNG {len(rows[0].mask_png) / 1024:.0f} KiB; torch threads {torch.get_num_threads()}")


def generated_part(video: int, rows: int, rng: np.random.Generator, masks: list[bytes]) -> pa.Table:
    """`rows` frame rows of one video, column by column (no pydantic: 1M rows must be quick)."""
    # like real frames: a handful of classes present, most of the 124 counts zero
    share = rng.gamma(0.5, size=(rows, 124)) * (rng.random((rows, 124)) < 8 / 124)
    share[:, 0] += 1e-3  # no empty frame
    hist = np.floor(share / share.sum(axis=1, keepdims=True) * 256).astype(np.int32)
    hist[:, 0] += 256 - hist.sum(axis=1)
    confidence = rng.beta(5, 2, rows).astype(np.float32)
    columns = {
        "job_id": pa.array(["bench"] * rows),
        "video_id": pa.array([f"video-{video:05d}"] * rows),
        "unit_index": pa.array(np.arange(rows) // 100, pa.int32()),
        "frame_index": pa.array(np.arange(rows), pa.int64()),
        "timestamp_s": pa.array(np.arange(rows) / 30.0),
        "source_url": pa.array([f"s3://bucket/shard-{video:05d}.tar"] * rows),
        "source_member": pa.array([f"video-{video:05d}.mp4"] * rows),
        "source_frame_index": pa.array(np.arange(rows), pa.int64()),
        "width": pa.array(np.full(rows, 16), pa.int32()),
        "height": pa.array(np.full(rows, 16), pa.int32()),
        "mask_png": pa.array([masks[i % len(masks)] for i in range(rows)], pa.binary()),
        "class_histogram": pa.ListArray.from_arrays(
            pa.array(np.arange(rows + 1) * 124, pa.int32()), pa.array(hist.ravel())
        ).cast(FRAMES_SCHEMA.field("class_histogram").type),
        "mean_confidence": pa.array(confidence),
        "low_confidence_fraction": pa.array((1 - confidence) * rng.random(rows).astype(np.float32)),
        "mean_entropy": pa.array(rng.random(rows).astype(np.float32) * 3),
        "temporal_agreement": pa.array(rng.beta(20, 1, rows).astype(np.float32)),
        "temporal_state": pa.array(["carried"] * rows),
        "state_reset_reason": pa.nulls(rows, pa.string()),
        "warmup_frames": pa.array(np.zeros(rows), pa.int32()),
        "frame_stride": pa.array(np.ones(rows), pa.int32()),
        "model_id": pa.array(["bench:model"] * rows),
        "checkpoint_sha256": pa.nulls(rows, pa.string()),
        "inference_mode": pa.array(["stream"] * rows),
        "precision": pa.array(["fp32"] * rows),
        "code_version": pa.array(["bench"] * rows),
    }
    return pa.Table.from_pydict(columns, schema=FRAMES_SCHEMA)


def query_times(total_rows: int, parts: int) -> None:
    rng = np.random.default_rng(0)
    masks = [encode_mask_png(rng.integers(0, 124, (16, 16)).astype(np.uint8)) for _ in range(16)]
    per_part = total_rows // parts
    with tempfile.TemporaryDirectory() as tmp:
        output = Output(tmp)
        start = time.perf_counter()
        for video in range(parts):
            table = generated_part(video, per_part, rng, masks)
            output.append_once("frames", table, f"bench/video-{video:05d}/s000000-000099")
        print(f"\n== SQL over {per_part * parts:,} frame rows ==")
        print(f"  generated and committed {parts} parts in {time.perf_counter() - start:.1f} s")
        report_queries(output, f"{parts} parts")
        start = time.perf_counter()
        report = compact(output, grace_s=0)
        out_mb = sum(t.bytes_out for t in report.tables) / 2**20
        print(
            f"  compact: {report.files_in} parts -> {report.files_out} files "
            f"({out_mb:.0f} MB) in {time.perf_counter() - start:.1f} s"
        )
        report_queries(output, f"{report.files_out} compacted files")


def report_queries(output: Output, label: str) -> None:
    start = time.perf_counter()
    con = connect(output)
    opened = time.perf_counter() - start
    print(f"  [{label}] open the output (Delta snapshots + views): {opened * 1e3:.0f} ms")
    for name, sql in QUERIES.items():
        run_query(con, sql)  # warm: footers, OS cache
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run_query(con, sql)
            times.append(time.perf_counter() - start)
        print(f"  [{label}] {name:28s} {min(times) * 1e3:8.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=8, help="frames per part in the per-frame benchmark")
    parser.add_argument("--size", default="1080x1920", help="HxW of the source frames (default 1080x1920)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="frame rows for the query benchmark")
    parser.add_argument("--parts", type=int, default=100, help="committed parts holding them")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    per_frame(args.frames, height, width)
    query_times(args.rows, args.parts)


if __name__ == "__main__":
    main()
