"""Swin Transformer backbone as used by the official TV3S code (``d2_Swint`` / ``d2_Swins``).

TV3S takes its Swin backbone from the detectron2 / "Swin for segmentation" variant
(``D2SwinTransformer``), not from the classification repository and not from
mmseg's own ``SwinTransformer``. The differences from those matter numerically and
are reproduced here on purpose:

* every token map is zero-padded right/bottom to a multiple of the window size
  *after* ``norm1``; the padded tokens are **not** masked out of the attention, so
  they act as keys/values made of the qkv bias alone;
* odd blocks use the cyclic shift ``window_size // 2`` in every stage, including
  stages whose token grid is not larger than one window (the classification
  code switches the shift off there, this variant does not);
* the shifted-window mask uses ``-100`` (not ``-inf``) and is built on the padded
  size;
* each stage output goes through its own LayerNorm (``norm{i}``) before patch
  merging is applied to the *un-normalised* stage output;
* LayerNorm eps is 1e-5 everywhere.

Parameter and buffer names follow the official module tree exactly so that the
mmseg checkpoints load with ``strict=True`` once the ``backbone.`` prefix is
stripped. Dropout and stochastic depth are omitted: they have no parameters and
are identities at inference.

Internally the token maps are kept channels-last, ``[B, H, W, C]``, which is the
layout LayerNorm, Linear, padding and window partitioning all want.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SwinBackbone"]

#: Logit offset for token pairs from different shift regions (official value; -inf is
#: equivalent in float32 but -100 is what the checkpoints were trained with).
MASK_VALUE = -100.0


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad a ``[B, H, W, C]`` map at the bottom/right so H and W divide ``multiple``."""
    _, h, w, _ = x.shape
    pad_h = -h % multiple
    pad_w = -w % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``[B, Hp, Wp, C]`` -> ``[B, nW, ws*ws, C]``; windows row-major, tokens row-major inside.

    The window order (row-major over the window grid) must match the order of the
    attention mask built by :func:`shift_window_mask`.
    """
    b, hp, wp, c = x.shape
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (hp // ws) * (wp // ws), ws * ws, c)


def window_merge(windows: torch.Tensor, ws: int, hp: int, wp: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B, nW, ws*ws, C]`` -> ``[B, Hp, Wp, C]``."""
    b, _, _, c = windows.shape
    x = windows.view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, c)


def relative_position_index(ws: int) -> torch.Tensor:
    """``[ws*ws, ws*ws]`` int64 index into the ``(2*ws-1)**2`` relative-position table.

    For tokens ``a`` and ``b`` at (row, col) inside a window the entry is
    ``(row_a - row_b + ws - 1) * (2*ws - 1) + (col_a - col_b + ws - 1)``, i.e. the
    row-major position of the offset in a ``(2ws-1) x (2ws-1)`` grid. This is the
    same table layout as the official code (it is also stored in the checkpoints).
    """
    pos = torch.arange(ws * ws)
    rows, cols = pos // ws, pos % ws
    d_row = rows[:, None] - rows[None, :] + (ws - 1)
    d_col = cols[:, None] - cols[None, :] + (ws - 1)
    return d_row * (2 * ws - 1) + d_col


