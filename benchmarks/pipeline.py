"""End-to-end labeling throughput against model-only throughput, measured in one run.

Prints, for the same frames (synthetic driving videos stored as H.264 segment shards):

1. model only: `predict_stream` over frames already decoded in memory;
2. pipeline: what an actor does (read, decode in a prefetch thread, model, masks and
   statistics, Parquet commit with a resume point per segment), without Ray; ratio to 1
   (goal >= 0.9);
3. resume points: the pipeline with a resume point per segment against none (the cost
   of a state checkpoint per segment);
4. multi-video batching: the pipeline with `videos_per_batch` videos per forward pass
   against one at a time;
5. the same job through Ray (`JobRunner`, one actor), excluding Ray and actor start-up.

Each ratio compares runs made one right after the other, `--repeats` times (median printed
with every pair's value): the speed of these machines drifts within minutes.

Usage: python benchmarks/pipeline.py [--videos 4] [--frames 48] [--size 192x384] [--checkpoint PATH]
On a GPU (random weights: cost does not depend on them), B1 at the paper's 480p:
  python benchmarks/pipeline.py --device cuda --preset tv3s-b1-vspw --size 480x853 --precision bf16
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tv3s import DEMO_CHECKPOINT  # noqa: E402
from tv3s.jobs.actor import make_worker  # noqa: E402
from tv3s.jobs.runner import plan_job  # noqa: E402
from tv3s.pipeline.ingest.chunks import iter_video
from tv3s.pipeline.ingest.resize import ResizeRule  # noqa: E402
from tv3s.pipeline.storage import Store  # noqa: E402
from tv3s.pipeline.synthetic.archive import write_synthetic_archive  # noqa: E402
from tv3s.schemas.job import JobSpec  # noqa: E402


def spec_for(shards: list[str], out: str, model: dict, checkpoint_every: int = 1, **resources) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "bench",
            "inputs": {"shards": shards, "resize": "none"},
            "model": model,
            "output": out,
            "resources": {"chunk_frames": 12, "cpus_per_actor": torch.get_num_threads(), **resources},
            "state": {"checkpoint_every": checkpoint_every},
        }
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pipeline_seconds(spec: JobSpec, batched: bool = False, row_threads: int | None = None) -> tuple[float, int]:
    """Seconds and frames of labeling the spec's chains with one worker (Ray's actor without Ray);
    `row_threads` overrides how many threads build rows beside the model (0: between its steps)."""
    worker = make_worker(spec, torch.device(spec.model.device if spec.model.device != "auto" else "cpu"))
    if row_threads is not None:
        worker.options = dataclasses.replace(worker.options, row_threads=row_threads)
    chains, _ = plan_job(spec, Store())
    t0 = time.perf_counter()
    outcomes = worker.process_many(chains) if batched else [worker.process(c) for c in chains]
    return time.perf_counter() - t0, sum(o.frames for o in outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="192x384")
    parser.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    parser.add_argument("--preset", help="a preset with random weights instead of --checkpoint")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs behind each ratio")
    args = parser.parse_args()
    device = torch.device(args.device)
    model_spec = {"preset": args.preset, "random_weights": True} if args.preset else {"checkpoint": args.checkpoint}
    model_spec.update(device=args.device, precision=args.precision)
    height, width = (int(v) for v in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="tv3s-bench-"))
    store = Store()
    shards, _ = write_synthetic_archive(str(tmp), store, args.videos, args.frames, height, width)
    total = args.videos * args.frames
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(
        f"{args.videos} videos x {args.frames} frames of {width}x{height}, {where}, {args.precision}, "
        f"{args.preset + ' (random weights)' if args.preset else Path(args.checkpoint).name}",
        flush=True,
    )

    def fresh(name: str, checkpoint_every: int = 1, **resources) -> JobSpec:
        return spec_for(shards, str(tmp / name), model_spec, checkpoint_every, **resources)

    # model only, on frames decoded beforehand (same chunking as the pipeline)
    spec = fresh("warm")
    worker = make_worker(spec, device)
    chains, _ = plan_job(spec, store)
    decoded = [
        [c.frames for c in iter_video(chain.runs(chain.units), store, lambda e: None, ResizeRule(scale=None), 12)]
        for chain in chains
    ]
    model = worker.model

    def autocast():
        if worker.options.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=worker.options.autocast)

    def model_only() -> float:
        with autocast():
            synchronize(device)
            t0 = time.perf_counter()
            for chunks in decoded:
                state = None
                for frames in chunks:
                    _, state = model.predict_stream(frames, state)
            synchronize(device)
        return time.perf_counter() - t0

    runs = itertools.count()

    def pipeline(batched: bool = False, **settings) -> float:
        seconds, frames = pipeline_seconds(fresh(f"run{next(runs)}", **settings), batched)
        assert frames == total, (frames, total)
        return seconds

    with autocast():
        model.predict_stream(decoded[0][0][:2])  # warm-up
    # The machine's speed drifts by tens of percent within minutes: every figure is a ratio of
    # runs made one right after the other, repeated, and the median is printed with each pair.
    segments = total // 12
    model_s, vs_model, resume_ms, resume_x, vs_batch = [], [], [], [], []
    for _ in range(args.repeats):
        m, p = model_only(), pipeline()
        none, p2 = pipeline(checkpoint_every=10**6), pipeline()
        b = pipeline(batched=True, videos_per_batch=args.videos)
        model_s.append(m)
        vs_model.append(m / p)
        with_points = (p + p2) / 2  # on both sides of the run without them
        resume_ms.append((with_points - none) / segments * 1000)
        resume_x.append(with_points / none)
        vs_batch.append(p2 / b)

    def runs_of(values: list[float], fmt: str = ".2f") -> str:
        return f"[runs: {', '.join(format(v, fmt) for v in values)}]"

    print(f"model only:        {total / statistics.median(model_s):7.2f} frames/s", flush=True)
    print(
        f"pipeline:          {statistics.median(vs_model):.2f}x model only (goal >= 0.9) {runs_of(vs_model)}",
        flush=True,
    )
    print(
        f"resume points:     {statistics.median(resume_ms):+.1f} ms per segment of 12 frames "
        f"({statistics.median(resume_x):.3f}x the pipeline without them) {runs_of(resume_ms, '+.1f')}",
        flush=True,
    )
    print(
        f"batched x{args.videos}:        {statistics.median(vs_batch):.2f}x one video at a time {runs_of(vs_batch)}",
        flush=True,
    )

    # through Ray, one actor, against a model-only run just before it
    if not args.skip_ray:
        import ray

        from tv3s.jobs.runner import JobRunner

        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=torch.get_num_threads(), include_dashboard=False, log_to_driver=False)
        try:
            m = model_only()
            summary = JobRunner(fresh("ray", actors=1), progress=False).run()
        finally:
            ray.shutdown()
        print(
            f"Ray job (1 actor): {summary.frames / summary.labeling_seconds:7.2f} frames/s once the actor is up "
            f"= {m / summary.labeling_seconds:.2f}x model only (its first segment pays the actor's cold start); "
            f"{summary.seconds:.1f} s in all with Ray, planning and model loading",
            flush=True,
        )
    print(f"(scratch data in {tmp})")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
