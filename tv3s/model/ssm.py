"""The two recurrent primitives of a Mamba (v1) mixer, each able to start from a given state.

Upstream mamba-ssm's selective scan cannot start from a given SSM state, which is exactly
what stream inference needs: the state at the end of one chunk of frames must seed the next.
Here both primitives take a state and return the final one:

* :func:`causal_conv1d` - depthwise causal convolution whose left context is the previous
  chunk's last ``d_conv - 1`` inputs (zeros at the start of a video).
* :func:`selective_scan` - ``h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t``, ``y_t = C_t·h_t + D u_t``,
  gated by ``silu(z)``, from ``h_0 = initial_state``.

Each also comes packed (``*_packed``): sequences of several lengths one after another along
one token axis (:class:`Sequences`), as a decoder layer's windows and shifted sub-windows are.

The pure-PyTorch scan is a two-level scan over chunks of tokens (see :func:`_scan_block`)
and is the path on CPU; it gives the same numbers on any machine. On a GPU (``backend``, see
:func:`resolve_backend`) inference runs the Triton kernels of triton_scan.py, which start from
the state in one launch each; training, which needs a backward, runs mamba-ssm / causal-conv1d's
CUDA kernels when installed: their scan starts from zero, and the initial state's
contribution, being linear, is added exactly afterwards (:func:`initial_state_response`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Elements of the [N, K, D, S] working set per chunk of `initial_state_response`.
_CHUNK_ELEMENTS = 1 << 20
_MAX_CHUNK = 64
# The inference scan materialises the [N, L, D, S] states of one block of tokens at a time.
# On CPU, blocks that stay in cache, run token by token (_scan_steps), won at every shape
# measured: the demo model's scans 33 ms against 36 ms two-level; a B1 layer (12 windows x
# 512 channels) 39 ms against 72 ms two-level and 50 ms for a plain per-token loop. On a
# GPU the cost is kernel launches: the two-level scan (_scan_block) over a whole window
# sequence in one block, about 50 tensor operations.
_CPU_BLOCK_ELEMENTS = 1 << 19
_GPU_BLOCK_ELEMENTS = 1 << 27
# auto: the fastest that applies; torch: the pure path; cuda: mamba-ssm's kernels; triton: triton_scan.
BACKENDS = ("auto", "torch", "cuda", "triton")


@functools.cache
def _cuda_kernels() -> tuple | None:
    """The fused kernels when both packages import (they need their compiled CUDA parts)."""
    try:
        from causal_conv1d import causal_conv1d_fn
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a missing compiled extension on CPU-only machines
        return None
    return selective_scan_fn, causal_conv1d_fn


def kernels_available() -> bool:
    """Whether the mamba-ssm / causal-conv1d CUDA kernels can be used on this machine."""
    return _cuda_kernels() is not None and torch.cuda.is_available()


@functools.cache
def _triton_module():
    """tv3s.model.triton_scan, imported (with triton) only when first asked for; None without triton."""
    try:
        from . import triton_scan
    except ImportError:
        return None
    return triton_scan


def _triton_refusal(x: torch.Tensor) -> str | None:
    """Why the Triton kernels cannot run on ``x`` here (None: they can)."""
    module = _triton_module()
    if module is None:
        return "backend='triton' needs the triton package (CUDA builds of torch bring it; or pip install triton)"
    if not x.is_cuda and not module.INTERPRETED:
        return (
            "backend='triton' runs on CPU tensors only in Triton's interpreter: set TRITON_INTERPRET=1 "
            "before triton is first imported (slow; for tests), or use backend='torch' on CPU"
        )
    return None


@dataclass(frozen=True, eq=False)
class Sequences:
    """Sequences of a few lengths packed one after another along one token axis.

    Group g, ``shapes[g] = (count, length)``, is ``count`` sequences of ``length`` tokens each;
    the groups follow one another. A decoder layer's windows and shifted sub-windows come in a
    few lengths (windows.py): packed, a mixer's per-token work runs once for all of them, the
    PyTorch recurrences once per group (over views of the packed tensors), and each Triton
    kernel once for all, finding sequence n through ``starts[n]`` and ``lengths[n]`` (int32,
    on the tokens' device; built once per layout, since a copy to a GPU makes the host wait).
    """

    shapes: tuple[tuple[int, int], ...]
    starts: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def of(cls, shapes: Sequence[tuple[int, int]], device: torch.device | str = "cpu") -> Sequences:
        lengths = torch.tensor([length for count, length in shapes for _ in range(count)], dtype=torch.int32)
        starts = torch.cumsum(lengths, 0, dtype=torch.int32) - lengths
        return cls(tuple((int(c), int(n)) for c, n in shapes), starts.to(device), lengths.to(device))

    @property
    def count(self) -> int:
        """How many sequences in all (the rows of the packed states)."""
        return sum(count for count, _ in self.shapes)

    @property
    def longest(self) -> int:
        return max(length for _, length in self.shapes)

    def split(self, packed: torch.Tensor) -> list[torch.Tensor]:
        """Per group, the view [count, length, ...] of a packed [tokens, ...] tensor."""
        views, at = [], 0
        for count, length in self.shapes:
            views.append(packed[at : at + count * length].unflatten(0, (count, length)))
            at += count * length
        return views

    def split_states(self, states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per group, its rows of states over all sequences [count, ...]."""
        return states.split([count for count, _ in self.shapes])


def _stacked(states: Sequence[torch.Tensor] | None) -> torch.Tensor | None:
    """The groups' states as the rows of one tensor (a group alone needs no copy)."""
    if states is None:
        return None
    return states[0] if len(states) == 1 else torch.cat(tuple(states))


def _groupwise(
    sequences: Sequences,
    per_token: Sequence[torch.Tensor | None],
    states: Sequence[torch.Tensor] | None,
    run: Callable[..., tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """``run(*group's views, group's state)`` for each group; outputs packed again, states per group."""
    views = [[None] * len(sequences.shapes) if t is None else sequences.split(t) for t in per_token]
    results = [run(*group, None if states is None else states[g]) for g, group in enumerate(zip(*views))]
    outputs = [y.flatten(0, 1) for y, _ in results]
    return torch.cat(outputs) if len(outputs) > 1 else outputs[0], tuple(state for _, state in results)


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def resolve_backend(x: torch.Tensor, backend: str, needs_grad: bool = False) -> str:
    """The implementation that runs for ``backend`` on ``x``: 'torch', 'cuda' (mamba-ssm) or 'triton'.

    'auto' on a GPU prefers Triton for inference: it starts from the state in one launch,
    where mamba-ssm's scan starts from zero and needs the state's response added after.
    Triton has no backward, so training (``needs_grad``) takes mamba-ssm's kernels when
    installed, else the differentiable PyTorch scan; forcing 'triton' there is an error.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cuda" and not (kernels_available() and x.is_cuda):
        raise RuntimeError(
            "backend='cuda' needs mamba-ssm and causal-conv1d built with CUDA and tensors on a GPU; "
            "install the 'gpu' extra (pip install 'tv3s[gpu]') or use backend='auto'"
        )
    if backend == "triton":
        refusal = _triton_refusal(x)
        if refusal is None and needs_grad:
            refusal = "backend='triton' is inference-only (no backward); train with backend='auto' or 'torch'"
        if refusal is not None:
            raise RuntimeError(refusal)
    if backend != "auto":
        return backend
    if not x.is_cuda:
        return "torch"
    if not needs_grad and _triton_refusal(x) is None:
        return "triton"
    return "cuda" if kernels_available() else "torch"


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_state: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv + SiLU over ``x`` [N, L, D] continuing from ``conv_state`` [N, K-1, D].

    Prepending the state to the input and convolving without padding is exactly the
    convolution over the whole stream; a zero state equals the official zero padding.
    Token-major layout (the layout of the mixer's projections). Returns the activations
    [N, L, D] and the new state (the last K-1 inputs).
    """
    n, length, d = x.shape
    k = weight.shape[-1]
    chosen = resolve_backend(x, backend, _needs_grad(x, weight, bias, conv_state))
    if chosen == "triton":
        return _triton_module().causal_conv1d(x, weight, bias, conv_state)
    if conv_state is None:
        conv_state = x.new_zeros(n, k - 1, d)
    extended = torch.cat([conv_state.to(x.dtype), x], dim=1)
    new_state = extended[:, extended.shape[1] - (k - 1) :].contiguous()
    w2d = weight.reshape(d, k)
    if chosen == "cuda":
        _, conv_fn = _cuda_kernels()
        y = conv_fn(extended.transpose(1, 2).contiguous(), w2d, bias, activation="silu")[..., k - 1 :]
        return y.transpose(1, 2), new_state
    # K shifted multiply-adds: cross-correlation y[t] = b + Σ_j w[j] · x_ext[t + j].
    y = extended[:, :length] * w2d[:, 0]
    for j in range(1, k):
        y = y.addcmul_(extended[:, j : j + length], w2d[:, j])
    if bias is not None:
        y = y.add_(bias)
    return F.silu(y, inplace=True), new_state


def causal_conv1d_packed(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    sequences: Sequences,
    conv_states: Sequence[torch.Tensor] | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """:func:`causal_conv1d` over every sequence of a packed ``x`` [P, D] (see :class:`Sequences`),
    each group continuing from its state [count, K-1, D]: activations [P, D], states per group.
    One launch for all groups with the Triton kernel."""
    chosen = resolve_backend(x, backend, _needs_grad(x, weight, bias, *(conv_states or ())))
    if chosen == "triton":
        y, new_state = _triton_module().causal_conv1d(x, weight, bias, _stacked(conv_states), sequences)
        return y, sequences.split_states(new_state)
    return _groupwise(sequences, [x], conv_states, lambda xg, sg: causal_conv1d(xg, weight, bias, sg, chosen))


def _chunk_len(n: int, d: int, s: int, length: int) -> int:
    return max(1, min(length, _MAX_CHUNK, _CHUNK_ELEMENTS // max(1, n * d * s)))


def _as_chunks(u: torch.Tensor, delta: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The L tokens as M chunks of K = ⌈√L⌉: Δ and u [N,M,K,D], B [N,M,K,1,S], C [N,M,K,S,1].

    The tail is padded with Δ = 0 tokens: decay 1 and input 0, so they change nothing.
    """
    n, length, d = u.shape
    s = B.shape[-1]
    k = math.isqrt(length - 1) + 1
    m = -(-length // k)
    pad = m * k - length
    if pad:
        u, delta = F.pad(u, (0, 0, 0, pad)), F.pad(delta, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, pad)), F.pad(C, (0, 0, 0, pad))
    return (delta.reshape(n, m, k, d), u.reshape(n, m, k, d), B.reshape(n, m, k, 1, s), C.reshape(n, m, k, s, 1))


def _scan_block(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block of L tokens in two levels, in place: u, delta [N,L,D]; B, C [N,L,S]; h [N,D,S].

    The block is cut into M chunks of K ≈ √L tokens. K sequential steps run the recurrence
    inside every chunk at once from a zero state; M steps carry the chunk-end states
    forward; each chunk's states then get its incoming carry times the decay since the
    chunk's start. Only products of decays ≤ 1 appear (no division by a decay, so no
    overflow whatever Δ is, and no data-dependent splitting or host sync), in K + M + ~10
    tensor operations instead of L steps.
    """
    n, length, d = u.shape
    s = A.shape[1]
    dl, uc, Bc, Cc = _as_chunks(u, delta, B, C)
    m, k = dl.shape[1:3]
    decay = torch.exp_(dl.unsqueeze(-1) * A)  # [N, M, K, D, S]: one token's decay
    states = (dl * uc).unsqueeze(-1) * Bc
    for j in range(1, k):  # states within each chunk, from zero
        states[:, :, j].addcmul_(decay[:, :, j], states[:, :, j - 1])
    torch.mul(torch.cumsum(dl, dim=2).unsqueeze(-1), A, out=decay).exp_()  # decay since the chunk's start
    carries = h.new_empty(n, m, d, s)  # the state entering each chunk
    carries[:, 0] = h
    for j in range(1, m):
        torch.addcmul(states[:, j - 1, -1], decay[:, j - 1, -1], carries[:, j - 1], out=carries[:, j])
    states.addcmul_(decay, carries.unsqueeze(2))
    y = torch.matmul(states, Cc).reshape(n, m * k, d)[:, :length]
    return y, states[:, -1, -1].clone()


def _scan_steps(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block token by token, in place: the decays and inputs of all its tokens at once,
    then one multiply-add per token on [N, D, S], then every y at once (the CPU block)."""
    decay = torch.exp_(delta.unsqueeze(-1) * A)  # [N, L, D, S]
    states = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
    states[:, 0].addcmul_(decay[:, 0], h)
    for j in range(1, u.shape[1]):
        states[:, j].addcmul_(decay[:, j], states[:, j - 1])
    y = torch.matmul(states, C.unsqueeze(-1)).squeeze(-1)
    return y, states[:, -1].clone()


ScanBlock = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def scan_plan(device: torch.device) -> tuple[ScanBlock, int]:
    """How the inference scan cuts a sequence on `device`: (block algorithm, state elements per block)."""
    if device.type == "cpu":
        return _scan_steps, _CPU_BLOCK_ELEMENTS
    return _scan_block, _GPU_BLOCK_ELEMENTS


def _scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    h: torch.Tensor,
    plan: tuple[ScanBlock, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference scan: the sequence in blocks, each continuing from the state the last one left."""
    n, length, d = u.shape
    block_scan, budget = plan or scan_plan(u.device)
    block = max(1, min(length, budget // max(1, n * d * A.shape[1])))
    ys = []
    for start in range(0, length, block):
        end = start + block
        y, h = block_scan(u[:, start:end], delta[:, start:end], A, B[:, start:end], C[:, start:end], h)
        ys.append(y)
    return torch.cat(ys, dim=1) if len(ys) > 1 else ys[0], h


def _scan_torch_differentiable(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same two-level scan as :func:`_scan_block`, written for autograd.

    The inference block updates its states in place, which autograd cannot differentiate
    through; here every step makes a new tensor (about half the speed, measured), so
    gradients flow, and stay finite since only products of decays ≤ 1 appear.
    """
    n, length, d = u.shape
    s = A.shape[1]
    dl, uc, Bc, Cc = _as_chunks(u, delta, B, C)
    m, k = dl.shape[1:3]
    decay = torch.exp(dl.unsqueeze(-1) * A)  # [N, M, K, D, S]
    inputs = (dl * uc).unsqueeze(-1) * Bc
    local, state = [], h.new_zeros(n, m, d, s)
    for j in range(k):
        state = decay[:, :, j] * state + inputs[:, :, j]
        local.append(state)
    local_states = torch.stack(local, dim=2)
    cumulative = torch.exp(torch.cumsum(dl, dim=2).unsqueeze(-1) * A)  # decay since each chunk's start
    carries = [h]
    for j in range(m - 1):
        carries.append(cumulative[:, j, -1] * carries[-1] + local_states[:, j, -1])
    states = local_states + cumulative * torch.stack(carries, dim=1).unsqueeze(2)
    y = torch.matmul(states, Cc).reshape(n, m * k, d)[:, :length]
    return y, states[:, -1, -1]


def initial_state_response(
    delta: torch.Tensor, A: torch.Tensor, C: torch.Tensor, initial_state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a nonzero h_0 adds to a scan that started from zero (the scan is linear in h_0).

    y_t += C_t · (exp(A Σ_{s≤t} Δ_s) ⊙ h_0) and h_L += exp(A ΣΔ) ⊙ h_0, with Δ [N, L, D]
    already softplus-ed. Computed in chunks of tokens to bound the [N, K, D, S] working set.
    Returns (y correction [N, L, D], final-state correction [N, D, S]).
    """
    n, length, d = delta.shape
    chunk = _chunk_len(n, d, A.shape[1], length)
    cum = torch.cumsum(delta, dim=1)
    parts = []
    for start in range(0, length, chunk):
        decay = torch.exp(cum[:, start : start + chunk].unsqueeze(-1) * A)  # [N,K,D,S]
        parts.append(
            torch.matmul(decay * initial_state.unsqueeze(1), C[:, start : start + chunk].unsqueeze(-1)).squeeze(-1)
        )
    final = torch.exp(cum[:, -1].unsqueeze(-1) * A) * initial_state
    return torch.cat(parts, dim=1), final


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-1 selective scan (``delta_softplus=True``) from ``initial_state``, in float32.

    Token-major shapes: u, delta, z [N, L, D]; A [D, S]; B, C [N, L, S]; D, delta_bias [D];
    initial_state [N, D, S] (zeros when None). Returns (y [N, L, D], final state [N, D, S]).
    """
    needs_grad = _needs_grad(u, delta, A, B, C, D, z, delta_bias, initial_state)
    chosen = resolve_backend(u, backend, needs_grad)
    if chosen == "triton":  # float32 inside the kernel whatever the input dtypes
        return _triton_module().selective_scan(u, delta, A, B, C, D, z, delta_bias, initial_state)
    dtype = u.dtype
    # float32 throughout, also under bf16/fp16 autocast (which would run the y = C·h products in
    # half precision): the state that is carried and saved must not drift.
    with torch.autocast(u.device.type, enabled=False):
        u, delta, B, C, A = u.float(), delta.float(), B.float(), C.float(), A.float()
        n, _, d = u.shape
        if delta_bias is not None:
            delta = delta + delta_bias.float()
        if chosen == "cuda":
            y, last = _scan_mamba_ssm(u, delta, A, B, C, D, initial_state)
        else:
            delta = F.softplus(delta)
            h0 = u.new_zeros(n, d, A.shape[1]) if initial_state is None else initial_state.float()
            scan = _scan_torch_differentiable if needs_grad else _scan_torch
            y, last = scan(u, delta, A, B, C, h0)
            if D is not None:
                y = y + u * D.float()
        if z is not None:
            y = y * F.silu(z.float())
    return y.to(dtype), last


def selective_scan_packed(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    sequences: Sequences,
    initial_states: Sequence[torch.Tensor] | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """:func:`selective_scan` over every sequence of packed u, delta, z [P, D] and B, C [P, S]
    (see :class:`Sequences`), each group from its state [count, D, S]: y [P, D], final states
    per group. One launch for all groups with the Triton kernel."""
    needs_grad = _needs_grad(u, delta, A, B, C, D, z, delta_bias, *(initial_states or ()))
    chosen = resolve_backend(u, backend, needs_grad)
    if chosen == "triton":
        h0 = _stacked(initial_states)
        y, h = _triton_module().selective_scan(u, delta, A, B, C, D, z, delta_bias, h0, sequences=sequences)
        return y, sequences.split_states(h)

    def scan(ug, dg, bg, cg, zg, h0):
        return selective_scan(ug, dg, A, bg, cg, D, zg, delta_bias, h0, chosen)

    return _groupwise(sequences, [u, delta, B, C, z], initial_states, scan)


def _scan_mamba_ssm(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    initial_state: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """mamba-ssm's fused scan from zero plus the initial state's (linear) response; float32 inputs,
    delta before softplus, no z (the caller gates)."""
    scan_fn, _ = _cuda_kernels()
    y, last = scan_fn(
        u.transpose(1, 2).contiguous(),
        delta.transpose(1, 2).contiguous(),
        A.contiguous(),
        B.transpose(1, 2).contiguous(),
        C.transpose(1, 2).contiguous(),
        None if D is None else D.float(),
        None,
        None,
        True,
        return_last_state=True,
    )
    y = y.transpose(1, 2)
    if initial_state is not None:
        dy, dlast = initial_state_response(F.softplus(delta), A, C, initial_state.float())
        y, last = y + dy, last + dlast
    return y, last


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence written out token by token: slow, obviously right; tests and benchmarks."""
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)
    delta = F.softplus(delta)
    n, length, d = u.shape
    h = u.new_zeros(n, d, A.shape[1]) if initial_state is None else initial_state.to(dtype)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + u * D.to(dtype)
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.float(), h.float()
