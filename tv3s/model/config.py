"""Model configurations: the published TV3S presets and the official config dict format.

A configuration is a frozen value. ``ModelConfig.from_dict`` accepts the format of the
shared fixtures' ``config.json["model"]`` (itself a flattening of the official mmseg
configs), so a config written by the official tooling can be used as is; unknown model
variants the official code has but TV3S never published (bidirectional, zigzag, ...) are
refused with a message naming the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..schemas.classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from .mit import MIT_VARIANTS, MiTConfig

HEAD_VARIANTS = ("TV3SHead_shift", "TV3SHead_shift_city")
# Names the official Swin configs use for the same two heads (VSFM was the method's earlier name).
HEAD_ALIASES = {"VSFMHead_shift": "TV3SHead_shift", "VSFMHead_shift_city": "TV3SHead_shift_city"}


@dataclass(frozen=True)
class SwinConfig:
    """Architecture of the official ``d2_Swin*`` backbone."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    patch_size: int = 4
    eps: float = 1e-5

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        c = self.embed_dim
        return (c, 2 * c, 4 * c, 8 * c)


SWIN_VARIANTS: dict[str, SwinConfig] = {
    "d2_Swint": SwinConfig(),
    "d2_Swins": SwinConfig(depths=(2, 2, 18, 2)),
}


@dataclass(frozen=True)
class HeadConfig:
    """The TV3S decode head: MLP fusion of four scales, then windowed Mamba blocks."""

    variant: str = "TV3SHead_shift"
    in_channels: tuple[int, int, int, int] = (64, 128, 320, 512)
    channels: int = 128  # width of mmseg's unused conv_seg; kept so checkpoints load strictly
    num_classes: int = 124
    embed_dim: int = 256
    window_h: int = 20
    window_w: int = 20
    shift_size: int = 10
    real_shift: bool = True
    n_mambas: int = 8
    num_clips: int = 4
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None
    norm_eps: float = 1e-5
    bn_eps: float = 1e-5
    dropout_ratio: float = 0.1  # training only (Dropout2d before both classifiers)

    @property
    def resolved_dt_rank(self) -> int:
        return self.dt_rank or math.ceil(self.embed_dim / 16)


@dataclass(frozen=True)
class ModelConfig:
    """A whole TV3S model: backbone name and architecture, head, class names and palette."""

    backbone: str
    backbone_arch: MiTConfig | SwinConfig
    head: HeadConfig
    class_names: tuple[str, ...] | None = None
    palette: tuple[tuple[int, int, int], ...] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The official-style dict (round-trips through :meth:`from_dict`)."""
        arch = dataclasses.asdict(self.backbone_arch)
        if isinstance(self.backbone_arch, MiTConfig):
            arch["layernorm_eps"] = arch.pop("eps")
        head = self.head
        return {
            "backbone": self.backbone,
            "backbone_arch": arch,
            "decode_head": head.variant,
            "in_channels": list(head.in_channels),
            "channels": head.channels,
            "dropout_ratio": head.dropout_ratio,
            "num_classes": head.num_classes,
            "num_clips": head.num_clips,
            "decoder_params": {
                "embed_dim": head.embed_dim,
                "window_h": head.window_h,
                "window_w": head.window_w,
                "shift_size": head.shift_size,
                "real_shift": head.real_shift,
                "n_mambas": head.n_mambas,
                "model_type": 0,
            },
            "mamba": {
                "d_state": head.d_state,
                "d_conv": head.d_conv,
                "expand": head.expand,
                "dt_rank": head.resolved_dt_rank,
            },
            "mamba_block": {"norm_eps": head.norm_eps},
            "norm_cfg": {"type": "SyncBN", "eps": head.bn_eps},
            **({"class_names": list(self.class_names)} if self.class_names else {}),
        }

    def fingerprint(self) -> str:
        """Stable hash of the architecture (not the weights), for state compatibility checks."""
        d = self.to_dict()
        d.pop("class_names", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Parse the fixture / official format; raise ``ValueError`` naming the bad field."""
        if not isinstance(d, dict):
            raise ValueError(f"a model config must be a dict, got {type(d).__name__}")
        backbone = _require(d, "backbone", str)
        arch = _parse_backbone(backbone, d.get("backbone_arch") or {})
        head = _parse_head(d, arch)
        names = d.get("class_names")
        if names is not None and len(names) != head.num_classes:
            raise ValueError(f"class_names has {len(names)} entries but num_classes is {head.num_classes}")
        return cls(backbone, arch, head, tuple(names) if names else None)


