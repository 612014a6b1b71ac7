"""Run a TV3S model over a video delivered in chunks, in stream or clip mode.

The model sees each chunk once; this module owns the bookkeeping across
chunks: the Mamba state in stream mode, and in clip mode the rolling buffer of
earlier frames that the official clips [t-9, t-6, t-3, t] reach back into.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple, Protocol

import numpy as np
import torch

from .state import StreamState

MODES = ("stream", "clip")
# The official test clip for frame t reaches back to frame t-9.
CLIP_HISTORY = 9


class VideoModel(Protocol):
    """The part of tv3s.model.TV3S this module calls."""

    def predict_stream(
        self, frames: np.ndarray, state: StreamState | None = None, *, on_device: bool = False
    ) -> tuple[np.ndarray | torch.Tensor, StreamState]: ...

    def predict_stream_batch(
        self, clips: Sequence[np.ndarray], states: Sequence[StreamState | None], *, on_device: bool = False
    ) -> tuple[list[np.ndarray | torch.Tensor], list[StreamState]]: ...

    def predict_clip(
        self, frames: np.ndarray, targets: list[int] | None = None, offset: int = 0, *, on_device: bool = False
    ) -> np.ndarray | torch.Tensor: ...

    def clip_has_prediction(self, t: int) -> bool: ...


class Chunk(NamedTuple):
    """One chunk's frames and logits; ``by_stream`` lists video frame indices whose clip-mode
    output was not a prediction (the Cityscapes head's all-zero early frames) and which were
    therefore predicted in stream mode instead."""

    frames: np.ndarray
    logits: np.ndarray | torch.Tensor  # a tensor on the model's device when predicted with on_device
    by_stream: tuple[int, ...] = ()


def predict_chunks(model: VideoModel, chunks: Iterable[np.ndarray], mode: str) -> Iterator[Chunk]:
    """Yield a Chunk (frames [t, H, W, 3], logits [t, C, h, w]) for each chunk of one video, in order.

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


class ClipHistory(NamedTuple):
    """Clip mode's carried context: the last <= CLIP_HISTORY frames before the next chunk, and
    the (run-relative) video index of the next chunk's first frame."""

    frames: np.ndarray | None
    start: int


# What predicting a chunk leaves for the next chunk of the same video: the Mamba state in
# stream mode, the last frames in clip mode, None at a video's start or after a reset. A
# value (see StreamState): callers keep it, checkpoint it and pass it on, never change it.
Carried = StreamState | ClipHistory | None


class StepRequest(NamedTuple):
    """One video's next chunk and what its previous chunks left."""

    frames: np.ndarray
    carried: Carried


def predict_step(
    model: VideoModel, frames: np.ndarray, mode: str, carried: object = None, on_device: bool = False
) -> tuple[Chunk, Carried]:
    """Predict one chunk given what the chunks before it left (None at the start of a video).

    Returns the chunk and what to pass with the next one: the StreamState in stream mode,
    a ClipHistory in clip mode. Both are plain values, so a caller can checkpoint them.
    With `on_device` the logits stay a tensor on the model's device.
    """
    if mode == "stream":
        logits, state = model.predict_stream(frames, state=carried, on_device=on_device)
        return Chunk(frames, logits), state
    if mode != "clip":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    history = carried if carried is not None else ClipHistory(None, 0)
    buffer = frames if history.frames is None else np.concatenate([history.frames, frames])
    kept = len(buffer) - len(frames)
    offset = history.start - kept
    logits = model.predict_clip(buffer, targets=list(range(kept, len(buffer))), offset=offset, on_device=on_device)
    missing = [i for i in range(kept, len(buffer)) if not model.clip_has_prediction(offset + i)]
    if missing:  # early frames only, so the buffer starts at video frame 0 (offset == 0)
        streamed, _ = model.predict_stream(buffer[: max(missing) + 1], on_device=on_device)
        with torch.inference_mode():  # the model's output tensors are inference tensors
            for i in missing:
                logits[i - kept] = streamed[i]
    # a copy, so the old buffer can be freed
    return Chunk(frames, logits, tuple(offset + i for i in missing)), ClipHistory(
        buffer[-CLIP_HISTORY:].copy(), history.start + len(frames)
    )


def predict_steps(
    model: VideoModel, requests: Sequence[StepRequest], mode: str, on_device: bool = False
) -> list[tuple[Chunk, Carried]]:
    """`predict_step` for one or many videos: in stream mode, chunks of one shape go through the
    model in one batched pass (each video keeps its own state); otherwise one call per video."""
    if mode == "stream" and len(requests) > 1 and len({r.frames.shape for r in requests}) == 1:
        logits, states = model.predict_stream_batch(
            [r.frames for r in requests], [r.carried for r in requests], on_device=on_device
        )
        return [(Chunk(r.frames, lg), st) for r, lg, st in zip(requests, logits, states)]
    return [predict_step(model, r.frames, mode, r.carried, on_device) for r in requests]


def _stream(model: VideoModel, chunks: Iterable[np.ndarray]) -> Iterator[Chunk]:
    state = None
    for frames in chunks:
        chunk, state = predict_step(model, frames, "stream", state)
        yield chunk


def _clip(model: VideoModel, chunks: Iterable[np.ndarray]) -> Iterator[Chunk]:
    history = None
    for frames in chunks:
        chunk, history = predict_step(model, frames, "clip", history)
        yield chunk
