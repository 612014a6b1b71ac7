"""The Triton kernels (tv3s/model/triton_scan.py) against float64 token loops, in Triton's interpreter.

TRITON_INTERPRET=1 must be set before triton is first imported (triton builds its own
language functions at import), and would then hold for the whole test process. So the
tests run in a child pytest that starts with it set: `test_kernels_in_the_interpreter`
starts it on this file, and in the child the tests below run. Without triton all skip.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tv3s.model import PRESETS, StreamState, build_model
from tv3s.model.ssm import Sequences, causal_conv1d, causal_conv1d_packed, selective_scan, selective_scan_packed

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
in_child = pytest.mark.skipif(not INTERPRETED, reason="run by test_kernels_in_the_interpreter (TRITON_INTERPRET=1)")


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETED, reason="this is the child process")
def test_kernels_in_the_interpreter():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).resolve())]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout[-8000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, output
    # every test of the child ran: only this launcher is skipped there
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed, 1 skipped in", summary), output


def scan_inputs(n=2, d=12, s=5, length=9, dt_scale=1.0, seed=0):
    """Scan operands as the mixer makes them (delta before its bias and softplus; A < 0)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "u": torch.randn(n, length, d, generator=g),
        "delta": torch.randn(n, length, d, generator=g) * dt_scale,
        "A": -torch.exp(torch.randn(d, s, generator=g)),
        "B": torch.randn(n, length, s, generator=g),
        "C": torch.randn(n, length, s, generator=g),
        "D": torch.randn(d, generator=g),
        "z": torch.randn(n, length, d, generator=g),
        "delta_bias": torch.randn(d, generator=g),
        "initial_state": torch.randn(n, d, s, generator=g),
    }


