"""The two recurrent primitives of a Mamba (v1) mixer, each able to start from a given state.

Upstream mamba-ssm's selective scan cannot start from a given SSM state, which is exactly
what stream inference needs: the state at the end of one chunk of frames must seed the next.
Here both primitives take a state and return the final one:

* :func:`causal_conv1d` - depthwise causal convolution whose left context is the previous
  chunk's last ``d_conv - 1`` inputs (zeros at the start of a video).
* :func:`selective_scan` - ``h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t``, ``y_t = C_t·h_t + D u_t``,
  gated by ``silu(z)``, from ``h_0 = initial_state``.

The pure-PyTorch scan is vectorised over chunks of tokens (see :func:`_scan_chunk`) and is
the path on CPU; it gives the same numbers on any machine. When mamba-ssm / causal-conv1d
CUDA kernels are importable and the tensors live on a GPU, the kernels are used instead: the
kernel scan starts from zero, and the initial state's contribution, being linear, is added
exactly afterwards (:func:`initial_state_response`).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# Largest |A|·ΣΔ allowed inside one chunk of the parallel scan: exp(-80) is still a
# normal float32, so dividing by the chunk's cumulative decay cannot overflow.
_MAX_CHUNK_LOG_DECAY = 80.0
# Elements of the [N, D, K, S] working set per chunk; keeps chunks cache-sized.
_CHUNK_ELEMENTS = 1 << 21


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


def _use_kernels(x: torch.Tensor, backend: str) -> bool:
    if backend == "torch":
        return False
    if backend == "cuda":
        if not (kernels_available() and x.is_cuda):
            raise RuntimeError(
                "backend='cuda' needs mamba-ssm and causal-conv1d built with CUDA and tensors on a GPU; "
                "install the 'gpu' extra (pip install 'tv3s[gpu]') or use backend='auto'"
            )
        return True
    if backend != "auto":
        raise ValueError(f"backend must be 'auto', 'torch' or 'cuda', got {backend!r}")
    return x.is_cuda and kernels_available()


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_state: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv + SiLU over ``x`` [N, D, L] continuing from ``conv_state`` [N, D, K-1].

    Prepending the state to the input and convolving without padding is exactly the
    convolution over the whole stream; a zero state equals the official zero padding.
    Returns the activations [N, D, L] and the new state (the last K-1 inputs).
    """
    n, d, _ = x.shape
    k = weight.shape[-1]
    if conv_state is None:
        conv_state = x.new_zeros(n, d, k - 1)
    extended = torch.cat([conv_state.to(x.dtype), x], dim=-1)
    new_state = extended[..., extended.shape[-1] - (k - 1):]
    w2d = weight.reshape(d, k)
    if _use_kernels(x, backend):
        _, conv_fn = _cuda_kernels()
        y = conv_fn(extended.contiguous(), w2d, bias, activation="silu")[..., k - 1:]
    else:
        y = F.silu(F.conv1d(extended, w2d.unsqueeze(1), bias, groups=d))
    return y, new_state.contiguous()


