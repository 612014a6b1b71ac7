"""Triton kernels for the Mamba mixer's inference path, each starting from a given state.

Stream inference continues every window's recurrence from the state the previous chunk
left. The PyTorch scan (ssm.py) does that in tens of tensor operations per call, and
mamba-ssm's fused scan cannot start from a state at all (its initial state is added
afterwards, another ~10 operations). Here each primitive is one launch for all sequences
of a layer: every window and shifted sub-window of every video, either of one length (the
batch dimension N) or packed one after another (``sequences``: each program reads where its
sequence starts and how long it is):

* :func:`selective_scan` - one program per (sequence, block of channels) holds the
  [BLOCK_D, S] state in registers, in float32, and walks the L tokens in order, CHUNK at a
  time: ``h = exp(Δ A) ⊙ h + Δ B u``, ``y = C·h + D u``, times ``silu(z)``. Inputs may be
  bf16/fp16 (autocast); they are widened on load, so the state never leaves float32.
* :func:`causal_conv1d` - depthwise causal conv + SiLU over [state | x] without the
  concatenation: a token's left context is read from the conv state where it reaches
  before the chunk. It also writes the new state (the last K-1 inputs), in the same launch.

Importing this module imports triton; ssm.py does so only when this backend is chosen.
On CPU tensors the kernels run only in Triton's interpreter (``TRITON_INTERPRET=1`` set
before triton is first imported): slow, for tests. No backward: inference only.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .ssm import Sequences

# The scan on a GPU: channels per program, tokens per step of a program, warps per program.
# 16 x 16 states is 8 registers per thread of one warp. Small blocks give many programs (18
# windows x 512 channels / 16 = 576 at B1 480p), which is what keeps a GPU busy while each
# program walks its tokens. One token a step is the plain recurrence; CHUNK tokens a step load
# as one tile and take their states from a parallel scan (as mamba-ssm's CUDA kernel does
# inside its chunks), more arithmetic for fewer dependent steps. None of this is tuned on a
# GPU yet: benchmarks/gpu.py times SCAN_CANDIDATES against the default there. In the
# interpreter, whose cost is per operation more than per element, one token a step is fastest.
_SCAN_BLOCK_D, _SCAN_CHUNK, _SCAN_WARPS = 16, 1, 1
SCAN_CANDIDATES = (
    (4, 1, 1), (8, 1, 1), (32, 1, 1), (64, 1, 1), (16, 8, 2), (8, 16, 2), (16, 16, 4), (32, 16, 4), (16, 32, 4)
)  # fmt: skip
_CONV_BLOCK_L = 32
_CONV_BLOCK_D = 64


@triton.jit
def _then(a1, b1, a2, b2):
    """Two steps h -> a·h + b composed, the first (a1, b1) then (a2, b2): associative, so a
    chunk's states come from a parallel scan. Only products of decays ≤ 1 appear."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _selective_scan_kernel(
    u_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, bias_ptr, h0_ptr, y_ptr, h_ptr, starts_ptr, lengths_ptr,
    length, channels,
    su_n, su_l, sdt_n, sdt_l, sb_n, sb_l, sc_n, sc_l, sz_n, sz_l, sy_n, sy_l,
    STATES: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr, CHUNK: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, PACKED: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64)
    seq = n  # where sequence n's tokens start, in units of the *_n strides
    if PACKED:  # sequences of any length one after another: the *_n strides are the token strides
        seq = tl.load(starts_ptr + n).to(tl.int64)
        length = tl.load(lengths_ptr + n)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    s = tl.arange(0, BLOCK_S)
    d_ok = d < channels
    ds_ok = d_ok[:, None] & (s < STATES)[None, :]
    ds = d[:, None] * STATES + s[None, :]
    A = tl.load(a_ptr + ds, mask=ds_ok, other=0.0).to(tl.float32)
    state_at = n * channels * STATES + ds
    h = tl.zeros([BLOCK_D, BLOCK_S], dtype=tl.float32)
    if HAS_H0:
        h = tl.load(h0_ptr + state_at, mask=ds_ok, other=0.0).to(tl.float32)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
    if HAS_D:
        skip = tl.load(d_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
    i = tl.arange(0, CHUNK)
    last = (i == CHUNK - 1)[:, None, None]
    for first in range(0, length, CHUNK):  # CHUNK tokens at a time, in order
        t = (first + i).to(tl.int64)
        t_ok = t < length
        td_ok = t_ok[:, None] & d_ok[None, :]  # [CHUNK, BLOCK_D]
        ts_ok = t_ok[:, None] & (s < STATES)[None, :]  # [CHUNK, BLOCK_S]
        u = tl.load(u_ptr + seq * su_n + t[:, None] * su_l + d[None, :], mask=td_ok, other=0.0).to(tl.float32)
        x = tl.load(dt_ptr + seq * sdt_n + t[:, None] * sdt_l + d[None, :], mask=td_ok, other=0.0).to(tl.float32)
        x += bias[None, :]
        # softplus as torch's (threshold 20): log1p(exp(x)) without log1p, as log(p)·e/(p-1),
        # exact to rounding (Goldberg's trick), and e itself once p = 1 + e rounds to 1
        e = tl.exp(tl.minimum(x, 20.0))
        p = 1.0 + e
        rounded = p == 1.0
        dt = tl.where(x > 20.0, x, tl.where(rounded, e, tl.log(p) * (e / tl.where(rounded, 1.0, p - 1.0))))
        dt = tl.where(td_ok, dt, 0.0)  # past the end: decay 1, input 0, so the state stays as it is
        B = tl.load(b_ptr + seq * sb_n + t[:, None] * sb_l + s[None, :], mask=ts_ok, other=0.0).to(tl.float32)
        C = tl.load(c_ptr + seq * sc_n + t[:, None] * sc_l + s[None, :], mask=ts_ok, other=0.0).to(tl.float32)
        decay = tl.exp(dt[:, :, None] * A[None, :, :])  # [CHUNK, BLOCK_D, BLOCK_S]
        pushed = (dt * u)[:, :, None] * B[:, None, :]
        # each token's state from the chunk's start: h_t = decay_to_t · h + pushed_to_t
        decay_to, pushed_to = tl.associative_scan((decay, pushed), 0, _then)
        states = pushed_to + decay_to * h[None, :, :]
        y = tl.sum(states * C[:, None, :], axis=2)  # [CHUNK, BLOCK_D]
        if HAS_D:
            y += u * skip[None, :]
        if HAS_Z:
            z_at = z_ptr + seq * sz_n + t[:, None] * sz_l + d[None, :]
            z = tl.load(z_at, mask=td_ok, other=0.0).to(tl.float32)
            y = y * (z / (1.0 + tl.exp(-z)))  # silu; written out: a nested jit call costs the interpreter ms
        tl.store(y_ptr + seq * sy_n + t[:, None] * sy_l + d[None, :], y.to(y_ptr.dtype.element_ty), mask=td_ok)
        h = tl.sum(tl.where(last, states, 0.0), axis=0)  # the chunk's last state (tokens past the end keep it)
    tl.store(h_ptr + state_at, h, mask=ds_ok)


# Compiled for the GPU, or (TRITON_INTERPRET=1 when triton was imported) run by the interpreter.
INTERPRETED = not isinstance(_selective_scan_kernel, triton.runtime.JITFunction)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """[N, L, X] (or packed [P, X]) with unit stride along X (the kernels take the other
    strides as given, so the mixer's views of its projections need no copy)."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _strides(x: torch.Tensor, sequences: Sequences | None) -> tuple[int, int]:
    """(sequence stride, token stride) of ``x`` as a kernel walks it. Packed, a kernel finds
    each sequence's first token in ``sequences.starts``, so both strides are the token stride."""
    return x.stride(0), x.stride(0) if sequences is not None else x.stride(1)


def _extent(x: torch.Tensor, sequences: Sequences | None) -> tuple[int, int]:
    """(sequences, tokens a sequence) of ``x``; packed, each program reads its own length."""
    return (x.shape[0], x.shape[1]) if sequences is None else (sequences.count, 0)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    block_d: int | None = None,
    sequences: Sequences | None = None,
    chunk: int | None = None,
    num_warps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ssm.selective_scan's contract in one launch: y [N, L, D] in u's dtype, final state float32.

    With ``sequences``, u, delta, z [P, D] and B, C [P, S] hold sequences of several lengths
    one after another (a whole layer's windows and shifted sub-windows), and the states are
    [sequences.count, D, S]: still one launch. ``block_d``, ``chunk`` (powers of two) and
    ``num_warps`` override the channels per program, the tokens per step of a program and
    the warps per program (see SCAN_CANDIDATES).
    """
    u, delta, B, C = _rows(u), _rows(delta), _rows(B), _rows(C)
    z = None if z is None else _rows(z)
    n, length = _extent(u, sequences)
    channels, states = u.shape[-1], A.shape[1]
    y = torch.empty(u.shape, dtype=u.dtype, device=u.device)
    h = torch.empty(n, channels, states, dtype=torch.float32, device=u.device)
    h0 = None if initial_state is None else initial_state.float().contiguous()
    if block_d is None:
        block_d = triton.next_power_of_2(channels) if INTERPRETED else _SCAN_BLOCK_D
    grid = (n, triton.cdiv(channels, block_d))
    _selective_scan_kernel[grid](
        u, delta, A.float().contiguous(), B, C,
        D, z, delta_bias, h0, y, h,
        None if sequences is None else sequences.starts, None if sequences is None else sequences.lengths,
        length, channels,
        *_strides(u, sequences), *_strides(delta, sequences), *_strides(B, sequences), *_strides(C, sequences),
        *(_strides(z, sequences) if z is not None else (0, 0)), *_strides(y, sequences),
        STATES=states, BLOCK_D=block_d, BLOCK_S=triton.next_power_of_2(states), CHUNK=chunk or _SCAN_CHUNK,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, HAS_H0=h0 is not None,
        PACKED=sequences is not None, num_warps=num_warps or _SCAN_WARPS,
    )  # fmt: skip
    return y, h


@triton.jit
def _extended(x_ptr, state_ptr, seq, n, p, d, length, sx_n, sx_l, ss_n, ss_l, mask, LEFT: tl.constexpr):
    """Element p of [conv state | x] (LEFT = K-1 state rows) along the token axis, 0 where masked."""
    from_state = tl.load(state_ptr + n * ss_n + p * ss_l + d, mask=mask & (p < LEFT), other=0.0)
    from_x = tl.load(
        x_ptr + seq * sx_n + (p - LEFT) * sx_l + d, mask=mask & (p >= LEFT) & (p < length + LEFT), other=0.0
    )
    return from_state.to(tl.float32) + from_x.to(tl.float32)


@triton.jit
def _causal_conv_kernel(
    x_ptr, state_ptr, w_ptr, bias_ptr, y_ptr, new_state_ptr, starts_ptr, lengths_ptr,
    length, channels,
    sx_n, sx_l, ss_n, ss_l, sy_n, sy_l,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr,
    PACKED: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64)
    seq = n  # as in the scan: where sequence n's tokens start, in units of the *_n strides
    if PACKED:
        seq = tl.load(starts_ptr + n).to(tl.int64)
        length = tl.load(lengths_ptr + n)
    t = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = d < channels
    ok = (t < length)[:, None] & d_ok[None, :]
    # Cross-correlation over the extended sequence: y[t] = b + Σ_j w[j] · ext[t + j] (ssm.py's order).
    acc = tl.zeros([BLOCK_L, BLOCK_D], dtype=tl.float32)
    for j in tl.static_range(K):
        w = tl.load(w_ptr + d * K + j, mask=d_ok, other=0.0).to(tl.float32)
        ext = _extended(x_ptr, state_ptr, seq, n, t[:, None] + j, d[None, :], length, sx_n, sx_l, ss_n, ss_l, ok, K - 1)
        acc += ext * w[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + d, mask=d_ok, other=0.0).to(tl.float32)[None, :]
    y = acc / (1.0 + tl.exp(-acc))  # silu
    tl.store(y_ptr + seq * sy_n + t[:, None] * sy_l + d[None, :], y.to(y_ptr.dtype.element_ty), mask=ok)
    if tl.program_id(1) == 0:  # the new state: ext[L .. L+K-2], the last K-1 inputs
        i = tl.arange(0, BLOCK_K)
        keep = (i < K - 1)[:, None] & d_ok[None, :]
        tail = _extended(
            x_ptr, state_ptr, seq, n, length + i[:, None], d[None, :], length, sx_n, sx_l, ss_n, ss_l, keep, K - 1
        )
        out = new_state_ptr + n * (K - 1) * channels + i[:, None] * channels + d[None, :]
        tl.store(out, tail.to(new_state_ptr.dtype.element_ty), mask=keep)


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_state: torch.Tensor | None,
    sequences: Sequences | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ssm.causal_conv1d's contract in one launch: (activations [N, L, D], new state [N, K-1, D]).

    Same dtypes as the PyTorch path: activations in x's dtype promoted with the weight's, the
    state in x's dtype (it holds inputs, so that is exact). With ``sequences``, x and the
    activations are packed [P, D] as in :func:`selective_scan`, the states [sequences.count, K-1, D].
    """
    x = _rows(x)
    n, length = _extent(x, sequences)
    channels, k = x.shape[-1], weight.shape[-1]
    state = x.new_zeros(n, k - 1, channels) if conv_state is None else _rows(conv_state)
    y = torch.empty(x.shape, dtype=torch.promote_types(x.dtype, weight.dtype), device=x.device)
    new_state = torch.empty(n, k - 1, channels, dtype=x.dtype, device=x.device)
    longest = length if sequences is None else sequences.longest
    grid = (n, triton.cdiv(longest, _CONV_BLOCK_L), triton.cdiv(channels, _CONV_BLOCK_D))
    _causal_conv_kernel[grid](
        x, state, weight.reshape(channels, k).contiguous(), bias, y, new_state,
        None if sequences is None else sequences.starts, None if sequences is None else sequences.lengths,
        length, channels,
        *_strides(x, sequences), state.stride(0), state.stride(1), *_strides(y, sequences),
        K=k, HAS_BIAS=bias is not None, BLOCK_L=_CONV_BLOCK_L, BLOCK_D=_CONV_BLOCK_D,
        BLOCK_K=triton.next_power_of_2(max(1, k - 1)), PACKED=sequences is not None,
    )  # fmt: skip
    return y, new_state