def shift_window_mask(
    hp: int, wp: int, ws: int, shift: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Additive mask ``[nW, ws*ws, ws*ws]`` for attention on a cyclically shifted padded map.

    After ``roll(-shift)`` every axis of the padded map splits into the regions
    ``[0, hp-ws)``, ``[hp-ws, hp-shift)`` and ``[hp-shift, hp)`` (the last one holds the
    rows that wrapped around). Two tokens of a window may attend to each other only
    if they lie in the same region along both axes; other pairs get ``MASK_VALUE``.
    The regions are defined on the *padded* size, so padding tokens belong to the
    regions like any other token (parity with the official code, which never masks
    padding).
    """

    def region(n: int) -> torch.Tensor:
        idx = torch.arange(n, device=device)
        return (idx >= n - ws).long() + (idx >= n - shift).long()  # 0, 1 or 2

    labels = region(hp)[:, None] * 3 + region(wp)[None, :]  # [hp, wp]
    labels = window_partition(labels[None, :, :, None], ws).squeeze(-1)[0]  # [nW, N]
    different = labels[:, :, None] != labels[:, None, :]
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill_(different, MASK_VALUE)


# --------------------------------------------------------------------------- modules


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` conv embedding followed by LayerNorm (``patch_norm=True``)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, eps: float) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, ceil(H/p), ceil(W/p), C]``; the image is zero-padded right/bottom."""
        h, w = x.shape[-2:]
        p = self.patch_size
        x = F.pad(x, (0, -w % p, 0, -h % p))
        x = self.proj(x).permute(0, 2, 3, 1)
        return self.norm(x)


class Mlp(nn.Module):
    """``fc1 -> GELU (exact erf form) -> fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``ws x ws`` windows with a learned relative position bias.

    All windows of all images are processed by batched matmuls (no loop over windows).
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.empty((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Persistent: the official checkpoints contain it, and strict loading expects it.
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def relative_position_bias(self) -> torch.Tensor:
        """``[heads, N, N]`` bias gathered from the table (N = ws*ws)."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, nW, N, C]`` windows; ``mask``: additive ``[nW, N, N]`` or ``None``.

        The attention is written out (scale q, matmul, add bias, add mask, softmax) in
        the official order rather than calling ``F.scaled_dot_product_attention``: with
        N = 49 the logits are small, and this order reproduces the official float32
        outputs bit for bit on CPU (SDPA differs by a few 1e-6).
        """
        b, nw, n, c = x.shape
        h = self.num_heads
        # qkv is one Linear(C, 3C) whose output is laid out [q | k | v], each split into heads.
        qkv = self.qkv(x).view(b, nw, n, 3, h, c // h).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)  # each [B, nW, heads, N, d]
        logits = (q * self.scale) @ k.transpose(-2, -1)  # [B, nW, heads, N, N]
        logits = logits + self.relative_position_bias()  # [heads, N, N], same for every window
        if mask is not None:
            logits = logits + mask.unsqueeze(1)  # [nW, 1, N, N], same for every image and head
        out = logits.softmax(dim=-1) @ v  # [B, nW, heads, N, d]
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention block followed by a pre-norm MLP."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float, qkv_bias: bool, eps: float
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError("shift_size must be in [0, window_size)")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: ``[B, H, W, C]``; ``shift_mask``: mask for the padded size (used only if shifted)."""
        _, h, w, _ = x.shape
        ws, s = self.window_size, self.shift_size
        # Pad after norm1 (the padded tokens are zeros, not normalised zeros), and do not
        # mask them: they stay visible as keys/values, as in the official code.
        y = _pad_to_multiple(self.norm1(x), ws)
        hp, wp = y.shape[1:3]
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = self.attn(window_partition(y, ws), shift_mask if s else None)
        y = window_merge(y, ws, hp, wp)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + y[:, :h, :w]
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 space-to-depth, LayerNorm(4C), Linear(4C -> 2C, no bias); odd sizes are zero-padded first."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` -> ``[B, ceil(H/2), ceil(W/2), 2C]``."""
        x = _pad_to_multiple(x, 2)
        # The channel order (even row/even col, odd/even, even/odd, odd/odd) is fixed by
        # the trained reduction weights: column-major over the 2x2 cell.
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """``depth`` blocks alternating shift 0 / ``window_size // 2``, then optional patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        eps: float,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, 0 if j % 2 == 0 else self.shift_size, mlp_ratio, qkv_bias, eps)
            for j in range(depth)
        )
        self.downsample = PatchMerging(dim, eps) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(stage output [B,H,W,C], input of the next stage)``."""
        _, h, w, _ = x.shape
        ws = self.window_size
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        # One mask per forward, shared by the stage's shifted blocks; recomputing it keeps
        # the module free of size-dependent state (it costs O(Hp*Wp) next to the blocks).
        mask = shift_window_mask(hp, wp, ws, self.shift_size, x.device, x.dtype) if len(self.blocks) > 1 else None
        for blk in self.blocks:
            x = blk(x, mask)
        return x, (self.downsample(x) if self.downsample is not None else x)


class SwinBackbone(nn.Module):
    """Swin Transformer feature extractor returning four NCHW maps at strides 4, 8, 16, 32.

    ``forward(x)`` takes a normalised float image batch ``[B, in_chans, H, W]`` of any
    size (non-multiples of 4 are zero-padded right/bottom) and returns
    ``[c1, c2, c3, c4]`` with ``c_i`` of shape ``[B, out_channels[i], H_i, W_i]``,
    ``H_1 = ceil(H/4)`` and ``H_{i+1} = ceil(H_i/2)``. The official backbone returns the
    same tensors as a dict ``{0: c1, 1: c2, 2: c3, 3: c4}``.
    """

    out_channels: tuple[int, int, int, int]

    def __init__(
        self,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        patch_size: int = 4,
        in_chans: int = 3,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError("SwinBackbone has exactly four stages")
        self.in_chans = in_chans
        self.out_channels = tuple(embed_dim * 2**i for i in range(4))  # type: ignore[assignment]
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, eps)
        self.layers = nn.ModuleList(
            SwinStage(dim, depth, heads, window_size, mlp_ratio, qkv_bias, eps, downsample=i < 3)
            for i, (dim, depth, heads) in enumerate(zip(self.out_channels, depths, num_heads))
        )
        # Output norms are registered as norm0..norm3 (names are part of the checkpoint layout).
        for i, dim in enumerate(self.out_channels):
            self.add_module(f"norm{i}", nn.LayerNorm(dim, eps=eps))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected [B, {self.in_chans}, H, W], got {tuple(x.shape)}")
        x = self.patch_embed(x)
        outs: list[torch.Tensor] = []
        for i, stage in enumerate(self.layers):
            out, x = stage(x)
            # The output norm is applied to the stage output only; merging uses the raw one.
            out = getattr(self, f"norm{i}")(out)
            outs.append(out.permute(0, 3, 1, 2).contiguous())
        return outs