def _chunk_len(n: int, d: int, s: int, length: int) -> int:
    return max(1, min(length, _CHUNK_ELEMENTS // max(1, n * d * s)))


def _scan_chunk(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of K tokens in parallel: u, delta [N,D,K]; B, C [N,K,S]; h [N,D,S].

    With c_t = Σ_{s≤t} Δ_s and P_t = exp(A c_t) (the decay from the chunk start),
    h_t = P_t ⊙ (h_0 + Σ_{s≤t} (Δ_s B_s u_s) / P_s): one cumulative sum instead of K
    sequential steps. Callers keep |A c_K| ≤ 80 so that 1/P_s cannot overflow; the
    products P_t / P_s ≤ 1 are then as accurate as a sequential recurrence.
    """
    log_decay = torch.cumsum(delta, dim=-1).unsqueeze(-1) * A[:, None, :]  # [N,D,K,S], ≤ 0
    decay = torch.exp(log_decay)
    inputs = (delta * u).unsqueeze(-1) * B.unsqueeze(1)  # [N,D,K,S]
    states = decay * (h.unsqueeze(2) + torch.cumsum(inputs / decay, dim=2))
    y = torch.einsum("ndks,nks->ndk", states, C)
    return y, states[:, :, -1]


def _scan_torch(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked scan over the whole sequence, splitting chunks whose decay range is too wide."""
    n, d, length = u.shape
    Bt, Ct = B.transpose(1, 2), C.transpose(1, 2)  # [N, L, S]
    max_rate = (-A).amax(dim=1)  # [D]: the fastest decay per channel
    chunk = _chunk_len(n, d, A.shape[1], length)
    ys: list[torch.Tensor] = []
    spans = [(start, min(start + chunk, length)) for start in range(0, length, chunk)]
    pending = list(reversed(spans))
    while pending:
        start, end = pending.pop()
        dl = delta[..., start:end]
        if end - start == 1:
            decay = torch.exp(dl.unsqueeze(-1) * A[:, None, :])[:, :, 0]
            h = decay * h + (dl * u[..., start:end]) * Bt[:, start].unsqueeze(1)
            ys.append(torch.einsum("nds,ns->nd", h, Ct[:, start]).unsqueeze(-1))
            continue
        widest = (dl.sum(dim=-1).amax(dim=0) * max_rate).max()
        if widest > _MAX_CHUNK_LOG_DECAY:
            mid = (start + end) // 2
            pending.extend([(mid, end), (start, mid)])
            continue
        y, h = _scan_chunk(u[..., start:end], dl, A, Bt[:, start:end], Ct[:, start:end], h)
        ys.append(y)
    return torch.cat(ys, dim=-1), h


def initial_state_response(
    delta: torch.Tensor, A: torch.Tensor, C: torch.Tensor, initial_state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a nonzero h_0 adds to a scan that started from zero (the scan is linear in h_0).

    y_t += C_t · (exp(A Σ_{s≤t} Δ_s) ⊙ h_0) and h_L += exp(A ΣΔ) ⊙ h_0, with Δ already
    softplus-ed. Computed in chunks of tokens to bound the [N, D, K, S] working set.
    Returns (y correction [N, D, L], final-state correction [N, D, S]).
    """
    n, d, length = delta.shape
    chunk = _chunk_len(n, d, A.shape[1], length)
    cum = torch.cumsum(delta, dim=-1)
    Ct = C.transpose(1, 2)
    parts = []
    for start in range(0, length, chunk):
        decay = torch.exp(cum[..., start:start + chunk].unsqueeze(-1) * A[:, None, :])
        parts.append(torch.einsum("ndks,nds,nks->ndk", decay, initial_state, Ct[:, start:start + chunk]))
    final = torch.exp(cum[..., -1:] * A) * initial_state
    return torch.cat(parts, dim=-1), final


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

    Shapes follow mamba-ssm: u, delta, z [N, D, L]; A [D, S]; B, C [N, S, L]; D, delta_bias
    [D]; initial_state [N, D, S] (zeros when None). Returns (y [N, D, L], final state [N, D, S]).
    """
    dtype = u.dtype
    u, delta, B, C = u.float(), delta.float(), B.float(), C.float()
    A = A.float()
    n, d, _ = u.shape
    if _use_kernels(u, backend):
        scan_fn, _ = _cuda_kernels()
        y, last = scan_fn(
            u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(), C.contiguous(),
            None if D is None else D.float(), None,
            None if delta_bias is None else delta_bias.float(), True, return_last_state=True,
        )
        if initial_state is not None:
            soft = F.softplus(delta if delta_bias is None else delta + delta_bias.float()[:, None])
            dy, dlast = initial_state_response(soft, A, C, initial_state.float())
            y, last = y + dy, last + dlast
    else:
        if delta_bias is not None:
            delta = delta + delta_bias.float()[:, None]
        delta = F.softplus(delta)
        h0 = u.new_zeros(n, d, A.shape[1]) if initial_state is None else initial_state.float()
        y, last = _scan_torch(u, delta, A, B, C, h0)
        if D is not None:
            y = y + u * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype), last


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence written out token by token: slow, obviously right; tests and benchmarks."""
    u, delta, A, B, C = u.double(), delta.double(), A.double(), B.double(), C.double()
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    delta = F.softplus(delta)
    n, d, length = u.shape
    h = u.new_zeros(n, d, A.shape[1]) if initial_state is None else initial_state.double()
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.double()[:, None]
    if z is not None:
        y = y * F.silu(z.double())
    return y.float(), h.float()
