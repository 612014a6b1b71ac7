"""Every preset's parameter count: the official measured counts, and an analytic derivation.

The analytic counts are written from the architecture (layer by layer), independently of the
modules, so a wrong width, depth or missing layer in a preset shows up here.
"""

from __future__ import annotations

import math

import pytest
import torch

from tv3s.model import PRESETS, build_model
from tv3s.model.mit import MiTConfig

from .test_swin_backbone import analytic_swin_params

# Measured by running the official TV3S code (issue 2 / issue 9).
OFFICIAL = {"tv3s-b1-city": 17_193_849, "tv3s-b1-vspw": 17_261_364, "tv3s-swins-vspw": 53_055_038}


def mit_params(cfg: MiTConfig) -> int:
    total, cin = 0, 3
    for c, depth, sr, mlp, k in zip(cfg.embed_dims, cfg.depths, cfg.sr_ratios, cfg.mlp_ratios, cfg.patch_sizes):
        total += k * k * cin * c + c + 2 * c  # overlapping patch embedding conv + LayerNorm
        hidden = mlp * c
        block = 2 * c + (c * c + c) + (2 * c * c + 2 * c) + (c * c + c) + 2 * c  # norm1, q, kv, proj, norm2
        if sr > 1:
            block += sr * sr * c * c + c + 2 * c  # spatial-reduction conv + its LayerNorm
        block += (c * hidden + hidden) + (9 * hidden + hidden) + (hidden * c + c)  # fc1, 3x3 dwconv, fc2
        total += depth * block + 2 * c  # blocks + stage norm
        cin = c
    return total


def head_params(in_channels, classes, e=256, n=8, s=16, k=4, expand=2, channels=128) -> int:
    d_inner, rank = expand * e, math.ceil(e / 16)
    mixer = e * 2 * d_inner + (d_inner * k + d_inner) + d_inner * (rank + 2 * s) + (rank * d_inner + d_inner)
    mixer += d_inner * s + d_inner + d_inner * e  # A_log, D, out_proj
    return (
        channels * classes
        + classes  # conv_seg (unused, in every checkpoint)
        + sum(c * e + e for c in in_channels)  # linear_c1..4
        + 4 * e * e
        + 2 * e  # linear_fuse: 1x1 conv without bias + BN affine
        + 2 * (e * classes + classes)  # linear_pred, linear_pred2
        + n * (mixer + e)
        + e  # Mamba blocks (mixer + RMSNorm) + norm_f
    )


def analytic(name: str) -> int:
    cfg = PRESETS[name]
    if isinstance(cfg.backbone_arch, MiTConfig):
        backbone = mit_params(cfg.backbone_arch)
    else:
        a = cfg.backbone_arch
        backbone = analytic_swin_params(a.embed_dim, a.depths, a.num_heads)
    return backbone + head_params(cfg.head.in_channels, cfg.head.num_classes, e=cfg.head.embed_dim, n=cfg.head.n_mambas)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_count_matches_derivation(name):
    with torch.device("meta"):
        model = build_model(name)
    count = sum(p.numel() for p in model.parameters())
    assert count == analytic(name)
    if name in OFFICIAL:
        assert count == OFFICIAL[name]
