"""Mix Transformer (MiT, SegFormer's encoder) with the official state_dict names.

Keys match the mmseg checkpoints TV3S ships (``backbone.patch_embed{i}``, ``backbone.block{i}``,
``backbone.norm{i}``). Inference only: dropout and stochastic depth are identities at test
time and have no parameters, so they are left out. LayerNorm eps follows the official code
exactly: ``eps`` (1e-6) for block and stage norms, PyTorch's default 1e-5 for the patch
embedding and spatial-reduction norms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MiTConfig:
    """Architecture of a MiT encoder (MiT-B0..B5 differ only in these numbers)."""

    embed_dims: tuple[int, int, int, int] = (64, 128, 320, 512)
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    depths: tuple[int, int, int, int] = (2, 2, 2, 2)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratios: tuple[int, int, int, int] = (4, 4, 4, 4)
    patch_sizes: tuple[int, int, int, int] = (7, 3, 3, 3)
    strides: tuple[int, int, int, int] = (4, 2, 2, 2)
    qkv_bias: bool = True
    eps: float = 1e-6


MIT_VARIANTS: dict[str, MiTConfig] = {
    "mit_b0": MiTConfig(embed_dims=(32, 64, 160, 256)),
    "mit_b1": MiTConfig(),
    "mit_b2": MiTConfig(depths=(3, 4, 6, 3)),
    "mit_b3": MiTConfig(depths=(3, 4, 18, 3)),
    "mit_b4": MiTConfig(depths=(3, 8, 27, 3)),
    "mit_b5": MiTConfig(depths=(3, 6, 40, 3)),
}


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlap (kernel > stride) then LayerNorm over channels."""

    def __init__(self, patch_size: int, stride: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        _, _, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class Attention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced map (sr_ratio)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, sr_ratio: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, n, heads, c // heads).transpose(1, 2)
        if self.sr_ratio > 1:
            x = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            x = self.norm(x)
        k, v = self.kv(x).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale head_dim**-0.5, as the official qk_scale=None
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DWConv(nn.Module):
    """3x3 depthwise conv on the token map (Mix-FFN's positional signal)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.fc2(F.gelu(self.dwconv(self.fc1(x), h, w)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, qkv_bias: bool, sr_ratio: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class MixVisionTransformer(nn.Module):
    """MiT encoder: four stages at strides 4/8/16/32; returns their NCHW feature maps."""

    def __init__(self, cfg: MiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        in_chans = (3,) + cfg.embed_dims[:3]
        for i in range(4):
            dim = cfg.embed_dims[i]
            setattr(
                self, f"patch_embed{i + 1}", OverlapPatchEmbed(cfg.patch_sizes[i], cfg.strides[i], in_chans[i], dim)
            )
            setattr(
                self,
                f"block{i + 1}",
                nn.ModuleList(
                    Block(dim, cfg.num_heads[i], cfg.mlp_ratios[i], cfg.qkv_bias, cfg.sr_ratios[i], cfg.eps)
                    for _ in range(cfg.depths[i])
                ),
            )
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dim, eps=cfg.eps))

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        return self.cfg.embed_dims

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        b = x.shape[0]
        for i in range(1, 5):
            x, h, w = getattr(self, f"patch_embed{i}")(x)
            for blk in getattr(self, f"block{i}"):
                x = blk(x, h, w)
            x = getattr(self, f"norm{i}")(x)
            x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
            outs.append(x)
        return outs
