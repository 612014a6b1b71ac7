"""Write uint8 RGB frames to a video file with PyAV (used by `tv3s demo` and tests)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: str | Path, frames: Iterable[np.ndarray], fps: float = 12.0, codec: str = "libx264", crf: int = 18
) -> Path:
    """Encode RGB frames [H, W, 3] uint8 (an array [T, H, W, 3] works too) into `path`.

    yuv420p is used because every player decodes it; it needs even sizes, so
    odd sizes are rejected here with the fix instead of failing inside FFmpeg.
    `crf` only applies to the x264 family (lower = closer to the source).
    """
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        _encode_into(container, frames, fps, codec, crf, str(path))
    return path


def encode_video(frames: Iterable[np.ndarray], fps: float = 12.0, codec: str = "libx264", crf: int = 18) -> bytes:
    """The same as `write_video`, into an in-memory MP4 (e.g. a shard member)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        _encode_into(container, frames, fps, codec, crf, "video")
    return buf.getvalue()


def _encode_into(container, frames: Iterable[np.ndarray], fps: float, codec: str, crf: int, name: str) -> None:
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
    stream.pix_fmt = "yuv420p"
    if "264" in codec:
        stream.options = {"crf": str(crf)}
    for i, frame in enumerate(frames):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"{name}: frame {i} must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
        if i == 0:
            height, width = frame.shape[:2]
            if height % 2 or width % 2:
                raise ValueError(
                    f"{name}: yuv420p video needs even sizes, got {width}x{height}; crop or pad one pixel."
                )
            stream.width, stream.height = width, height
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode(None))
