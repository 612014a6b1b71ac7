"""The Triton kernels compiled for a Hopper GPU (sm_90: H100, H200), on a machine without one.

The interpreter tests (test_triton_scan.py) check the kernels' numbers, but the interpreter
runs Python, not the compiler: a kernel can pass there and still fail to compile for a GPU
(a loop bound or a branch whose types the compiler rejects). Triton's own compiler and its
bundled ptxas need no GPU, so each launch the wrappers make is recorded (from a call on CPU
tensors, with the launch itself replaced) and compiled to a cubin for sm_90 here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed"),
    pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="the interpreter's kernels do not compile"),
]

HOPPER = ("cuda", 90, 32)
POINTER = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.int32: "*i32"}
LAUNCH_OPTIONS = ("num_warps", "num_stages")


class RecordedLaunch:
    """Stands in for ``kernel[grid](...)``: keeps the arguments instead of launching."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((args, kwargs))


def compile_for_hopper(kernel, args: tuple, kwargs: dict):
    """Compile one recorded launch for sm_90 as Triton would on that GPU."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    values = dict(zip(kernel.arg_names, args)) | {k: v for k, v in kwargs.items() if k not in LAUNCH_OPTIONS}
    signature, constexprs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        value = values[name]
        if isinstance(value, torch.Tensor):
            signature[name] = POINTER[value.dtype]
        elif isinstance(value, bool) or value is None or name.isupper():
            signature[name], constexprs[(i,)] = "constexpr", value
        else:
            signature[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
    options = {k: v for k, v in kwargs.items() if k in LAUNCH_OPTIONS}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    return triton.compile(source, target=GPUTarget(*HOPPER), options=options)


def recorded(monkeypatch, name: str, call) -> list:
    from tv3s.model import triton_scan

    launch = RecordedLaunch(getattr(triton_scan, name))
    monkeypatch.setattr(triton_scan, name, launch)
    call(triton_scan)
    return [(launch.kernel, args, kwargs) for args, kwargs in launch.calls]


def scan_call(packed: bool, dtype: torch.dtype, with_state: bool, config: tuple[int, int, int] | None = None):
    from tv3s.model.ssm import Sequences

    sequences = Sequences.of([(2, 8), (3, 4), (1, 1)]) if packed else None
    lead = (sum(c * n for c, n in sequences.shapes),) if packed else (2, 8)
    n = sequences.count if packed else 2
    d, s = 32, 16

    def call(module):
        module.selective_scan(
            torch.zeros(*lead, d, dtype=dtype), torch.zeros(*lead, d, dtype=dtype), -torch.ones(d, s),
            torch.zeros(*lead, s, dtype=dtype), torch.zeros(*lead, s, dtype=dtype), torch.ones(d),
            torch.zeros(*lead, d, dtype=dtype), torch.zeros(d), torch.zeros(n, d, s) if with_state else None,
            sequences=sequences, **dict(zip(("block_d", "chunk", "num_warps"), config or ())),
        )  # fmt: skip

    return call


def conv_call(packed: bool, dtype: torch.dtype):
    from tv3s.model.ssm import Sequences

    sequences = Sequences.of([(2, 40), (3, 2)]) if packed else None
    lead = (86,) if packed else (2, 40)
    n = sequences.count if packed else 2

    def call(module):
        module.causal_conv1d(
            torch.zeros(*lead, 64, dtype=dtype), torch.zeros(64, 1, 4), torch.zeros(64),
            torch.zeros(n, 3, 64, dtype=dtype), sequences=sequences,
        )  # fmt: skip

    return call


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_state", [True, False])
def test_scan_compiles_for_hopper(monkeypatch, packed, dtype, with_state):
    (launch,) = recorded(monkeypatch, "_selective_scan_kernel", scan_call(packed, dtype, with_state))
    assert "cubin" in compile_for_hopper(*launch).asm


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_conv_compiles_for_hopper_and_fits_in_registers(monkeypatch, tmp_path, packed, dtype):
    (launch,) = recorded(monkeypatch, "_causal_conv_kernel", conv_call(packed, dtype))
    usage = resource_usage(compile_for_hopper(*launch).asm["cubin"], tmp_path)
    assert usage["LOCAL"] == 0 and usage["STACK"] == 0, usage


def resource_usage(cubin: bytes, tmp_path) -> dict[str, int]:
    """cuobjdump's resource usage of a cubin's kernel (REG per thread, LOCAL bytes: spills)."""
    import triton

    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not cuobjdump.exists():
        pytest.skip(f"{cuobjdump} is not in this triton build")
    path = tmp_path / "kernel.cubin"
    path.write_bytes(cubin)
    out = subprocess.run([str(cuobjdump), "-res-usage", str(path)], capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if "REG:" in line)
    return {key: int(value) for key, value in re.findall(r"(\w+):(\d+)", line)}


def scan_configs() -> list[tuple[int, int, int]]:
    if importlib.util.find_spec("triton") is None:
        return []
    from tv3s.model import triton_scan

    default = (triton_scan._SCAN_BLOCK_D, triton_scan._SCAN_CHUNK, triton_scan._SCAN_WARPS)
    return [default, *triton_scan.SCAN_CANDIDATES]


@pytest.mark.parametrize("config", scan_configs(), ids=lambda c: f"block{c[0]}-chunk{c[1]}-warps{c[2]}")
def test_the_default_and_every_candidate_gpu_py_sweeps_fits_in_registers(monkeypatch, tmp_path, config):
    """benchmarks/gpu.py times the scan at these (channels, tokens a step, warps) per program on a
    GPU; each must build for sm_90 without spilling its float32 tiles to local memory, which would
    make every step a round trip to memory (one warp of 64 channels takes 254 of its 255
    registers; 128 channels, or 16 tokens a step in one warp, would spill)."""
    (launch,) = recorded(monkeypatch, "_selective_scan_kernel", scan_call(True, torch.bfloat16, True, config))
    usage = resource_usage(compile_for_hopper(*launch).asm["cubin"], tmp_path)
    assert usage["LOCAL"] == 0 and usage["STACK"] == 0 and usage["REG"] <= 255, usage


def test_a_kernel_the_compiler_rejects_fails_here():
    """The check can fail: a loop whose carried value changes type is refused by the compiler
    (the interpreter, being Python, would run it)."""
    import triton
    import triton.language as tl

    @triton.jit
    def bad(x_ptr, n):
        acc = 0
        for i in range(n):
            acc = acc + tl.load(x_ptr + i)  # int, then fp32: the loop's carried type changes
        tl.store(x_ptr, acc)

    with pytest.raises(Exception, match="[Ll]oop|type"):
        compile_for_hopper(bad, (torch.zeros(4), 4), {})
