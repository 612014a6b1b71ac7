"""Run a TV3S model over a video delivered in chunks, in stream or clip mode.

The model sees each chunk once; this module owns the bookkeeping across
chunks: the Mamba state in stream mode, and in clip mode the rolling buffer of
earlier frames that the official clips [t-9, t-6, t-3, t] reach back into.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

MODES = ("stream", "clip")
# The official test clip for frame t reaches back to frame t-9.
CLIP_HISTORY = 9


class VideoModel(Protocol):
    """The part of tv3s.model.TV3S this module calls."""

    def predict_stream(self, frames: np.ndarray, state: object = None) -> tuple[np.ndarray, object]: ...

    def predict_clip(self, frames: np.ndarray, targets: list[int] | None = None, offset: int = 0) -> np.ndarray: ...


def predict_chunks(
    model: VideoModel, chunks: Iterable[np.ndarray], mode: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (frames [t, H, W, 3], logits [t, C, h, w]) for each chunk of one video, in order.

    stream: the state returned for a chunk is passed into the next, so the
    result does not depend on how the video was chunked.
    clip: each chunk is predicted together with up to CLIP_HISTORY earlier
    frames; while fewer than 9 frames precede it, the buffer holds the whole
    start of the video (offset 0), as the early official clips require.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "stream":
        return _stream(model, chunks)
    return _clip(model, chunks)


def _stream(model: VideoModel, chunks: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    state = None
    for frames in chunks:
        logits, state = model.predict_stream(frames, state=state)
        yield frames, logits


def _clip(model: VideoModel, chunks: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    history = None  # the last <= CLIP_HISTORY frames before the current chunk
    start = 0  # video index of the chunk's first frame
    for frames in chunks:
        buffer = frames if history is None else np.concatenate([history, frames])
        kept = len(buffer) - len(frames)
        logits = model.predict_clip(buffer, targets=list(range(kept, len(buffer))), offset=start - kept)
        yield frames, logits
        history = buffer[-CLIP_HISTORY:].copy()  # a copy, so the old buffer can be freed
        start += len(frames)


def limit_frames(chunks: Iterable[np.ndarray], max_frames: int | None) -> Iterator[np.ndarray]:
    """Pass chunks through until `max_frames` frames have been delivered (None: all).

    Stops without pulling another chunk, so no frame past the limit is decoded.
    """
    if max_frames is None:
        yield from chunks
        return
    left = max_frames
    if left <= 0:
        return
    for frames in chunks:
        yield frames[:left]
        left -= len(frames)
        if left <= 0:
            return
