"""Stream inference on one GPU, in one run: the model, the scan kernels, the actor's pipeline.

Every figure is printed with a ratio against a baseline measured in the same run:

1. model only: ``predict_stream_batch`` frames/s at 480x853 (B1-VSPW, random weights: cost
   does not depend on them), fp32 and bf16 autocast, ``videos_per_batch`` 1, 4, 8, 16, the
   default backend (Triton on a GPU); baseline fp32 with one video. The pure-PyTorch backend
   at one video is printed against the same baseline.
2. scan: the Triton scan vs the PyTorch scan vs a per-token loop, and the Triton conv vs the
   PyTorch conv, at one B1 decoder layer's shapes (18 windows x 512 channels x 16 states at
   480x853; 400 tokens a frame, 1600 for the 4 frames of one stream step), time per call;
   on a GPU also the scan with each of triton_scan.SCAN_CANDIDATES (channels per program, tokens
   a step, warps) against its untuned default.
3. pipeline: what an actor does without Ray (read, decode in a prefetch thread, model, label
   maps, statistics, PNG, commit with a resume point per segment) against the model alone on
   the same frames (benchmarks/pipeline.py's harness); and read + decode alone, which says
   whether decode (not the model) caps the pipeline.

Section 1 also prints each row with ``cuda_graphs`` on (steps replayed from CUDA graphs), and
the last precision with the convolutions channels-last.
4. compile: ``torch.compile(mode="reduce-overhead")`` of a stream step (bf16, 1 and 8 videos)
   against eager steps and against section 1's CUDA graphs, each run checked against eager
   logits first; its time to compile is printed too.

``--parity`` instead checks the triton backend against the golden fixtures ($TV3S_FIXTURES,
default ../shared/fixtures): fp32 within 1e-4 + 1e-4·|x|, a stream split through state bytes
within 1e-5 of one pass, steps replayed from CUDA graphs within 1e-5 of eager ones, bf16
autocast argmax agreeing with fp32 on >= 99% of pixels; exit 1 if any fails. ``--smoke`` runs everything on tiny shapes (on CPU: the pure path), to keep
this script working where there is no GPU.

Usage (about 5 minutes on one H200, warm-up included; benchmarks/device/ runs it through the
device tool, whose machine lacks some of tv3s's packages):
  python benchmarks/gpu.py            # the figures (--sections model,scan,pipeline,compile)
  python benchmarks/gpu.py --parity   # the checks (--fixtures NAME,...)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tv3s.model import PRESETS, StreamState, build_model, load_checkpoint  # noqa: E402
from tv3s.model.loading import build_random_model  # noqa: E402
from tv3s.model.ssm import _triton_refusal, causal_conv1d, selective_scan, selective_scan_reference  # noqa: E402

print = functools.partial(print, flush=True)  # noqa: A001 - partial results survive a timeout

FIXTURES = Path(os.environ.get("TV3S_FIXTURES") or Path(__file__).resolve().parents[2] / "shared" / "fixtures")
FIXTURE_NAMES = ("tv3s-parity-small", "tv3s-parity-city-small", "tv3s-parity-swin-small")
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16}
# --smoke's model: the demo preset's MiT-B0 with a head of width 16, 2 Mamba blocks over 4x4 windows.
TINY = dataclasses.replace(
    PRESETS["tv3s-demo"],
    head=dataclasses.replace(PRESETS["tv3s-demo"].head, embed_dim=16, window_h=4, window_w=4, shift_size=2, n_mambas=2),
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], object], device: torch.device, repeat: int = 5) -> float:
    """Best wall time of `repeat` calls after one warm-up call (which also compiles kernels)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def autocast(device: torch.device, precision: str):
    dtype = AUTOCAST[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def stream_fps(model, frames: np.ndarray, videos: int, precision: str, steps: int) -> float:
    """Frames/s of `steps` stream steps of `videos` videos, each step carrying the last one's states
    (after two warm-up steps: the first compiles kernels, the second captures a CUDA graph)."""
    device = model.device
    clips = [frames] * videos
    with autocast(device, precision):
        states = [None] * videos
        for _ in range(2):
            _, states = model.predict_stream_batch(clips, states, on_device=True)
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            _, states = model.predict_stream_batch(clips, states, on_device=True)
        sync(device)
    return steps * videos * len(frames) / (time.perf_counter() - start)


def bench_model(model, size: tuple[int, int], batches: list[int], precisions: list[str], frames_total: int) -> None:
    frames = np.random.default_rng(0).integers(0, 256, size=(4, *size, 3), dtype=np.uint8)
    graphs = model.device.type == "cuda"
    print(f"\n1. model only, stream, {size[0]}x{size[1]}, 4 frames a step, backend {model.backend}")
    print(f"  {'precision':<10}{'videos':>7}{'frames/s':>10}{'x fp32 x1':>11}" + ("  CUDA graphs  x eager" * graphs))
    base, measured = None, {}
    for precision in precisions:
        for videos in batches:
            steps = max(2, frames_total // (4 * videos))
            fps = measured[precision, videos] = stream_fps(model, frames, videos, precision, steps)
            base = base or fps
            line = f"  {precision:<10}{videos:>7}{fps:>10.1f}{fps / base:>11.2f}"
            if graphs:
                model.cuda_graphs = True
                try:
                    graphed = stream_fps(model, frames, videos, precision, steps)
                finally:
                    model.cuda_graphs = False
                line += f"{graphed:>13.1f}{graphed / fps:>9.2f}"
            print(line)
    backend = model.backend
    model.backend = "torch"
    try:
        for precision in precisions:
            fps = stream_fps(model, frames, 1, precision, max(2, frames_total // 4))
            print(f"  {precision:<10}{1:>7}{fps:>10.1f}{fps / base:>11.2f}  (backend torch)")
    finally:
        model.backend = backend
    precision = precisions[-1]
    for videos in (batches[0], batches[-1]):
        fps = channels_last_fps(model, frames, videos, precision, max(2, frames_total // (4 * videos)))
        ratio = fps / measured[precision, videos]
        print(f"  {precision:<10}{videos:>7}{fps:>10.1f}{fps / base:>11.2f}  (channels-last convs: {ratio:.2f}x)")


def channels_last_fps(model, frames: np.ndarray, videos: int, precision: str, steps: int) -> float:
    """`stream_fps` with the convolutions' weights channels-last (NHWC), which the tensor cores
    prefer: the encoder's patch embeddings and the head's 1x1 convs. The tokens that follow are
    [N, HW, C], so an NHWC conv output also saves the transpose into them."""
    model.to(memory_format=torch.channels_last)
    try:
        return stream_fps(model, frames, videos, precision, steps)
    finally:
        model.to(memory_format=torch.contiguous_format)


def scan_operands(n: int, length: int, d: int, s: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = {
        "u": torch.randn(n, length, d, generator=g),
        "delta": torch.randn(n, length, d, generator=g) - 3,
        "A": -torch.arange(1, s + 1, dtype=torch.float32).repeat(d, 1),
        "B": torch.randn(n, length, s, generator=g),
        "C": torch.randn(n, length, s, generator=g),
        "D": torch.randn(d, generator=g),
        "z": torch.randn(n, length, d, generator=g),
        "delta_bias": torch.randn(d, generator=g),
        "initial_state": torch.randn(n, d, s, generator=g),
    }
    return {k: v.to(device) for k, v in x.items()}


def bench_scan(device: torch.device, n: int, d: int, s: int, lengths: list[int]) -> None:
    triton_ok = _triton_refusal(torch.empty(0, device=device)) is None
    print(f"\n2. scan and conv per call, {n} windows x {d} channels x {s} states (ms; x = times the Triton time)")
    if not triton_ok:
        print("  (Triton cannot run here: its columns are the PyTorch ones, ratios 1)")
    print(f"  {'tokens':<8}{'triton':>9}{'torch':>9}{'x':>7}{'loop':>10}{'x':>8}{'conv tri':>10}{'conv pt':>9}{'x':>7}")
    fast = "triton" if triton_ok else "torch"
    with torch.inference_mode():
        for length in lengths:
            x = scan_operands(n, length, d, s, device)
            tri = best_seconds(lambda x=x: selective_scan(**x, backend=fast), device)
            pt = best_seconds(lambda x=x: selective_scan(**x, backend="torch"), device)
            loop = best_seconds(lambda x=x: selective_scan_reference(**x, dtype=torch.float32), device, repeat=1)
            conv = (x["u"], torch.randn(d, 1, 4, device=device), x["D"], torch.randn(n, 3, d, device=device))
            ctri = best_seconds(lambda conv=conv: causal_conv1d(*conv, backend=fast), device)
            cpt = best_seconds(lambda conv=conv: causal_conv1d(*conv, backend="torch"), device)
            print(
                f"  {length:<8}{tri * 1e3:>9.3f}{pt * 1e3:>9.3f}{pt / tri:>7.1f}{loop * 1e3:>10.1f}{loop / tri:>8.0f}"
                f"{ctri * 1e3:>10.3f}{cpt * 1e3:>9.3f}{cpt / ctri:>7.1f}"
            )
            if triton_ok and device.type == "cuda":
                print("  " + block_sweep(x, device, tri))


def block_sweep(x: dict[str, torch.Tensor], device: torch.device, default: float) -> str:
    """The Triton scan's time for each of triton_scan.SCAN_CANDIDATES (channels per program,
    tokens a step, warps), against the untuned default's; each candidate's output is checked
    against the default's first (a chunked step sums in another order: within 1e-4)."""
    from tv3s.model import triton_scan

    expected, _ = triton_scan.selective_scan(**x)
    times = []
    for block, chunk, warps in triton_scan.SCAN_CANDIDATES:
        config = {"block_d": block, "chunk": chunk, "num_warps": warps}
        y, _ = triton_scan.selective_scan(**x, **config)
        if not torch.allclose(y, expected, atol=1e-4, rtol=1e-4):
            times.append(f"{block}/{chunk}/{warps}: WRONG by {float((y - expected).abs().max()):.1e}")
            continue
        seconds = best_seconds(lambda config=config: triton_scan.selective_scan(**x, **config), device)
        times.append(f"{block}/{chunk}/{warps}: {seconds * 1e3:.3f} ms ({default / seconds:.2f}x)")
    return "scan with channels/tokens a step/warps " + ", ".join(times)


def bench_pipeline(
    preset: str, device: torch.device, precision: str, size: tuple[int, int], videos: int, frames: int, repeat: int = 2
) -> None:
    """The actor's pipeline (ChainWorker without Ray) against the model alone on the same decoded frames."""
    import pipeline as pipeline_bench  # PyAV and Delta Lake: only this section needs them (benchmarks/device)

    tmp = Path(tempfile.mkdtemp(prefix="tv3s-gpu-bench-"))
    store = pipeline_bench.Store()
    shards, _ = pipeline_bench.write_synthetic_archive(str(tmp), store, videos, frames, *size)
    model_spec = {"preset": preset, "random_weights": True, "device": device.type, "precision": precision}
    runs = iter(range(10**6))

    def spec(**resources):
        return pipeline_bench.spec_for(shards, str(tmp / f"run{next(runs)}"), model_spec, **resources)

    worker = pipeline_bench.make_worker(spec(), device)
    chains, _ = pipeline_bench.plan_job(spec(), store)
    rule = pipeline_bench.ResizeRule(scale=None)
    start = time.perf_counter()
    decoded = [
        [c.frames for c in pipeline_bench.iter_video(ch.runs(ch.units), store, print, rule, 12)] for ch in chains
    ]
    decode_s = time.perf_counter() - start  # one pass, cold: whether decode could cap the pipeline

    def model_only() -> None:
        with autocast(device, precision if device.type == "cuda" else "fp32"):
            for chunks in decoded:
                state = None
                for chunk in chunks:
                    _, state = worker.model.predict_stream(chunk, state, on_device=True)

    model_s = best_seconds(model_only, device, repeat=repeat)
    one = min(pipeline_bench.pipeline_seconds(spec())[0] for _ in range(repeat))
    batched = min(
        pipeline_bench.pipeline_seconds(spec(videos_per_batch=videos), batched=True)[0] for _ in range(repeat)
    )
    inline = min(  # rows and commits between the model's steps, as before tv3s/jobs/finishing.py
        pipeline_bench.pipeline_seconds(spec(videos_per_batch=videos), batched=True, row_threads=0)[0]
        for _ in range(repeat)
    )
    total = videos * frames
    print(f"\n3. pipeline without Ray, {videos} videos x {frames} frames of {size[1]}x{size[0]}, {precision}")
    print(f"  read and decode alone (PyAV threads)  {total / decode_s:8.1f} frames/s")
    print(f"  model only (one video at a time)      {total / model_s:8.1f} frames/s")
    print(f"  pipeline, one video at a time         {total / one:8.1f} frames/s = {model_s / one:.2f}x model only")
    print(f"  pipeline, videos_per_batch {videos:<2}        {total / batched:8.1f} frames/s = {model_s / batched:.2f}x")
    print(f"  the same, rows and commits inline     {total / inline:8.1f} frames/s = {model_s / inline:.2f}x")
    if device.type == "cuda":  # a fresh worker per run: its graphs' captures are inside the time
        graphed = min(
            pipeline_bench.pipeline_seconds(spec(videos_per_batch=videos, cuda_graphs=True), batched=True)[0]
            for _ in range(repeat)
        )
        print(f"  the same with CUDA graphs             {total / graphed:8.1f} frames/s = {model_s / graphed:.2f}x")
    print(f"  (scratch data in {tmp})")


@contextlib.contextmanager
def compiled_steps(model, options: dict):
    """The model's stream steps through ``torch.compile(**options)``: the issue's alternative to
    graphs.py. Outputs are cloned, as StepGraphs does: reduce-overhead replays CUDA graphs that
    reuse their output memory, and a returned state must stay a value."""
    from tv3s.model.graphs import flatten, unflatten

    compiled = torch.compile(model._stream_step, dynamic=False, **options)

    def step(part: torch.Tensor, layers, full_resolution: bool):
        torch.compiler.cudagraph_mark_step_begin()
        logits, layers, geom = compiled(part, layers, full_resolution)
        shape = tuple(len(groups) for groups in layers)
        return logits.clone(), unflatten([t.clone() for t in flatten(layers)], shape), geom

    model._stream_step = step  # the instance's attribute shadows the method predict_stream_batch calls
    try:
        yield
    finally:
        del model._stream_step


def bench_compile(model, size: tuple[int, int], batches: list[int], precision: str, frames_total: int) -> None:
    """torch.compile(mode="reduce-overhead") of a stream step against eager steps and graphs.py's
    CUDA graphs; each compiled run first checks its logits against eager ones on the same frames."""
    device = model.device
    options = {"mode": "reduce-overhead"} if device.type == "cuda" else {"backend": "eager"}
    frames = np.random.default_rng(0).integers(0, 256, size=(4, *size, 3), dtype=np.uint8)
    print(f"\n4. torch.compile({', '.join(f'{k}={v!r}' for k, v in options.items())}) of a stream step, {precision}")
    if device.type != "cuda":
        print("  (off CUDA: Dynamo's capture with no code generation, which checks the wiring, not the speed)")
    print(
        f"  {'videos':<7}{'eager':>9}{'graphs':>9}{'compiled':>10}{'x eager':>9}{'x graphs':>10}{'compile s':>11}  max|d|"
    )
    for videos in batches:
        steps = max(2, frames_total // (4 * videos))
        eager = stream_fps(model, frames, videos, precision, steps)
        graphs = eager
        if device.type == "cuda":
            model.cuda_graphs = True
            try:
                graphs = stream_fps(model, frames, videos, precision, steps)
            finally:
                model.cuda_graphs = False
        with autocast(device, precision):
            expected, _ = model.predict_stream_batch([frames] * videos, [None] * videos, on_device=True)
            try:
                with compiled_steps(model, options):
                    start = time.perf_counter()
                    actual, _ = model.predict_stream_batch([frames] * videos, [None] * videos, on_device=True)
                    seconds = time.perf_counter() - start
                    compiled = stream_fps(model, frames, videos, precision, steps)
            except Exception as exc:  # noqa: BLE001 - a figure missing, not the run: say why and go on
                print(f"  {videos:<7}{eager:>9.1f}{graphs:>9.1f}  compile failed: {type(exc).__name__}: {exc}"[:400])
                continue
        difference = max(float((a.float() - e.float()).abs().max()) for a, e in zip(actual, expected))
        print(
            f"  {videos:<7}{eager:>9.1f}{graphs:>9.1f}{compiled:>10.1f}{compiled / eager:>9.2f}{compiled / graphs:>10.2f}"
            f"{seconds:>11.1f}  {difference:.1e}"
        )


def excess(actual: np.ndarray, expected: np.ndarray, atol: float = 1e-4, rtol: float = 1e-4) -> float:
    """max(|a - e| - (atol + rtol·|e|)): <= 0 where within tolerance."""
    return float((np.abs(actual - expected) - (atol + rtol * np.abs(expected))).max())


def fixture_model(name: str, device: torch.device, backend: str):
    import json

    path = FIXTURES / name
    if not path.is_dir():
        raise SystemExit(f"fixture {path} is missing: put ../shared beside the checkout or set TV3S_FIXTURES")
    model = build_model(json.loads((path / "config.json").read_text())["model"])
    load_checkpoint(model, path / "checkpoint.pth")
    model = model.to(device).eval()
    model.backend = backend
    return (
        model,
        np.load(path / "frames.npy"),
        np.load(path / "expected_stream.npy"),
        np.load(path / "expected_clip.npy"),
    )


def parity_of(name: str, device: torch.device, backend: str, frames_limit: int | None) -> bool:
    """One fixture's checks, printed; True when all pass."""
    model, frames, expected, expected_clip = fixture_model(name, device, backend)
    frames, expected, expected_clip = frames[:frames_limit], expected[:frames_limit], expected_clip[:frames_limit]
    stream, _ = model.predict_stream(frames)
    clip = model.predict_clip(frames)
    cut = [len(frames) // 2, len(frames) - len(frames) // 2]
    state, pieces = None, []
    for start, size in zip((0, cut[0]), cut):
        out, state = model.predict_stream(frames[start : start + size], state)
        state = StreamState.from_bytes(state.to_bytes())
        pieces.append(out)
    split = float(np.abs(np.concatenate(pieces) - stream).max())
    checks = {
        "stream fp32": excess(stream, expected) <= 0,
        "clip fp32": excess(clip, expected_clip) <= 0,
        "split": split <= 1e-5,
    }
    graphed = "n/a (CUDA only)"
    if device.type == "cuda":  # steps of 2 frames: eager, captured, then replayed
        model.cuda_graphs = True
        try:
            replayed, _ = model.predict_stream(frames, frames_per_step=2)
        finally:
            model.cuda_graphs = False
        eager, _ = model.predict_stream(frames, frames_per_step=2)
        difference = float(np.abs(replayed - eager).max())
        checks["CUDA graphs"], graphed = difference <= 1e-5, f"{difference:.1e}"
    agreement = "n/a (bf16 autocast is for CUDA; CPU runs fp32)"
    if device.type == "cuda":
        with autocast(device, "bf16"):
            low, _ = model.predict_stream(frames)
        agree = float((low.argmax(1) == stream.argmax(1)).mean())
        checks["bf16 argmax"], agreement = agree >= 0.99, f"{agree:.4f}"
    print(
        f"  {name:<24} stream max|d| {np.abs(stream - expected).max():.2e}  clip max|d| "
        f"{np.abs(clip - expected_clip).max():.2e}  split {split:.1e}  graphs {graphed}  bf16 argmax {agreement}  "
        + ("ok" if all(checks.values()) else "FAILED: " + ", ".join(k for k, v in checks.items() if not v))
    )
    return all(checks.values())


def parity(device: torch.device, names: tuple[str, ...], frames_limit: int | None) -> bool:
    backend = "triton" if _triton_refusal(torch.empty(0, device=device)) is None else "torch"
    print(f"parity against {FIXTURES}, backend {backend} (fp32 within 1e-4 + 1e-4|x|; split <= 1e-5; bf16 >= 0.99)")
    results = [parity_of(name, device, backend, frames_limit) for name in names]
    return all(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parity", action="store_true", help="check the fixtures instead of measuring")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, any device: keeps the script working")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="tv3s-b1-vspw")
    parser.add_argument(
        "--sections", default="model,scan,pipeline,compile", help="which of model,scan,pipeline,compile to run"
    )
    parser.add_argument("--fixtures", default=",".join(FIXTURE_NAMES), help="--parity's fixtures, by name")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    device = torch.device(args.device)
    if device.type == "cuda":  # fp32 means fp32 (as the actor sets it): TF32 would drift by ~1e-3
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{where}; torch {torch.__version__}")
    if args.parity:
        ok = parity(device, tuple(args.fixtures.split(",")), 3 if args.smoke else None)
        sys.exit(0 if ok else 1)
    if args.smoke:  # the pipeline needs a preset: the smallest, tv3s-demo, on 2 frames
        model = build_random_model(TINY).to(device)
        print("a tiny model (MiT-B0, Mamba head of width 16 over 4x4 windows), random weights")
        runs = {
            "model": lambda: bench_model(model, (64, 64), [1, 2], ["fp32"], 8),
            "scan": lambda: bench_scan(device, 2, 32, 4, [8]),
            "pipeline": lambda: bench_pipeline("tv3s-demo", device, "fp32", (64, 64), 2, 2, repeat=1),
            "compile": lambda: bench_compile(model, (64, 64), [1], "fp32", 8),
        }
    else:
        model = build_random_model(args.preset).to(device)
        print(f"{args.preset}, random weights")
        runs = {
            "model": lambda: bench_model(model, (480, 853), [1, 4, 8, 16], ["fp32", "bf16"], 64),
            "scan": lambda: bench_scan(device, 18, 512, 16, [400, 1600]),
            # 854, not 853: the synthetic videos are H.264 in yuv420p, which needs even sizes
            "pipeline": lambda: bench_pipeline(args.preset, device, "bf16", (480, 854), 4, 24),
            "compile": lambda: bench_compile(model, (480, 853), [1, 8], "bf16", 64),
        }
    for name, run in runs.items():
        if name in sections:
            run()


if __name__ == "__main__":
    main()
