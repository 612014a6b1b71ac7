"""How well a model labels held-out synthetic videos, in each inference mode.

Modes: ``stream`` (Mamba state carried over the whole video), ``clip`` (the official
[t-9, t-6, t-3, t] clips) and ``single`` (every frame alone: the Mamba blocks see one frame,
no temporal context). Labels follow the official rule (bilinear resize of the logits to
the frame size, then argmax); scores are mIoU and VSPW's mVC_8 / mVC_16 (pipeline.metrics).
Held-out means seeds the training data did not use.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ..evaluation.metrics import Evaluation
from ..outputs.masks import logits_to_labels
from .scenes import NUM_CLASSES, render_scene

MODES = ("stream", "clip", "single")


def predict_labels(model, frames: np.ndarray, mode: str) -> np.ndarray:
    """Label maps [T, H, W] of one video in ``mode``."""
    if mode == "stream":
        logits, _ = model.predict_stream(frames)
    elif mode == "clip":
        logits = model.predict_clip(frames)
        for t in range(len(frames)):  # the city head's early clip frames are no prediction
            if not model.clip_has_prediction(t):
                logits[t] = model.predict_stream(frames[: t + 1])[0][-1]
    elif mode == "single":
        logits = np.concatenate([model.predict_stream(frame[None])[0] for frame in frames])
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return logits_to_labels(torch.from_numpy(logits), frames.shape[1:3])


def evaluate_modes(
    model, seeds: Iterable[int], frames: int, height: int, width: int, modes: Iterable[str] = MODES
) -> dict[str, dict]:
    """mIoU / mVC per mode over synthetic videos rendered from ``seeds``."""
    evals = {mode: Evaluation(NUM_CLASSES) for mode in modes}
    for seed in seeds:
        clip, gt = render_scene(seed, frames, height, width)
        for mode, ev in evals.items():
            pred = predict_labels(model, clip, mode)
            ev.start_video()
            for g, p in zip(gt, pred):
                ev.add_frame(g, p)
    return {mode: ev.result() for mode, ev in evals.items()}
