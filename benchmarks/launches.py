"""Kernel launches of one stream step, counted on any machine: what sets a GPU's pace at small sizes.

A GPU step of B1 at 480p is short in arithmetic (~30 GFLOP a frame) and long in launches: each
tensor operation costs the host a few microseconds to launch, whatever its size. This counts,
for one stream step of 4 frames continuing a state, the tensor operations that launch work
(torch's dispatcher sees them; views, which launch nothing, are counted apart) and the Triton
kernel launches, per part of the model: encoder, decoder's Mamba stack, the rest of the head.

With ``--backend triton`` the Triton launches of the counted step are counted and skipped: the
interpreter would take hours on CPU at 480p, and no count depends on the numbers (the model's
Python is the same on a GPU, and branches on no tensor's value), so the state the step
continues from (made by an uncounted first step) holds no meaningful numbers either.

Usage: python benchmarks/launches.py [--preset tv3s-b1-vspw] [--size 480x853] [--videos 1]
       [--backend triton|torch]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

BACKEND = sys.argv[sys.argv.index("--backend") + 1] if "--backend" in sys.argv else "triton"
if BACKEND == "triton":
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is first imported

import numpy as np  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tv3s.model.loading import build_random_model  # noqa: E402


class Counter(TorchDispatchMode):
    """Counts the operations torch dispatches, under the model part that runs them."""

    def __init__(self) -> None:
        super().__init__()
        self.part = "other"
        self.launching: collections.Counter[str] = collections.Counter()
        self.views: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        (self.views if func.is_view else self.launching)[self.part] += 1
        return func(*args, **(kwargs or {}))


def attribute(model, counter: Counter) -> None:
    """Name the part running: the encoder, the Mamba stack, or (by default) the rest."""
    for part, module in (("encoder", model.backbone), ("mamba stack", model.decode_head.vs)):
        module.register_forward_pre_hook(lambda *_, part=part: setattr(counter, "part", part))
        module.register_forward_hook(lambda *_: setattr(counter, "part", "other"))


def count_triton(counter: Counter) -> collections.Counter[str]:
    """Replace the Triton kernels' launches by a count under the running part."""
    from tv3s.model import triton_scan

    launches: collections.Counter[str] = collections.Counter()
    for name in ("_selective_scan_kernel", "_causal_conv_kernel"):
        kernel = getattr(triton_scan, name)

        class Counted:
            def __getitem__(self, grid, kernel=kernel):
                launches[counter.part] += 1
                return lambda *args, **kwargs: None

        setattr(triton_scan, name, Counted())
    return launches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tv3s-b1-vspw")
    parser.add_argument("--size", default="480x853")
    parser.add_argument("--videos", type=int, default=1)
    parser.add_argument("--backend", default=BACKEND, choices=("triton", "torch"))
    args = parser.parse_args()
    height, width = map(int, args.size.split("x"))
    model = build_random_model(args.preset)
    model.backend = args.backend
    frames = np.random.default_rng(0).integers(0, 256, size=(4, height, width, 3), dtype=np.uint8)
    clips = [frames] * args.videos
    counter = Counter()
    launches = count_triton(counter) if args.backend == "triton" else collections.Counter()
    _, states = model.predict_stream_batch(clips, [None] * args.videos, on_device=True)  # caches built
    launches.clear()
    attribute(model, counter)
    with counter:
        model.predict_stream_batch(clips, states, on_device=True)
    print(f"one stream step: {args.preset}, {args.videos} video(s) x 4 frames of {args.size}, backend {args.backend}")
    print(f"  {'part':<14}{'launching ops':>14}{'triton':>8}{'views':>8}")
    for part in ("encoder", "mamba stack", "other"):
        print(f"  {part:<14}{counter.launching[part]:>14}{launches[part]:>8}{counter.views[part]:>8}")
    total = sum(counter.launching.values()) + sum(launches.values())
    print(f"  launches in all: {total}  (views: {sum(counter.views.values())})")


if __name__ == "__main__":
    main()
