"""Frame rows and commits beside the model (threads) against between its steps (inline), in one run.

What follows the model for every frame is host work: the label map's PNG and the frame's
statistics (15 and 10 ms a 480p frame of 124 classes on one core here), and a commit per
unit. An actor builds rows in a pool and commits in a thread of its own while the model
runs (tv3s/jobs/finishing.py); before, it did both between the model's steps. This prints
both ways on the same chains, alternating runs (the machine's speed drifts), as ratios:

  python benchmarks/finishing.py [--preset tv3s-b0-vspw] [--size 240x428] [--threads 2]
  python benchmarks/finishing.py --device cuda --preset tv3s-b1-vspw --size 480x853 --threads 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline as pipeline_bench  # noqa: E402

from tv3s.jobs.runner import plan_job  # noqa: E402
from tv3s.pipeline.outputs.manifest import FrameSource, frame_row  # noqa: E402
from tv3s.pipeline.outputs.masks import logits_to_labels  # noqa: E402


def row_inputs(worker, chains, store) -> tuple:
    """One chunk's host logits, label maps and a frame source: what frame rows are built from."""
    chain = chains[0]
    chunk = next(pipeline_bench.iter_video(chain.runs(chain.units), store, print, pipeline_bench.ResizeRule(None), 4))
    with torch.inference_mode():
        logits, _ = worker.model.predict_stream(chunk.frames, on_device=True)
    labels = logits_to_labels(logits, chunk.frames.shape[1:3])
    h, w = labels.shape[1:]
    source = FrameSource(chain.video_id, unit_index=0, frame_index=1, source_url="bench", width=w, height=h)
    return logits.cpu().numpy(), labels, source


def rows_per_second(run, inputs: tuple, threads: int, rows: int = 32) -> float:
    """Frame rows (statistics and PNG, no model) built per second by `threads` threads: whether
    the pool scales, i.e. whether the GIL serialises the row work."""
    host, labels, source = inputs

    def row(i: int) -> None:
        frame_row(run, host[i % len(host)], labels[i % len(labels)], source, labels[(i + 1) % len(labels)])

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        list(pool.map(row, range(rows)))
        return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tv3s-b0-vspw", help="random weights (cost does not depend on them)")
    parser.add_argument("--size", default="240x428")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2, help="row threads of the threaded runs")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="tv3s-finishing-"))
    store = pipeline_bench.Store()
    shards, _ = pipeline_bench.write_synthetic_archive(str(tmp), store, args.videos, args.frames, height, width)
    model = {"preset": args.preset, "random_weights": True, "device": args.device}
    runs = iter(range(10**6))

    def seconds(row_threads: int) -> float:
        spec = pipeline_bench.spec_for(shards, str(tmp / f"run{next(runs)}"), model)
        return pipeline_bench.pipeline_seconds(spec, row_threads=row_threads)[0]

    spec = pipeline_bench.spec_for(shards, str(tmp / "probe"), model)
    chains, _ = plan_job(spec, store)
    worker = pipeline_bench.make_worker(spec, torch.device(args.device))
    print(f"{args.preset} at {width}x{height}, {args.videos} videos x {args.frames} frames, {args.device}, "
          f"{torch.get_num_threads()} torch threads")  # fmt: skip
    inputs = row_inputs(worker, chains, store)
    one, many = (rows_per_second(worker.run, inputs, n) for n in (1, args.threads))
    print(f"frame rows alone: {1000 / one:.1f} ms a frame in one thread; {args.threads} threads build "
          f"{many / one:.2f}x as many a second ({many:.0f} frames/s)")  # fmt: skip
    seconds(0)  # warm-up
    ratios = []
    for _ in range(args.repeats):
        inline, threaded = seconds(0), seconds(args.threads)
        ratios.append(inline / threaded)
        print(f"  inline {inline:.2f} s, {args.threads} row threads {threaded:.2f} s", flush=True)
    print(f"rows and commits beside the model: {statistics.median(ratios):.2f}x inline "
          f"[runs: {', '.join(f'{r:.2f}' for r in ratios)}]")  # fmt: skip


if __name__ == "__main__":
    main()
