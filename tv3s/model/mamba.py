"""The TV3S decoder's Mamba blocks over shifted spatial windows, with explicit recurrent state.

Parameter names follow the official checkpoints (``decode_head.vs.layers.{i}.mixer.*``,
``.norm.weight``, ``decode_head.vs.norm_f.weight``). Each layer is mamba-ssm's v1 block as
TV3S wires it: residual add, RMSNorm, Mamba mixer; the last residual is added and normed by
``norm_f``. Everything except the mixer is per token, so frame-to-frame context lives only in
the mixers' conv and SSM states, one pair per window (or shifted sub-window) per layer. That
state is returned and accepted explicitly, which is what makes stream inference exact and
resumable.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .ssm import Sequences, causal_conv1d_packed, selective_scan_packed
from .windows import LayerPacking, WindowGeometry, layer_packing


class MixerState(NamedTuple):
    """Recurrent state of one mixer over a batch of sequences."""

    conv: torch.Tensor  # [N, d_conv - 1, d_inner]: the last inputs of the causal conv
    ssm: torch.Tensor  # [N, d_inner, d_state]


# Per layer, per index group (see windows.layer_groups): the state of every sequence.
StackState = tuple[tuple[MixerState, ...], ...]


class RMSNorm(nn.Module):
    """RMS normalisation with a learned scale, computed in float32 (mamba-ssm's RMSNorm)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()


class Mamba(nn.Module):
    """Mamba v1 mixer (mamba_simple.Mamba) as a function of (tokens, state)."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        # Mamba's initialisation: dt spread log-uniformly over [dt_min, dt_max] via the bias.
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def initial_state(self, n: int, device: torch.device) -> MixerState:
        """The state before the first token: zeros (= the official zero padding / zero SSM state)."""
        return MixerState(
            torch.zeros(n, self.d_conv - 1, self.d_inner, device=device),
            torch.zeros(n, self.d_inner, self.d_state, device=device),
        )

    def forward(
        self,
        x: torch.Tensor,
        sequences: Sequences,
        state: tuple[MixerState, ...] | None = None,
        backend: str = "auto",
    ) -> tuple[torch.Tensor, tuple[MixerState, ...]]:
        """x [P, d_model]: the tokens of ``sequences`` packed -> (y [P, d_model], state per group).

        Everything but the conv and the scan is per token, so it runs once over all the
        sequences whatever their lengths; so do the Triton conv and scan (see ssm.Sequences).
        """
        u, z = self.in_proj(x).chunk(2, dim=-1)  # [P, d_inner] each
        u, conv_states = causal_conv1d_packed(
            u,
            self.conv1d.weight,
            self.conv1d.bias,
            sequences,
            None if state is None else [s.conv for s in state],
            backend,
        )
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # the bias goes in as delta_bias, as in mamba-ssm
        y, ssm_states = selective_scan_packed(
            u,
            dt,
            -torch.exp(self.A_log.float()),
            B,
            C,
            self.D,
            z,
            self.dt_proj.bias,
            sequences,
            None if state is None else [s.ssm for s in state],
            backend,
        )
        return self.out_proj(y), tuple(MixerState(c, s) for c, s in zip(conv_states, ssm_states))


class MambaLayer(nn.Module):
    """One block: ``hidden = mixer(norm(residual))`` (official VideoMambaBlock, fused add-norm)."""

    def __init__(self, d_model: int, norm_eps: float, **mixer_kwargs) -> None:
        super().__init__()
        self.mixer = Mamba(d_model, **mixer_kwargs)
        self.norm = RMSNorm(d_model, eps=norm_eps)


def _mix_windows(
    mixer: Mamba,
    tokens: torch.Tensor,
    packing: LayerPacking,
    state: tuple[MixerState, ...] | None,
    backend: str,
) -> tuple[torch.Tensor, tuple[MixerState, ...]]:
    """Run ``mixer`` over every window sequence of ``tokens`` [B, T, H*W, C] (``packing`` on its device).

    A window's sequence is its tokens in (t, h, w) order: frame after frame, row-major
    inside the window (the official ``(b i j) (t h w) c`` flattening). One gather packs every
    sequence of the layer, one gather puts the outputs back: no work per window or group here.
    Sequences of a group are ordered video-major, so video b's states are rows [b*n, (b+1)*n).
    """
    packed = tokens.reshape(-1, tokens.shape[-1]).index_select(0, packing.order)
    y, new_state = mixer(packed, packing.sequences, state, backend)
    return y.index_select(0, packing.inverse).to(tokens.dtype).reshape(tokens.shape), new_state


class WindowedMambaStack(nn.Module):
    """Official ``ShiftedMambaBlocks`` (``decode_head.vs``): alternating plain / shifted windows."""

    def __init__(
        self,
        d_model: int,
        depth: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MambaLayer(d_model, norm_eps, d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank)
            for _ in range(depth)
        )
        self.norm_f = RMSNorm(d_model, eps=norm_eps)

    def forward(
        self, x: torch.Tensor, geom: WindowGeometry, state: StackState | None = None, backend: str = "auto"
    ) -> tuple[torch.Tensor, StackState]:
        """x [B, T, H, W, C] (T frames continuing ``state``) -> (y [B, T, H, W, C], new state)."""
        b, t, h, w, c = x.shape
        hidden = x.reshape(b, t, h * w, c).float()
        residual: torch.Tensor | None = None
        new_state: list[tuple[MixerState, ...]] = []
        for i, layer in enumerate(self.layers):
            residual = hidden if residual is None else residual + hidden
            packing = layer_packing(geom, i % 2 == 1, b, t, x.device)
            hidden, layer_state = _mix_windows(
                layer.mixer, layer.norm(residual), packing, None if state is None else state[i], backend
            )
            new_state.append(layer_state)
        out = self.norm_f(hidden if residual is None else residual + hidden)
        return out.reshape(b, t, h, w, c), tuple(new_state)
