"""Official TV3S checkpoints: loading them strictly, and building the model from one alone.

Official checkpoints are mmseg 0.x ``.pth`` files ``{'meta': {...}, 'state_dict': {...}}``
(optionally with a DataParallel ``module.`` prefix, weights in fp16 or fp32). They are read
with ``torch.load(weights_only=True)``: a checkpoint is data, never code. The key mapping is
the identity - our modules carry the official names - so a missing, unexpected or mis-shaped
key always means the checkpoint and the architecture disagree, and is reported by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .config import CITYSCAPES_CLASSES, HEAD_ALIASES, HeadConfig, ModelConfig, SwinConfig, resolve_config
from .mit import MIT_VARIANTS, MiTConfig
from .segmentor import TV3S


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


def build_model(cfg: str | dict[str, Any] | ModelConfig) -> TV3S:
    """A TV3S model (random weights, eval mode) from a preset name, an official-style dict or a config."""
    return TV3S(resolve_config(cfg))


def read_checkpoint(path: str | os.PathLike | bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """(state_dict without ``module.`` prefixes, meta, sha256 of the file) from a path or bytes."""
    if isinstance(path, (bytes, bytearray)):
        data, where = bytes(path), "<bytes>"
    else:
        where = str(path)
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"checkpoint {where} does not exist (or is not a file)")
        data = p.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {where} could not be read as a PyTorch weights file with weights_only=True ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); it must be a .pth holding tensors, e.g. an official TV3S/mmseg checkpoint"
        ) from exc
    if isinstance(obj, dict) and "state_dict" in obj:
        state, meta = obj["state_dict"], obj.get("meta") or {}
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, meta = obj, {}
    else:
        raise CheckpointError(
            f"checkpoint {where} holds no state_dict (expected {{'meta', 'state_dict'}} or a dict of tensors)"
        )
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {where}: 'state_dict' is not a mapping of names to tensors")
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    return state, meta if isinstance(meta, dict) else {}, digest


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_checkpoint(model: TV3S, path: str | os.PathLike | bytes) -> TV3S:
    """Load official weights into ``model`` with a strict key and shape check; returns the model.

    Weights are cast to the model's dtypes (official files are often fp16). Class names and
    palette come from the checkpoint's meta.
    """
    state, meta, digest = read_checkpoint(path)
    return _apply(model, state, meta, digest, "<bytes>" if isinstance(path, (bytes, bytearray)) else str(path))


def _apply(model: TV3S, state: dict[str, torch.Tensor], meta: dict[str, Any], digest: str, where: str) -> TV3S:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = [
        f"{k} {list(state[k].shape)} != {list(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing keys: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_names(unexpected)}")
        if misshaped:
            parts.append(f"mis-shaped keys (checkpoint != model): {_names(misshaped)}")
        raise CheckpointError(
            f"checkpoint {where} does not fit model {model.cfg.backbone}/{model.cfg.head.variant} "
            f"({model.num_classes} classes): "
            + "; ".join(parts)
            + ". Build the model from the checkpoint itself with build_model_from_checkpoint(path)."
        )
    model.load_state_dict({k: v.to(dtype=own[k].dtype) for k, v in state.items()}, strict=True)
    names, palette = _meta_classes(meta, model.num_classes, where)
    model.cfg = dataclasses.replace(
        model.cfg, class_names=names or model.cfg.class_names, palette=palette or model.cfg.palette
    )
    model.checkpoint_sha256 = digest
    return model


def _meta_classes(meta: dict[str, Any], num_classes: int, where: str) -> tuple[tuple[str, ...] | None, tuple | None]:
    names, palette = meta.get("CLASSES"), meta.get("PALETTE")
    if names is not None and len(names) != num_classes:
        warnings.warn(
            f"checkpoint {where}: meta lists {len(names)} classes but the model has {num_classes}; ignoring them",
            stacklevel=2,
        )
        names = None
    if palette is not None and len(palette) != num_classes:
        palette = None
    return (
        tuple(str(n) for n in names) if names else None,
        tuple(tuple(int(c) for c in p) for p in palette) if palette else None,
    )


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.match(k))})


def infer_config(
    state: dict[str, torch.Tensor], meta: dict[str, Any] | None = None, head_variant: str | None = None
) -> ModelConfig:
    """The architecture a state_dict was saved from, read off its keys and shapes.

    Shapes fix everything but the head variant and the window geometry, which have no
    parameters: those come from the checkpoint's saved config text when present, the
    Cityscapes class list (city head), or the published defaults (20x20 windows, real
    shift 10). ``head_variant`` overrides the variant.
    """
    meta = meta or {}
    if meta.get("tv3s_config"):  # written by tv3s train: the exact architecture
        cfg = ModelConfig.from_dict(json.loads(meta["tv3s_config"]))
        variant = HEAD_ALIASES.get(head_variant, head_variant) if head_variant else cfg.head.variant
        return dataclasses.replace(cfg, head=dataclasses.replace(cfg.head, variant=variant))
    try:
        if "backbone.patch_embed1.proj.weight" in state:
            arch: MiTConfig | SwinConfig = _infer_mit(state)
            backbone = next((n for n, c in MIT_VARIANTS.items() if c == arch), "mit_custom")
        elif "backbone.patch_embed.proj.weight" in state:
            arch = _infer_swin(state)
            backbone = {(2, 2, 6, 2): "d2_Swint", (2, 2, 18, 2): "d2_Swins"}.get(arch.depths, "d2_Swin")
        else:
            raise CheckpointError(
                "unknown backbone layout: expected MiT keys (backbone.patch_embed1.*) or Swin keys (backbone.patch_embed.*); "
                f"backbone keys start with {_names(sorted(k for k in state if k.startswith('backbone.'))[:3]) or 'nothing'}"
            )
        head = _infer_head(state, meta, head_variant)
    except KeyError as exc:
        raise CheckpointError(f"the state_dict lacks {exc.args[0]!r}, which every TV3S checkpoint has") from exc
    expected = arch.embed_dims if isinstance(arch, MiTConfig) else arch.out_channels
    if tuple(head.in_channels) != tuple(expected):
        raise CheckpointError(
            f"decode_head.linear_c* take {list(head.in_channels)} channels but the backbone gives {list(expected)}"
        )
    return ModelConfig(backbone, arch, head)


def _infer_mit(state: dict[str, torch.Tensor]) -> MiTConfig:
    dims = tuple(int(state[f"backbone.patch_embed{i}.proj.weight"].shape[0]) for i in range(1, 5))
    patch = tuple(int(state[f"backbone.patch_embed{i}.proj.weight"].shape[-1]) for i in range(1, 5))
    depths = tuple(_count(state, rf"backbone\.block{i}\.(\d+)\.") for i in range(1, 5))
    sr = tuple(
        int(state[f"backbone.block{i}.0.attn.sr.weight"].shape[-1])
        if f"backbone.block{i}.0.attn.sr.weight" in state
        else 1
        for i in range(1, 5)
    )
    mlp = tuple(int(state[f"backbone.block{i}.0.mlp.fc1.weight"].shape[0]) // dims[i - 1] for i in range(1, 5))
    base = MiTConfig()
    return MiTConfig(
        embed_dims=dims,
        num_heads=base.num_heads,
        depths=depths,
        sr_ratios=sr,
        mlp_ratios=mlp,
        patch_sizes=patch,
        strides=base.strides,
        qkv_bias="backbone.block1.0.attn.q.bias" in state,
    )


def _infer_swin(state: dict[str, torch.Tensor]) -> SwinConfig:
    proj = state["backbone.patch_embed.proj.weight"]
    embed = int(proj.shape[0])
    n_layers = _count(state, r"backbone\.layers\.(\d+)\.")
    depths = tuple(_count(state, rf"backbone\.layers\.{i}\.blocks\.(\d+)\.") for i in range(n_layers))
    heads = tuple(
        int(state[f"backbone.layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1]) for i in range(n_layers)
    )
    table = int(state["backbone.layers.0.blocks.0.attn.relative_position_bias_table"].shape[0])
    window = (int(round(table**0.5)) + 1) // 2
    hidden = int(state["backbone.layers.0.blocks.0.mlp.fc1.weight"].shape[0])
    return SwinConfig(
        embed_dim=embed,
        depths=depths,
        num_heads=heads,
        window_size=window,
        mlp_ratio=hidden / embed,
        qkv_bias="backbone.layers.0.blocks.0.attn.qkv.bias" in state,
        patch_size=int(proj.shape[-1]),
    )


def _infer_head(state: dict[str, torch.Tensor], meta: dict[str, Any], head_variant: str | None) -> HeadConfig:
    pred2 = state["decode_head.linear_pred2.weight"]
    num_classes, embed = int(pred2.shape[0]), int(pred2.shape[1])
    mixer = "decode_head.vs.layers.0.mixer."
    d_inner = int(state[mixer + "D"].shape[0])
    text = str(meta.get("config", ""))
    variant = head_variant or _config_value(text, r"type\s*=\s*'(\w*Head_shift\w*)'")
    if variant is None:
        variant = "TV3SHead_shift_city" if tuple(meta.get("CLASSES") or ()) == CITYSCAPES_CLASSES else "TV3SHead_shift"
    variant = HEAD_ALIASES.get(variant, variant)
    window_w = _config_value(text, r"window_w\s*=\s*(\d+)")
    window_h = _config_value(text, r"window_h\s*=\s*(\d+)")
    shift = _config_value(text, r"shift_size\s*=\s*(\d+)")
    real_shift = _config_value(text, r"real_shift\s*=\s*(True|False)")
    num_clips = _config_value(text, r"num_clips\s*=\s*(\d+)")
    defaults = HeadConfig()
    return HeadConfig(
        variant=variant,
        in_channels=tuple(int(state[f"decode_head.linear_c{i}.proj.weight"].shape[1]) for i in range(1, 5)),
        channels=int(state["decode_head.conv_seg.weight"].shape[1]),
        num_classes=num_classes,
        embed_dim=embed,
        window_h=int(window_h) if window_h else defaults.window_h,
        window_w=int(window_w) if window_w else defaults.window_w,
        shift_size=int(shift) if shift else defaults.shift_size,
        real_shift=(real_shift == "True") if real_shift else defaults.real_shift,
        n_mambas=_count(state, r"decode_head\.vs\.layers\.(\d+)\."),
        num_clips=int(num_clips) if num_clips else defaults.num_clips,
        d_state=int(state[mixer + "A_log"].shape[1]),
        d_conv=int(state[mixer + "conv1d.weight"].shape[-1]),
        expand=d_inner // embed,
        dt_rank=int(state[mixer + "dt_proj.weight"].shape[1]),
    )


def _config_value(text: str, pattern: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(1) if m else None


def build_model_from_checkpoint(path: str | os.PathLike | bytes, head_variant: str | None = None) -> TV3S:
    """Build the architecture a checkpoint was saved from and load it (strict)."""
    state, meta, digest = read_checkpoint(path)
    model = TV3S(infer_config(state, meta, head_variant))
    return _apply(model, state, meta, digest, "<bytes>" if isinstance(path, (bytes, bytearray)) else str(path))
