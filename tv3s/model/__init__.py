"""TV3S in plain PyTorch: official-checkpoint parity, clip mode, and exact stream mode.

Public API::

    from tv3s.model import build_model, load_checkpoint
    model = build_model("tv3s-b1-vspw")            # a preset, or an official-style config dict
    load_checkpoint(model, "tv3s_b1_vspw.pth")     # strict, weights_only=True
    logits = model.predict_clip(frames)             # uint8 [T,H,W,3] -> float32 [T,C,ceil(H/4),ceil(W/4)]
    logits, state = model.predict_stream(frames, state=None)
"""

from .checkpoint import CheckpointError, build_model, build_model_from_checkpoint, infer_config, load_checkpoint
from .config import PRESETS, HeadConfig, ModelConfig, SwinConfig
from .mit import MiTConfig
from .segmentor import TV3S, official_clip
from .ssm import kernels_available
from .state import StateMismatchError, StreamState

__all__ = [
    "PRESETS",
    "TV3S",
    "CheckpointError",
    "HeadConfig",
    "MiTConfig",
    "ModelConfig",
    "StateMismatchError",
    "StreamState",
    "SwinConfig",
    "build_model",
    "build_model_from_checkpoint",
    "infer_config",
    "kernels_available",
    "load_checkpoint",
    "official_clip",
]
