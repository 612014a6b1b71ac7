"""Segment one input (a video file or a frame folder, local or s3://) into an output folder of pseudo-labels.

This is `tv3s segment` (and `tv3s demo-clip`): the single-video case of a labeling job,
on the same path. The input is indexed and read by the data plane (`ingest.inputs`,
`iter_video`: the one decoder, the official 853x480 resize rule, state resets where frames
are missing), the model runs through `predict_steps` as a job's worker calls it, and the
label maps are the job's (`logits_to_labels` at the source size), so a video segmented
here gets the masks a job would commit for it. What differs is the output: masks,
overlays, a preview sheet and summary.json in a local folder (see `layout.OutputLayout`)
instead of tables. Frames are never all in memory: only the current chunk and the few
frames kept for the preview.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
from tqdm import tqdm

from ... import __version__
from ...model.predict import ClipHistory, StepRequest, VideoModel, predict_steps
from ...schemas.errors import InputError
from ..ingest.chunks import FrameChunk, iter_video
from ..ingest.index import VideoRun, plan_videos
from ..ingest.inputs import index_inputs
from ..ingest.resize import ResizeRule
from ..outputs.masks import encode_mask_png, logits_to_labels, overlay, preview_strip
from ..storage import Store
from .layout import OutputLayout

PREVIEW_FRAMES = 8
OVERLAY_JPEG_QUALITY = 90
RESIZE_RULES = {"official": ResizeRule(), "none": ResizeRule(scale=None)}


class FramesError(ValueError):
    """The input cannot be segmented as one video; the message names it and the fix."""


class SegmentationModel(VideoModel, Protocol):
    """What segment() needs from a model besides prediction: identity and class metadata."""

    num_classes: int
    class_names: list[str]
    palette: np.ndarray
    model_id: str


@dataclass(frozen=True)
class SegmentOptions:
    """How to run: model mode, frames per model call, frame limit, outputs, progress bar, the
    model input size rule (a job's `inputs.resize`) and the frame stride (`inputs.frame_stride`)."""

    mode: str = "stream"
    chunk: int = 16
    max_frames: int | None = None
    overlays: bool = True
    overwrite: bool = False
    progress: bool = True
    resize: str = "official"
    stride: int = 1


@dataclass(frozen=True)
class OneVideo:
    """The input as the data plane sees it: one video's runs, its frame rate, the errors met indexing."""

    video_id: str
    runs: list[VideoRun]
    fps: float | None
    errors: list[InputError]


def open_video(source: str | Path, store: Store) -> OneVideo:
    """Index and plan the input (cheap: headers only); FramesError unless it is exactly one video."""
    result = index_inputs([str(source)], store)
    runs, plan_errors = plan_videos(result.table)
    ids = sorted({run.video_id for run in runs})
    if not ids:
        problems = [f"{e.message} ({e.hint})" for e in result.errors[:1]] or ["it holds no frames"]
        raise FramesError(f"{source}: nothing to segment: {problems[0]}")
    if len(ids) > 1:
        raise FramesError(
            f"{source} holds {len(ids)} videos ({', '.join(ids[:4])}{', ...' if len(ids) > 4 else ''}); "
            "tv3s segment labels one: pass one video file or frame folder, or label them all with tv3s label"
        )
    return OneVideo(ids[0], runs, runs[0].rows[0]["fps"], [*result.errors, *plan_errors])


def segment(
    model: SegmentationModel,
    source: str | Path,
    out_dir: str | Path,
    options: SegmentOptions = SegmentOptions(),
    extra_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment `source` into `out_dir` and return the summary (also written to summary.json).

    `extra_summary` entries (e.g. the checkpoint path, a random-weights warning) are merged
    into the summary so every output folder documents how it was made. Raises FramesError
    for an input that is not one readable video (before writing anything) and
    OutputExistsError if `out_dir` holds an earlier run and not `overwrite`.
    """
    store = Store()
    video = open_video(source, store)
    layout = OutputLayout(Path(out_dir))
    layout.prepare(options.overwrite, overlays=options.overlays)
    errors = list(video.errors)
    chunks = iter_video(
        video.runs,
        store,
        errors.append,
        RESIZE_RULES[options.resize],
        options.chunk,
        stride=options.stride,
        keep_source=True,
    )
    writer = _Writer(model, layout, options)
    started = time.perf_counter()
    with tqdm(unit="frame", desc=Path(str(source)).name, disable=not options.progress) as bar:
        for chunk in writer.clock.wrap("decode", limit_frames(chunks, options.max_frames)):
            writer.add(chunk)
            bar.update(len(chunk.frames))
    total = time.perf_counter() - started
    if not writer.frames:
        raise FramesError(f"{source}: no frame could be segmented: {'; '.join(map(str, errors)) or 'no frames'}")
    Image.fromarray(preview_strip(*writer.preview.picked(), model.palette, PREVIEW_FRAMES)).save(layout.preview)
    summary = writer.summary(source, video, errors, total)
    summary.update(extra_summary or {})
    layout.summary.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def limit_frames(chunks: Iterable[FrameChunk], max_frames: int | None) -> Iterator[FrameChunk]:
    """Pass chunks through until `max_frames` frames have been delivered (None: all); no chunk past
    the limit is read."""
    left = max_frames
    for chunk in chunks:
        if left is not None and left < len(chunk.frames):
            keep = slice(0, left)
            chunk = dataclasses.replace(
                chunk, frames=chunk.frames[keep], sources=chunk.sources[keep], source_frames=chunk.source_frames[keep]
            )
        yield chunk
        if left is not None:
            left -= len(chunk.frames)
            if left <= 0:
                return


class _Writer:
    """Predicts one video's chunks as a job's worker does and writes each frame's mask and overlay."""

    def __init__(self, model: SegmentationModel, layout: OutputLayout, options: SegmentOptions) -> None:
        self.model, self.layout, self.options = model, layout, options
        self.clock = _Clock()
        self.carried = None
        self.counts = np.zeros(model.num_classes, dtype=np.int64)
        self.preview = _PreviewSampler(PREVIEW_FRAMES)
        self.frames = 0
        self.indices: list[int] = []
        self.by_stream: list[int] = []
        self.first: FrameChunk | None = None

    def add(self, chunk: FrameChunk) -> None:
        with self.clock.span("model"):
            labels = self._labels(chunk)
        with self.clock.span("postprocess"):
            for i, (frame, label) in enumerate(zip(chunk.source_frames, labels, strict=True)):
                index = chunk.frame_index + i * chunk.stride
                self.layout.mask(index).write_bytes(encode_mask_png(label))
                if self.options.overlays:
                    picture = Image.fromarray(overlay(frame, label, self.model.palette))
                    picture.save(self.layout.overlay(index), quality=OVERLAY_JPEG_QUALITY)
                self.counts += np.bincount(label.ravel(), minlength=self.model.num_classes)
                self.preview.offer(frame, label)
                self.indices.append(index)
        self.frames += len(labels)
        self.first = self.first or chunk

    def _labels(self, chunk: FrameChunk) -> np.ndarray:
        """Label maps at the source size; the state restarts where the reader says (as in a job)."""
        if chunk.reset:
            self.carried = None
        start = self.carried.start if isinstance(self.carried, ClipHistory) else 0
        request = StepRequest(chunk.frames, self.carried)
        [(result, self.carried)] = predict_steps(self.model, [request], self.options.mode, on_device=True)
        # clip mode's early frames predicted in stream mode, as run positions: back to frame numbers
        self.by_stream += [chunk.frame_index + (b - start) * chunk.stride for b in result.by_stream]
        return logits_to_labels(result.logits, (chunk.source_size[1], chunk.source_size[0]))

    def summary(self, source: str | Path, video: OneVideo, errors: list[InputError], total: float) -> dict[str, Any]:
        options, model, times = self.options, self.model, self.clock.totals
        pixels = int(self.counts.sum())
        fractions = self.counts / pixels
        width, height = self.first.source_size
        out: dict[str, Any] = {
            "tv3s_version": __version__,
            "input": str(source),
            "video_id": video.video_id,
            "frames": self.frames,
            "first_frame": self.indices[0],
            "last_frame": self.indices[-1],
            "frame_stride": options.stride,
            "width": width,
            "height": height,
            "model_input": list(RESIZE_RULES[options.resize].size_for(width, height)),
            "resize": options.resize,
            "fps": video.fps,
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
                "frames_per_s": round(self.frames / total, 3) if total > 0 else None,
            },
            "outputs": {
                "masks": f"{self.layout.masks.name}/{{frame:06d}}.png",
                "overlays": f"{self.layout.overlays.name}/{{frame:06d}}.jpg" if options.overlays else None,
                "preview": self.layout.preview.name,
            },
            "errors": [str(e) for e in errors],
        }
        if self.by_stream:
            out["frames_labelled_by_stream_mode"] = self.by_stream
        return out


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
    """Evenly spaced frames of a video whose length is not known in advance: every `step`-th frame
    is kept, and when twice the wanted number are kept, every other one goes and the step doubles."""

    def __init__(self, wanted: int) -> None:
        self.wanted, self.step, self.seen = wanted, 1, 0
        self.kept: list[tuple[np.ndarray, np.ndarray]] = []

    def offer(self, frame: np.ndarray, labels: np.ndarray) -> None:
        if self.seen % self.step == 0:
            self.kept.append((frame.copy(), labels))
            if len(self.kept) > 2 * self.wanted:
                self.kept, self.step = self.kept[::2], self.step * 2
        self.seen += 1

    def picked(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        picks = np.linspace(0, len(self.kept) - 1, min(self.wanted, len(self.kept))).round().astype(int)
        return [self.kept[i][0] for i in picks], [self.kept[i][1] for i in picks]
