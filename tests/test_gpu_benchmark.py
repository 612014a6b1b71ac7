"""The GPU benchmarks keep working where there is no GPU: gpu.py --smoke and finishing.py run small."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_gpu_benchmark(*flags: str) -> str:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--device", "cpu", *flags]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.mark.slow
def test_smoke_prints_every_section():
    out = run_gpu_benchmark()
    for heading in ("1. model only", "2. scan and conv", "3. pipeline without Ray", "4. torch.compile"):
        assert heading in out, out
    assert "(backend torch)" in out and "x model only" in out and "(channels-last convs" in out, out
    assert "read and decode alone" in out, out
    assert "compile failed" not in out and out.rstrip().endswith("0.0e+00"), out  # compiled = eager logits


@pytest.mark.slow
def test_smoke_parity_passes_on_the_first_fixture():
    out = run_gpu_benchmark("--parity", "--fixtures", "tv3s-parity-small")
    assert "tv3s-parity-small" in out and out.rstrip().endswith("ok"), out


@pytest.mark.slow
def test_the_finishing_benchmark_runs_small():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "finishing.py"), "--preset", "tv3s-demo", "--size", "64x96"]
    cmd += ["--videos", "1", "--frames", "4", "--repeats", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "ms a frame in one thread" in proc.stdout and "x inline" in proc.stdout, proc.stdout


def test_the_actor_pipeline_runs_without_ray_or_duckdb():
    """The device tool's GPU machines have neither, and no room to carry them (benchmarks/device):
    planning, labeling and committing a chain must not import them."""
    script = """
import sys
sys.modules["duckdb"] = sys.modules["ray"] = None  # `import duckdb` now raises ImportError
sys.path.insert(0, "benchmarks")
import tempfile
import pipeline as bench
from tv3s import DEMO_CHECKPOINT
tmp = tempfile.mkdtemp()
shards, _ = bench.write_synthetic_archive(tmp, bench.Store(), 1, 4, 64, 96)
spec = bench.spec_for(shards, tmp + "/out", {"checkpoint": str(DEMO_CHECKPOINT)})
print("frames", bench.pipeline_seconds(spec)[1])
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "frames 4" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_a_layer_is_one_conv_and_one_scan_launch():
    """benchmarks/launches.py counts a stream step's launches. At 256x256 the demo model's shifted
    layers hold windows of 3 lengths (400, 200 and 100 tokens a frame), yet each of its 4 layers
    launches the Triton conv and scan once: every window and sub-window packed into one call."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "launches.py"), "--preset", "tv3s-demo", "--size", "256x256"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    counts = {line.split()[0]: line.split()[-3:] for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert counts["mamba"][1] == "8", proc.stdout
    assert counts["encoder"][1] == "0" and int(counts["encoder"][0]) > 0, proc.stdout
