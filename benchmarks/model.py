"""Cost per output frame of stream mode, our clip mode and the official clip protocol.

Everything is measured in one run on this machine, against a baseline from the same run
(these machines are noisy: compare ratios, not absolute seconds):

* **official clip protocol** - for every frame t, the clip [t-9, t-6, t-3, t] (official
  table for t < 9) goes through the whole model: all its frames are encoded again.
* **our clip mode** - the same outputs, each frame encoded once and reused by every clip.
* **stream mode** - the Mamba state carried frame to frame: one encoder pass and one
  frame of Mamba tokens per output frame.
* **selective scan** - the inference scan (cache-sized blocks on CPU) vs the per-token
  loop of the reference (both float32, same inputs), at the shapes of one B1 decoder
  layer (stream: one frame; clip: 4 frames).

Usage: python benchmarks/model.py [--frames 12] [--size 480x640] [--presets tv3s-b0-vspw,tv3s-b1-vspw]
Weights are random: cost does not depend on them.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch

from tv3s.model import build_model, official_clip
from tv3s.model.ssm import selective_scan, selective_scan_reference

print = functools.partial(print, flush=True)  # noqa: A001 - partial results survive a timeout


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` runs (after one warm-up run)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def official_protocol(model, frames: np.ndarray) -> None:
    x = model.preprocess(frames)
    with torch.inference_mode():
        for t in range(len(frames)):
            model(x[list(official_clip(t))].unsqueeze(0))


def bench_modes(preset: str, frames: np.ndarray) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(preset)
    model.backend = "torch"
    n = len(frames)
    return {
        "official clip protocol": timed(lambda: official_protocol(model, frames)) / n,
        "our clip mode": timed(lambda: model.predict_clip(frames)) / n,
        "stream mode": timed(lambda: model.predict_stream(frames)) / n,
    }


def bench_scan(n: int, length: int, d: int = 512, s: int = 16) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(n, length, d, generator=g)
    delta = torch.randn(n, length, d, generator=g) - 3
    A = -torch.arange(1, s + 1, dtype=torch.float32).repeat(d, 1)
    B, C = torch.randn(n, length, s, generator=g), torch.randn(n, length, s, generator=g)
    h0 = torch.randn(n, d, s, generator=g)
    args = (u, delta, A, B, C, None, None, None, h0)
    fast = timed(lambda: selective_scan(*args, backend="torch"), repeat=3)
    loop = timed(lambda: selective_scan_reference(*args, dtype=torch.float32))
    return fast, loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", default="480x640")
    parser.add_argument("--presets", default="tv3s-b0-vspw,tv3s-b1-vspw")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    frames = np.random.default_rng(0).integers(0, 256, size=(args.frames, h, w, 3), dtype=np.uint8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.frames} frames of {h}x{w}")
    goals = {"our clip mode": 0.5, "stream mode": 0.3}
    for preset in args.presets.split(","):
        costs = bench_modes(preset, frames)
        base = costs["official clip protocol"]
        print(f"\n{preset}")
        print(f"  {'mode':<24}{'s/frame':>9}{'frames/s':>10}{'x official':>12}  goal")
        for mode, cost in costs.items():
            ratio = cost / base
            goal = goals.get(mode)
            verdict = "" if goal is None else f"<= {goal}  {'met' if ratio <= goal else 'NOT met'}"
            print(f"  {mode:<24}{cost:>9.3f}{1 / cost:>10.2f}{ratio:>12.3f}  {verdict}")
    print("\nselective scan, B1 decoder layer shapes (12 windows x 512 channels x 16 states)")
    print(f"  {'tokens/window':<24}{'blocked ms':>11}{'loop ms':>10}{'speed-up':>10}  goal")
    for label, length in (("400 (stream, 1 frame)", 400), ("1600 (clip, 4 frames)", 1600)):
        fast, loop = bench_scan(12, length)
        ratio = loop / fast
        print(
            f"  {label:<24}{fast * 1e3:>11.1f}{loop * 1e3:>10.1f}{ratio:>10.1f}  >= 20  {'met' if ratio >= 20 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