def scan_float64(u, delta, A, B, C, D=None, z=None, delta_bias=None, initial_state=None):
    """The recurrence from its definition, token by token, in numpy float64."""
    u, delta, A, B, C = (t.double().numpy() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.double().numpy()
    dt = np.logaddexp(0.0, delta)  # softplus
    n, length, d = u.shape
    h = np.zeros((n, d, A.shape[1])) if initial_state is None else initial_state.double().numpy()
    y = np.empty_like(u)
    for t in range(length):
        h = np.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        y[:, t] = (h * C[:, t, None, :]).sum(-1)
    if D is not None:
        y = y + u * D.double().numpy()
    if z is not None:
        zz = z.double().numpy()
        y = y * zz / (1.0 + np.exp(-zz))
    return torch.from_numpy(y), torch.from_numpy(h)


def assert_close_to(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> None:
    torch.testing.assert_close(actual.double(), expected, atol=atol, rtol=rtol)


@in_child
@pytest.mark.parametrize("length", [1, 2, 7, 20])
@pytest.mark.parametrize("decay", ["ordinary", "fast"])
def test_scan_matches_float64(length, decay):
    """With the layer's D, z gate, delta bias and a state; fast: Δ·|A| in the hundreds (decays underflow)."""
    x = scan_inputs(length=length, dt_scale=1.0 if decay == "ordinary" else 6.0)
    if decay == "fast":
        x["A"] = x["A"] * 20
    y, h = selective_scan(**x, backend="triton")
    y_ref, h_ref = scan_float64(**x)
    assert y.dtype == h.dtype == torch.float32 and torch.isfinite(y).all()
    assert_close_to(y, y_ref, atol=2e-5, rtol=1e-4)
    assert_close_to(h, h_ref, atol=2e-5, rtol=1e-4)


@in_child
@pytest.mark.parametrize("block_d", [4, 8, 16])
def test_scan_without_gate_skip_bias_or_state(block_d):
    """Each optional term off, channels cut into several programs (12 channels: a partial last block)."""
    x = scan_inputs(length=6)
    for off in ("D", "z", "delta_bias", "initial_state"):
        x[off] = None
    from tv3s.model import triton_scan

    y, h = triton_scan.selective_scan(**x, block_d=block_d)
    y_ref, h_ref = scan_float64(**x)
    assert_close_to(y, y_ref, atol=2e-5, rtol=1e-4)
    assert_close_to(h, h_ref, atol=2e-5, rtol=1e-4)


@in_child
@pytest.mark.parametrize("chunk", [2, 8, 16])
@pytest.mark.parametrize("packed", [False, True])
def test_chunked_steps_match_float64(chunk, packed):
    """Several tokens a step from a parallel scan: partial last chunks, a sequence shorter than a
    chunk, and fast decays (Δ·|A| in the hundreds) included, with each optional term on."""
    from tv3s.model import triton_scan

    shapes = [(3, 21), (1, 3), (1, 1)] if packed else [(3, 21)]
    groups = packed_inputs(shapes, dt_scale=4.0)
    shared = {"A": groups[0]["A"] * 20, "D": groups[0]["D"], "delta_bias": groups[0]["delta_bias"]}
    sequences = Sequences.of(shapes) if packed else None
    per_token = {k: pack(groups, k) if packed else groups[0][k] for k in ("u", "delta", "B", "C", "z")}
    h0 = torch.cat([x["initial_state"] for x in groups])
    y, h = triton_scan.selective_scan(**per_token, **shared, initial_state=h0, sequences=sequences, chunk=chunk)
    ys, hs = (sequences.split(y), sequences.split_states(h)) if packed else ([y], [h])
    for x, y_group, h_group in zip(groups, ys, hs):
        y_ref, h_ref = scan_float64(**{**x, **shared})
        assert_close_to(y_group, y_ref, atol=2e-5, rtol=1e-4)
        assert_close_to(h_group, h_ref, atol=2e-5, rtol=1e-4)


@in_child
@pytest.mark.parametrize("cut", [1, 5, 11])
def test_state_carried_across_two_calls_equals_one_call(cut):
    x = scan_inputs(length=12)
    y, h = selective_scan(**x, backend="triton")
    per_token = ("u", "delta", "B", "C", "z")
    first = {k: v[:, :cut] if k in per_token else v for k, v in x.items()}
    y1, h1 = selective_scan(**first, backend="triton")
    second = {k: v[:, cut:] if k in per_token else v for k, v in x.items()}
    y2, h2 = selective_scan(**{**second, "initial_state": h1}, backend="triton")
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(h2, h, atol=1e-6, rtol=1e-6)


@in_child
def test_bf16_inputs_keep_a_float32_state():
    """bf16 operands (as under autocast) are widened on load: the state equals the float64 scan of the
    same bf16 values to float32 accuracy, and y only carries its own final conversion to bf16 (within
    one bf16 step: the interpreter truncates there, where a GPU rounds to nearest)."""
    x = scan_inputs(length=16)
    for k in ("u", "delta", "B", "C", "z"):
        x[k] = x[k].bfloat16()
    y, h = selective_scan(**x, backend="triton")
    y_ref, h_ref = scan_float64(**x)
    assert y.dtype == torch.bfloat16 and h.dtype == torch.float32
    assert_close_to(h, h_ref, atol=2e-5, rtol=1e-4)
    assert_close_to(y.float(), y_ref, atol=1e-5, rtol=2**-7)


@in_child
@pytest.mark.parametrize("sizes", [[40], [1, 2, 37], [3, 17, 20]])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_causal_conv_in_chunks_equals_whole(sizes, dtype):
    """Chunks shorter than the K-1 = 3 tokens of state included; bf16 input gives float32 activations
    (promoted with the weight, as the PyTorch path does) and a state of the exact bf16 inputs."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, sum(sizes), 70, generator=g).to(dtype)
    w, b = torch.randn(70, 1, 4, generator=g), torch.randn(70, generator=g)
    whole = F.silu(F.conv1d(x.double().transpose(1, 2), w.double(), b.double(), padding=3, groups=70))
    whole = whole[..., : x.shape[1]].transpose(1, 2)
    ys, state, start = [], None, 0
    for size in sizes:
        y, state = causal_conv1d(x[:, start : start + size], w, b, state, backend="triton")
        ys.append(y)
        start += size
    assert ys[0].dtype == torch.float32 and state.dtype == dtype
    assert_close_to(torch.cat(ys, 1), whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state, x[:, -3:], atol=0, rtol=0)


def packed_inputs(shapes, with_state=True, seed=3, dt_scale=1.0):
    """Scan operands for sequences of several lengths, as per-group [count, length, X] tensors."""
    groups = [
        scan_inputs(n=count, length=length, dt_scale=dt_scale, seed=seed + g)
        for g, (count, length) in enumerate(shapes)
    ]
    if not with_state:
        for x in groups:
            x["initial_state"] = None
    return groups


def pack(groups, key):
    return torch.cat([x[key].flatten(0, 1) for x in groups])


@in_child
@pytest.mark.parametrize("shapes", [[(2, 9)], [(3, 12), (2, 5), (1, 1)], [(1, 1), (4, 2), (2, 20)]])
@pytest.mark.parametrize("with_state", [True, False])
def test_packed_scan_equals_float64_per_group(shapes, with_state):
    """One launch over sequences of several lengths (1 token included), each group from its own
    state, equals the float64 recurrence of each group alone."""
    groups = packed_inputs(shapes, with_state)
    sequences = Sequences.of(shapes)
    shared = {k: groups[0][k] for k in ("A", "D", "delta_bias")}
    states = None if not with_state else [x["initial_state"] for x in groups]
    y, h = selective_scan_packed(
        *(pack(groups, k) for k in ("u", "delta")), shared["A"], pack(groups, "B"), pack(groups, "C"),
        shared["D"], pack(groups, "z"), shared["delta_bias"], sequences, states, backend="triton",
    )  # fmt: skip
    assert len(h) == len(shapes)
    for x, y_group, h_group in zip(groups, sequences.split(y), h):
        y_ref, h_ref = scan_float64(**{**x, **shared})
        assert_close_to(y_group, y_ref, atol=2e-5, rtol=1e-4)
        assert_close_to(h_group, h_ref, atol=2e-5, rtol=1e-4)


@in_child
@pytest.mark.parametrize("shapes", [[(2, 40)], [(3, 33), (2, 7), (1, 1)], [(1, 2), (2, 70)]])
def test_packed_conv_equals_each_group_alone(shapes):
    """Sequences shorter than the conv's K-1 = 3 state rows, and longer than a program's 32 tokens."""
    g = torch.Generator().manual_seed(2)
    sequences = Sequences.of(shapes)
    x = torch.randn(sum(c * n for c, n in shapes), 70, generator=g)
    w, b = torch.randn(70, 1, 4, generator=g), torch.randn(70, generator=g)
    states = [torch.randn(c, 3, 70, generator=g) for c, _ in shapes]
    y, new_states = causal_conv1d_packed(x, w, b, sequences, states, backend="triton")
    for xg, yg, state, new_state in zip(sequences.split(x), sequences.split(y), states, new_states):
        expected, expected_state = causal_conv1d(xg, w, b, state, backend="torch")
        torch.testing.assert_close(yg, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(new_state, expected_state, atol=0, rtol=0)


@in_child
def test_triton_backend_refuses_gradients():
    x = {k: v.requires_grad_(True) for k, v in scan_inputs(length=3).items()}
    with pytest.raises(RuntimeError, match="inference-only"):
        selective_scan(**x, backend="triton")


def tiny_model():
    """MiT-B0 with a Mamba head of width 16, two blocks over 4x4 windows shifted by 2: on 64x64 frames,
    4 windows in the plain layer, and windows and sub-windows of 16, 8 and 4 tokens in the shifted one."""
    demo = PRESETS["tv3s-demo"]
    head = dataclasses.replace(demo.head, embed_dim=16, window_h=4, window_w=4, shift_size=2, n_mambas=2)
    torch.manual_seed(0)
    return build_model(dataclasses.replace(demo, head=head))


@in_child
def test_tiny_model_stream_matches_torch_backend():
    """Stream mode through the model, the state serialised between calls, against the pure path."""
    model = tiny_model()
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    model.backend = "torch"
    expected, expected_state = model.predict_stream(frames)
    model.backend = "triton"
    first, state = model.predict_stream(frames[:1])
    second, state = model.predict_stream(frames[1:], StreamState.from_bytes(state.to_bytes()))
    np.testing.assert_allclose(np.concatenate([first, second]), expected, atol=1e-4, rtol=0)
    for ours, theirs in zip(state.layers, expected_state.layers):
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a.ssm, b.ssm, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(a.conv, b.conv, atol=1e-5, rtol=1e-5)