def _parse_backbone(backbone: str, arch_in: dict[str, Any]) -> MiTConfig | SwinConfig:
    """The backbone's architecture: a named variant's, with the fields ``backbone_arch`` gives replaced."""
    if backbone in MIT_VARIANTS or backbone.startswith("mit"):
        return _parse_mit(backbone, arch_in)
    if backbone in SWIN_VARIANTS:
        return _parse_swin(SWIN_VARIANTS[backbone], arch_in)
    raise ValueError(
        f"backbone {backbone!r} is not supported; use one of {sorted(MIT_VARIANTS) + sorted(SWIN_VARIANTS)}"
    )


def _parse_mit(backbone: str, arch_in: dict[str, Any]) -> MiTConfig:
    """A MiT architecture; a name outside MIT_VARIANTS (a custom ``mit*``) needs its ``backbone_arch``."""
    base = MIT_VARIANTS.get(backbone, MiTConfig())
    arch = MiTConfig(
        embed_dims=_tuple(arch_in, "embed_dims", base.embed_dims),
        num_heads=_tuple(arch_in, "num_heads", base.num_heads),
        depths=_tuple(arch_in, "depths", base.depths),
        sr_ratios=_tuple(arch_in, "sr_ratios", base.sr_ratios),
        mlp_ratios=_tuple(arch_in, "mlp_ratios", base.mlp_ratios),
        patch_sizes=_tuple(arch_in, "patch_sizes", base.patch_sizes),
        strides=_tuple(arch_in, "strides", base.strides),
        qkv_bias=bool(arch_in.get("qkv_bias", base.qkv_bias)),
        eps=float(arch_in.get("layernorm_eps", arch_in.get("eps", base.eps))),
    )
    if backbone not in MIT_VARIANTS and not arch_in:
        raise ValueError(
            f"backbone {backbone!r}: unknown MiT variant; use one of {sorted(MIT_VARIANTS)} or give 'backbone_arch'"
        )
    return arch


def _parse_swin(base: SwinConfig, arch_in: dict[str, Any]) -> SwinConfig:
    """A Swin architecture: ``base`` with the fields ``arch_in`` gives replaced."""
    return SwinConfig(
        embed_dim=int(arch_in.get("embed_dim", base.embed_dim)),
        depths=_tuple(arch_in, "depths", base.depths),
        num_heads=_tuple(arch_in, "num_heads", base.num_heads),
        window_size=int(arch_in.get("window_size", base.window_size)),
        mlp_ratio=float(arch_in.get("mlp_ratio", base.mlp_ratio)),
        qkv_bias=bool(arch_in.get("qkv_bias", base.qkv_bias)),
        patch_size=int(arch_in.get("patch_size", base.patch_size)),
        eps=float(arch_in.get("layernorm_eps", arch_in.get("eps", base.eps))),
    )


def _backbone_outputs(arch: MiTConfig | SwinConfig) -> tuple[int, int, int, int]:
    """Channels of the backbone's four feature maps, which the head takes as its ``in_channels``."""
    return arch.embed_dims if isinstance(arch, MiTConfig) else arch.out_channels


def _parse_head(d: dict[str, Any], arch: MiTConfig | SwinConfig) -> HeadConfig:
    """The decode head; window and Mamba fields may sit in ``decoder_params`` or (older configs) at the top."""
    variant = _head_variant(d)
    dp = d.get("decoder_params") or {}
    _check_published(dp)
    mamba = d.get("mamba") or {}
    block = d.get("mamba_block") or {}
    in_channels = _tuple(d, "in_channels", _backbone_outputs(arch))
    embed_dim = int(dp.get("embed_dim", d.get("embed_dim", 256)))
    head = HeadConfig(
        variant=variant,
        in_channels=in_channels,
        channels=int(d.get("channels", 128)),
        num_classes=_positive(d, "num_classes"),
        embed_dim=embed_dim,
        window_h=int(dp.get("window_h", d.get("window_h", 20))),
        window_w=int(dp.get("window_w", d.get("window_w", 20))),
        shift_size=int(dp.get("shift_size", d.get("shift_size", 10))),
        real_shift=bool(dp.get("real_shift", d.get("real_shift", False))),
        n_mambas=int(dp.get("n_mambas", d.get("n_mambas", 8))),
        num_clips=int(d.get("num_clips", 4)),
        d_state=int(mamba.get("d_state", 16)),
        d_conv=int(mamba.get("d_conv", 4)),
        expand=int(mamba.get("expand", 2)),
        dt_rank=int(mamba["dt_rank"]) if isinstance(mamba.get("dt_rank"), int) else None,
        norm_eps=float(block.get("norm_eps", 1e-5)),
        bn_eps=float((d.get("norm_cfg") or {}).get("eps", 1e-5)),
        dropout_ratio=float(d.get("dropout_ratio", 0.1)),
    )
    expected = _backbone_outputs(arch)
    if tuple(head.in_channels) != tuple(expected):
        raise ValueError(f"in_channels {list(head.in_channels)} do not match the backbone's outputs {list(expected)}")
    return head


