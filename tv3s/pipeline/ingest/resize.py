"""The model input size: the official TV3S test pipeline's resize rule, applied once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...model.segmentor import MIN_SIDE


@dataclass(frozen=True)
class ResizeRule:
    """The official TV3S test-pipeline size rule (mmseg Resize keep_ratio + AlignedResize).

    The frame is scaled by min(long/max(w, h), short/min(w, h)) with (long, short) =
    `scale` (853, 480 by default), each side rounded half up, then each side rounded up
    to a multiple of `size_divisor`. `scale=None` keeps the source size. `min_side` is the
    smallest side the model accepts (TV3S: 32, its encoder's first reductions); frames whose
    model input would be smaller cannot be labelled at all.
    """

    scale: tuple[int, int] | None = (853, 480)
    size_divisor: int = 32
    min_side: int = MIN_SIDE

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the model input for a source frame of width x height."""
        if self.scale is None:
            return width, height
        long_edge, short_edge = max(self.scale), min(self.scale)
        factor = min(long_edge / max(width, height), short_edge / min(width, height))
        w, h = int(width * factor + 0.5), int(height * factor + 0.5)
        d = self.size_divisor
        return -(-w // d) * d, -(-h // d) * d

    def fits(self, width: int, height: int) -> bool:
        """Whether a width x height frame becomes a model input the model accepts."""
        return min(self.size_for(width, height)) >= self.min_side


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [T, H, W, 3] -> uint8 [T, size[1], size[0], 3], bilinear (align_corners=False, no antialias).

    This is the kernel of OpenCV's INTER_LINEAR, which the official pipeline uses; it is
    applied once, straight to the final size, instead of the official rescale-then-align
    pair of resizes (one pass less, about one grey level apart).
    """
    width, height = size
    if frames.shape[1:3] == (height, width):
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return np.ascontiguousarray(y.permute(0, 2, 3, 1).numpy())
