"""Which tokens of the decoder's grid form one Mamba sequence, layer by layer.

TV3S runs its Mamba blocks over spatial windows of the (frame-stacked) feature grid:
even layers use plain ``window_h × window_w`` windows; odd layers use shifted windows. With
the official "real shift", the grid is rolled by ``-shift`` and the windows that would
wrap around the border are split into separate sub-windows (the official code's pieces
``a1, b3, c3, d, b1, b2, c1, c2``), each its own sequence with its own state. Without it
("expand" shift) odd layers use larger ``(window + shift)`` windows.

Everything here is expressed as integer index maps into the row-major ``H × W`` grid: a
*group* is a tensor [n, L] of the token indices of n sequences of equal length L (in the
window's row-major order, already accounting for the roll). Sequences of equal length are
merged into one group; a layer's groups are then packed into one token order
(:func:`layer_packing`), so the mixer runs once per layer whatever the pieces. The maps
depend only on the geometry (and the batch's shape), so they are computed once and cached.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from .ssm import Sequences


@dataclass(frozen=True)
class WindowGeometry:
    """The decoder grid and its windowing; determines every layer's partition."""

    height: int
    width: int
    window_h: int
    window_w: int
    shift: int
    real_shift: bool

    def __post_init__(self) -> None:
        if self.real_shift and not (
            0 < self.shift < min(self.window_h, self.window_w) or self.shift == self.window_h == self.window_w
        ):
            raise ValueError(
                f"real shift needs 0 < shift_size < window size (or shift == window), got shift {self.shift} "
                f"for windows {self.window_h}x{self.window_w}"
            )
        step_h, step_w = self.grid_multiple()
        if self.height % step_h or self.width % step_w or self.height <= 0 or self.width <= 0:
            raise ValueError(f"grid {self.height}x{self.width} is not a positive multiple of {step_h}x{step_w}")

    def grid_multiple(self) -> tuple[int, int]:
        """The grid must be a multiple of both window sizes (the official lcm rule)."""
        if self.real_shift:
            return self.window_h, self.window_w
        return (
            math.lcm(self.window_h, self.window_h + self.shift),
            math.lcm(self.window_w, self.window_w + self.shift),
        )


def _tile(grid: torch.Tensor, r0: int, r1: int, c0: int, c1: int, ph: int, pw: int) -> torch.Tensor | None:
    """Windows of ph × pw over grid[r0:r1, c0:c1] as [n, ph*pw] (None when the piece is empty)."""
    if r1 <= r0 or c1 <= c0:
        return None
    piece = grid[r0:r1, c0:c1]
    nh, nw = (r1 - r0) // ph, (c1 - c0) // pw
    return piece.reshape(nh, ph, nw, pw).permute(0, 2, 1, 3).reshape(nh * nw, ph * pw)


def _merge_by_length(pieces: list[torch.Tensor | None]) -> tuple[torch.Tensor, ...]:
    by_len: dict[int, list[torch.Tensor]] = {}
    for p in pieces:
        if p is not None:
            by_len.setdefault(p.shape[1], []).append(p)
    return tuple(torch.cat(by_len[k], dim=0) for k in sorted(by_len, reverse=True))


@functools.lru_cache(maxsize=64)
def layer_groups(geom: WindowGeometry, shifted: bool) -> tuple[torch.Tensor, ...]:
    """Index groups (each [n, L], int64, CPU) covering every grid token exactly once.

    Built outside inference mode even when first asked for inside it: the cache outlives
    the call, and inference tensors could not be used by a later training step.
    """
    with torch.inference_mode(False):
        return _build_groups(geom, shifted)


@dataclass(frozen=True, eq=False)
class LayerPacking:
    """One layer's window sequences, for B videos of T frames, packed as its mixer takes them.

    Packed token p is flat token ``order[p]`` of the layer's [B, T, H*W] tokens, and flat token i
    is packed token ``inverse[i]``: one gather each way. The packed order is group after group
    (:func:`layer_groups`), then video, window, frame, and the window's tokens.
    """

    order: torch.Tensor
    inverse: torch.Tensor
    sequences: Sequences


@functools.lru_cache(maxsize=32)
def layer_packing(geom: WindowGeometry, shifted: bool, videos: int, frames: int, device: torch.device) -> LayerPacking:
    """The packing of a layer's tokens on ``device``, built and copied there once per shape: a
    copy from host memory every layer would make the host wait there for all the GPU work
    queued before it (torch synchronises a blocking host-to-device copy), so it could no longer
    launch ahead of the GPU. Built outside inference mode, as :func:`layer_groups` is."""
    with torch.inference_mode(False):
        groups = layer_groups(geom, shifted)
        first = (torch.arange(videos)[:, None] * frames + torch.arange(frames)) * (geom.height * geom.width)
        order = torch.cat([(first[:, None, :, None] + idx[None, :, None, :]).reshape(-1) for idx in groups])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel())
        shapes = [(videos * idx.shape[0], frames * idx.shape[1]) for idx in groups]
        # int32 (index_select takes it): half the memory of int64 in each of the cache's entries
        return LayerPacking(
            order.to(device, torch.int32), inverse.to(device, torch.int32), Sequences.of(shapes, device)
        )


def _build_groups(geom: WindowGeometry, shifted: bool) -> tuple[torch.Tensor, ...]:
    H, W, wh, ww, s = geom.height, geom.width, geom.window_h, geom.window_w, geom.shift
    grid = torch.arange(H * W).reshape(H, W)
    if not shifted:
        return _merge_by_length([_tile(grid, 0, H, 0, W, wh, ww)])
    if not geom.real_shift:
        return _merge_by_length([_tile(grid, 0, H, 0, W, wh + s, ww + s)])
    rolled = torch.roll(grid, shifts=(-s, -s), dims=(0, 1))
    rows = [(0, H - wh, wh), (H - wh, H - s, wh - s), (H - s, H, s)]
    cols = [(0, W - ww, ww), (W - ww, W - s, ww - s), (W - s, W, s)]
    return _merge_by_length([_tile(rolled, r0, r1, c0, c1, ph, pw) for r0, r1, ph in rows for c0, c1, pw in cols])