def _head_variant(d: dict[str, Any]) -> str:
    """The head's registered name, with the official Swin configs' VSFM aliases resolved."""
    variant = HEAD_ALIASES.get(d.get("decode_head", "TV3SHead_shift"), d.get("decode_head", "TV3SHead_shift"))
    if variant not in HEAD_VARIANTS:
        raise ValueError(f"decode_head {d.get('decode_head')!r} is not supported; use one of {list(HEAD_VARIANTS)}")
    return variant


def _check_published(dp: dict[str, Any]) -> None:
    """Refuse the ``decoder_params`` of variants the official code has but TV3S never published."""
    for key in ("zigzag", "quad_scan", "mamba2"):
        if dp.get(key):
            raise ValueError(f"decoder_params.{key}=True is an unpublished TV3S variant and is not supported")
    if int(dp.get("model_type", 0)) != 0:
        raise ValueError(
            f"decoder_params.model_type={dp.get('model_type')} is not supported: every published TV3S "
            "model uses model_type 0 (unidirectional Mamba, no add/concat)"
        )


def _require(d: dict[str, Any], key: str, typ: type) -> Any:
    if key not in d:
        raise ValueError(f"model config is missing {key!r}")
    if not isinstance(d[key], typ):
        raise ValueError(f"model config field {key!r} must be a {typ.__name__}, got {d[key]!r}")
    return d[key]


def _positive(d: dict[str, Any], key: str) -> int:
    value = _require(d, key, int)
    if value <= 0:
        raise ValueError(f"model config field {key!r} must be positive, got {value}")
    return value


def _tuple(d: dict[str, Any], key: str, default: tuple) -> tuple:
    value = d.get(key, default)
    if not isinstance(value, (list, tuple)) or len(value) != len(default):
        raise ValueError(f"model config field {key!r} must be a list of {len(default)} numbers, got {value!r}")
    return tuple(type(x)(v) for x, v in zip(default, value))


def _preset(backbone: str, num_classes: int, variant: str = "TV3SHead_shift") -> ModelConfig:
    arch = MIT_VARIANTS.get(backbone) or SWIN_VARIANTS[backbone]
    head = HeadConfig(variant=variant, in_channels=_backbone_outputs(arch), num_classes=num_classes)
    return ModelConfig(backbone, arch, head)


# The published configurations (local_configs/tv3s/*): window 20, real shift 10, 8 Mamba
# blocks of width 256. B0 was not published; it is here for small deployments and benchmarks.
# The official Swin configs name their heads VSFMHead_shift(_city), names the official code
# never registers; VSPW models use TV3SHead_shift here and Cityscapes ones the city head.
PRESETS: dict[str, ModelConfig] = {
    "tv3s-b0-vspw": _preset("mit_b0", 124),
    "tv3s-b1-vspw": _preset("mit_b1", 124),
    "tv3s-b2-vspw": _preset("mit_b2", 124),
    "tv3s-b5-vspw": _preset("mit_b5", 124),
    "tv3s-b1-city": _preset("mit_b1", 19, "TV3SHead_shift_city"),
    "tv3s-swint-vspw": _preset("d2_Swint", 124),
    "tv3s-swins-vspw": _preset("d2_Swins", 124),
    "tv3s-swint-city": _preset("d2_Swint", 19, "TV3SHead_shift_city"),
    "tv3s-swins-city": _preset("d2_Swins", 19, "TV3SHead_shift_city"),
}


# The small model the repository ships trained on synthetic scenes (tv3s train; see README):
# MiT-B0 with a reduced head (width 64, 4 Mamba blocks), Cityscapes' 19 classes.
PRESETS["tv3s-demo"] = ModelConfig(
    "mit_b0",
    MIT_VARIANTS["mit_b0"],
    HeadConfig(in_channels=MIT_VARIANTS["mit_b0"].embed_dims, num_classes=19, embed_dim=64, n_mambas=4),
    class_names=CITYSCAPES_CLASSES,
    palette=CITYSCAPES_PALETTE,
)


def resolve_config(cfg: str | dict[str, Any] | ModelConfig) -> ModelConfig:
    """A preset name, an official-style dict, or a ModelConfig -> ModelConfig."""
    if isinstance(cfg, ModelConfig):
        return cfg
    if isinstance(cfg, str):
        if cfg not in PRESETS:
            raise ValueError(f"unknown preset {cfg!r}; presets: {', '.join(sorted(PRESETS))}")
        return PRESETS[cfg]
    return ModelConfig.from_dict(cfg)
