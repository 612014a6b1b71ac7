"""Segment one input (video file or frame folder) into an output folder of pseudo-labels.

This is the code behind `tv3s segment` and `tv3s demo`: decode in chunks, run
the model (stream or clip mode), turn logits into full-resolution label maps
with the official resize+argmax rule, and write masks, overlays, a preview
sheet and summary.json (see `layout.OutputLayout`). Frames are never all in
memory: only the current chunk and the few frames kept for the preview.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ... import __version__
from ...model.predict import VideoModel, limit_frames, predict_chunks
from ..outputs.masks import encode_mask_png, logits_to_labels, overlay, preview_strip
from .frames import FramesInfo, open_frames, probe_frames
from .layout import OutputLayout

PREVIEW_FRAMES = 8
OVERLAY_JPEG_QUALITY = 90


class SegmentationModel(VideoModel, Protocol):
    """What segment() needs from a model besides prediction: identity and class metadata."""

    num_classes: int
    class_names: list[str]
    palette: np.ndarray
    model_id: str


@dataclass(frozen=True)
class SegmentOptions:
    """How to run: model mode, frames per model call, frame limit, outputs, progress bar."""

    mode: str = "stream"
    chunk: int = 16
    max_frames: int | None = None
    overlays: bool = True
    overwrite: bool = False
    progress: bool = True


def segment(
    model: SegmentationModel,
    source: str | Path,
    out_dir: str | Path,
    options: SegmentOptions = SegmentOptions(),
    extra_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment `source` into `out_dir` and return the summary (also written to summary.json).

    `extra_summary` entries (e.g. the checkpoint path, a random-weights
    warning) are merged into the summary so every output folder documents
    how it was made. Raises FramesError for unreadable inputs and
    OutputExistsError if `out_dir` holds an earlier run and not `overwrite`.
    """
    source = Path(source)
    info = probe_frames(source)
    chunks = open_frames(source, options.chunk)
    layout = OutputLayout(Path(out_dir))
    layout.prepare(options.overwrite, overlays=options.overlays)
    expected = info.frames if options.max_frames is None else min(info.frames, options.max_frames)

    palette, num_classes = model.palette, model.num_classes
    clock = _Clock()
    counts = np.zeros(num_classes, dtype=np.int64)
    sampler = _PreviewSampler(expected, PREVIEW_FRAMES)
    index = 0
    by_stream: list[int] = []
    started = time.perf_counter()
    with tqdm(total=expected or None, unit="frame", desc=source.name, disable=not options.progress) as bar:
        timed_chunks = clock.wrap("decode", limit_frames(chunks, options.max_frames))
        for frames, logits, streamed in clock.wrap("model", predict_chunks(model, timed_chunks, options.mode)):
            by_stream.extend(streamed)
            with clock.span("postprocess"):
                for frame, frame_logits in zip(frames, logits, strict=True):
                    labels = logits_to_labels(torch.from_numpy(frame_logits), frame.shape[:2])
                    _write_frame(layout, index, frame, labels, palette, options.overlays)
                    counts += np.bincount(labels.ravel(), minlength=num_classes)
                    sampler.offer(index, frame, labels)
                    index += 1
            bar.update(len(frames))
    total = time.perf_counter() - started
    clock.totals["model"] -= clock.totals["decode"]  # the model generator pulls (and times) decoding

    if index:
        frames_kept, labels_kept = sampler.picked()
        Image.fromarray(preview_strip(frames_kept, labels_kept, palette, PREVIEW_FRAMES)).save(layout.preview)
    summary = _summary(model, source, info, layout, options, index, expected, counts, clock.totals, total)
    if by_stream:
        summary["frames_labelled_by_stream_mode"] = by_stream
    summary.update(extra_summary or {})
    layout.summary.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _write_frame(
    layout: OutputLayout, index: int, frame: np.ndarray, labels: np.ndarray, palette: np.ndarray, overlays: bool
) -> None:
    layout.mask(index).write_bytes(encode_mask_png(labels))
    if overlays:
        Image.fromarray(overlay(frame, labels, palette)).save(layout.overlay(index), quality=OVERLAY_JPEG_QUALITY)


def _summary(
    model: SegmentationModel,
    source: Path,
    info: FramesInfo,
    layout: OutputLayout,
    options: SegmentOptions,
    frames: int,
    expected: int,
    counts: np.ndarray,
    times: dict[str, float],
    total: float,
) -> dict[str, Any]:
    pixels = int(counts.sum())
    fractions = counts / pixels if pixels else np.zeros_like(counts, dtype=np.float64)
    summary: dict[str, Any] = {
        "tv3s_version": __version__,
        "input": str(source),
        "frames": frames,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "mode": options.mode,
        "chunk": options.chunk,
        "model_id": model.model_id,
        "classes": model.num_classes,
        "class_pixel_fraction": [
            {"id": i, "name": name, "fraction": float(f)}
            for i, (name, f) in enumerate(zip(model.class_names, fractions, strict=True))
        ],
        "timing": {
            "total_s": round(total, 3),
            "decode_s": round(times["decode"], 3),
            "model_s": round(times["model"], 3),
            "postprocess_s": round(times["postprocess"], 3),
            "frames_per_s": round(frames / total, 3) if total > 0 else None,
        },
        "outputs": {
            "masks": f"{layout.masks.name}/{{frame:06d}}.png",
            "overlays": f"{layout.overlays.name}/{{frame:06d}}.jpg" if options.overlays else None,
            "preview": layout.preview.name if frames else None,
        },
    }
    if not info.frames_estimated and frames != expected:
        summary["warning_frame_count"] = (
            f"expected {expected} frames from the container's frame count but decoded {frames}; "
            "the file may be truncated"
        )
    return summary


class _Clock:
    """Seconds spent per stage, including inside generators the loop pulls from."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {"decode": 0.0, "model": 0.0, "postprocess": 0.0}

    def wrap(self, stage: str, items: Iterable) -> Iterator:
        iterator = iter(items)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.totals[stage] += time.perf_counter() - start
                return
            self.totals[stage] += time.perf_counter() - start
            yield item

    def span(self, stage: str) -> _Span:
        return _Span(self, stage)


class _Span:
    def __init__(self, clock: _Clock, stage: str) -> None:
        self.clock, self.stage = clock, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.clock.totals[self.stage] += time.perf_counter() - self.start


class _PreviewSampler:
    """Keeps the frames (and labels) at evenly spaced indices of the expected frame count.

    The count of a video may be an estimate; if the video ends early the last
    frame seen stands in for the unreached picks.
    """

    def __init__(self, expected: int, max_frames: int) -> None:
        n = min(max(expected, 1), max_frames)
        self.targets = set(np.linspace(0, max(expected - 1, 0), n).round().astype(int).tolist())
        self.kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.last: tuple[int, np.ndarray, np.ndarray] | None = None

    def offer(self, index: int, frame: np.ndarray, labels: np.ndarray) -> None:
        if index in self.targets:
            self.kept[index] = (frame.copy(), labels)
        self.last = (index, frame, labels)

    def picked(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        kept = dict(self.kept)
        if self.last is not None and self.last[0] not in kept and max(self.targets) > self.last[0]:
            kept[self.last[0]] = (self.last[1].copy(), self.last[2])
        order = sorted(kept)
        return [kept[i][0] for i in order], [kept[i][1] for i in order]
