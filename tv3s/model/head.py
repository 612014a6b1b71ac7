"""The TV3S decode head (``TV3SHead_shift`` and its Cityscapes variant ``TV3SHead_shift_city``).

Per frame: the four encoder scales are projected to ``embed_dim`` (``linear_c1..4``), resized to
1/4 resolution, fused (``linear_fuse``: 1x1 conv, BN, ReLU) and resized to the Mamba grid
(half of 1/4, rounded up to whole windows). Across frames: the windowed Mamba blocks
(``vs``). Per frame again: ``linear_pred2`` and a resize back to 1/4 resolution.

The head is split into those three steps so that callers can reuse per-frame work across
clips (clip mode) and carry the temporal state (stream mode); composing them gives exactly
the official forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import HeadConfig
from .mamba import StackState, WindowedMambaStack
from .windows import WindowGeometry


class MLP(nn.Module):
    """Per-pixel linear projection of an NCHW map (official name: ``linear_c{i}.proj``)."""

    def __init__(self, input_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        return self.proj(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(n, -1, h, w)


class ConvModule(nn.Module):
    """mmcv ConvModule as used by ``linear_fuse``: 1x1 conv without bias, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, bn_eps: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class TV3SHead(nn.Module):
    """Both official head variants; they differ only in the early (no-Mamba) path."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e = cfg.embed_dim
        self.conv_seg = nn.Conv2d(cfg.channels, cfg.num_classes, 1)  # unused; present in every checkpoint
        c1, c2, c3, c4 = cfg.in_channels
        self.linear_c4 = MLP(c4, e)
        self.linear_c3 = MLP(c3, e)
        self.linear_c2 = MLP(c2, e)
        self.linear_c1 = MLP(c1, e)
        self.vs = WindowedMambaStack(
            e, cfg.n_mambas, cfg.d_state, cfg.d_conv, cfg.expand, cfg.resolved_dt_rank, cfg.norm_eps
        )
        self.linear_fuse = ConvModule(4 * e, e, cfg.bn_eps)
        self.linear_pred = nn.Conv2d(e, cfg.num_classes, 1)
        self.linear_pred2 = nn.Conv2d(e, cfg.num_classes, 1)
        self.dropout = nn.Dropout2d(cfg.dropout_ratio)  # active in training only, as in mmseg

    def geometry(self, quarter_hw: tuple[int, int]) -> WindowGeometry:
        """The Mamba grid for a 1/4-resolution map: floor(h/2) rounded up to whole windows."""
        cfg = self.cfg
        if cfg.real_shift:
            mh, mw = cfg.window_h, cfg.window_w
        else:
            mh = math.lcm(cfg.window_h, cfg.window_h + cfg.shift_size)
            mw = math.lcm(cfg.window_w, cfg.window_w + cfg.shift_size)
        h, w = quarter_hw
        return self.grid_geometry((math.ceil((h // 2) / mh) * mh, math.ceil((w // 2) / mw) * mw))

    def grid_geometry(self, grid_hw: tuple[int, int]) -> WindowGeometry:
        """The windowing of a Mamba grid of `grid_hw` tokens (as a stream state records it)."""
        cfg = self.cfg
        return WindowGeometry(*grid_hw, cfg.window_h, cfg.window_w, cfg.shift_size, cfg.real_shift)

    def fuse(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Per-frame multi-scale fusion -> [N, embed_dim, h/4, w/4]."""
        c1, c2, c3, c4 = features
        size = tuple(c1.shape[-2:])
        maps = [
            _resize(self.linear_c4(c4), size),
            _resize(self.linear_c3(c3), size),
            _resize(self.linear_c2(c2), size),
            self.linear_c1(c1),
        ]
        return self.linear_fuse(torch.cat(maps, dim=1))

    def to_grid(self, fused: torch.Tensor, geom: WindowGeometry) -> torch.Tensor:
        """Fused maps [N, E, h, w] -> Mamba grid tokens [N, H2, W2, E]."""
        return _resize(fused, (geom.height, geom.width)).permute(0, 2, 3, 1)

    def early_logits(self, fused: torch.Tensor) -> torch.Tensor:
        """The official output for a clip shorter than ``num_clips`` (no Mamba blocks run).

        ``TV3SHead_shift`` predicts with ``linear_pred``; ``TV3SHead_shift_city`` returns all
        zeros, which is not a prediction at all (callers must not present it as a label).
        """
        if self.cfg.variant == "TV3SHead_shift_city":
            n, _, h, w = fused.shape
            return fused.new_zeros(n, self.cfg.num_classes, h, w)
        return self.linear_pred(self.dropout(fused))

    def temporal(
        self, grid: torch.Tensor, geom: WindowGeometry, state: StackState | None = None, backend: str = "auto"
    ) -> tuple[torch.Tensor, StackState]:
        """Mamba blocks over [B, T, H2, W2, E] frames continuing ``state``."""
        return self.vs(grid, geom, state, backend)

    def classify(self, tokens: torch.Tensor, quarter_hw: tuple[int, int]) -> torch.Tensor:
        """Mamba outputs [N, H2, W2, E] -> logits [N, C, h/4, w/4]."""
        return _resize(self.linear_pred2(self.dropout(tokens.permute(0, 3, 1, 2))), quarter_hw)
