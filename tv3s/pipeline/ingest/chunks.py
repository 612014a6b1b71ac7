"""One video, in order: its indexed samples fetched, decoded and gathered into model-sized chunks.

`iter_video` is what stream inference consumes: one video's frames, in order, in chunks
resized for the model, each saying its source size (masks go back at source resolution)
and whether the stream state must be reset before it. `iter_units` cuts the same stream
into commit units and says, after each, where reading stands (`CursorState`), so a video
can be continued elsewhere exactly. Bad input becomes an `InputError` passed to
`on_error`, and the video goes on after it: the state is reset wherever frames are missing
(a gap, an undecodable sample) or the frame size changes, because a carried state is only
valid for consecutive frames of one size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby
from typing import BinaryIO

import numpy as np

from ...schemas.errors import ErrorKind, InputError
from ..storage import StorageError, Store
from .decode import REENCODE, DecodeError, decode_image, decode_video
from .fetch import ErrorSink, coalesced, read_media_batch
from .index import VideoRun
from .media_index import WHOLE_FILE
from .resize import ResizeRule, resize_frames


@dataclass(frozen=True)
class FrameOrigin:
    """Where one decoded frame lives: shard URL, tar member, position inside the member."""

    url: str
    member: str | None  # None when the file at `url` is the media itself (a raw video or image)
    position: int  # decode order inside the member (0 for an image)
    sample_index: int  # the index row's position: segment index, or frame number of a frame sample


@dataclass(frozen=True)
class FrameChunk:
    """Consecutive frames of one video, resized for the model.

    `reset` is True on the first chunk of the video and after every gap, decode failure
    or size change: start a fresh stream state before these frames; `reset_reason` says
    which (`video_start`, `missing_segment`, `frame_size_changed`). `frame_index` is the
    video frame number of `frames[0]` (from `start_frame` when the segment json gives
    it, otherwise counted from the first frame read). `sample_index` is the segment
    index, or the frame index of the first frame for frame sequences. `sources` locate
    every frame, so results can point back at them. Frame i is video frame
    `frame_index + i * stride` (a stride of N reads every Nth frame, numbered as in the
    video). `source_frames` are the frames before resizing, when the reader was asked to
    keep them (to draw overlays at the source size).
    """

    video_id: str
    reset: bool
    sample_index: int
    frame_index: int
    frames: np.ndarray
    source_size: tuple[int, int]
    sources: tuple[FrameOrigin, ...] = ()
    reset_reason: str | None = None
    stride: int = 1
    source_frames: np.ndarray | None = None


@dataclass(frozen=True)
class CursorState:
    """Where reading a video stands between two samples: enough to continue it elsewhere exactly
    (frame numbering, the size and segment checks, a pending state reset). JSON-able."""

    run: int | None
    next_frame: int
    size: tuple[int, int] | None
    previous: dict | None
    reset: bool
    reason: str | None
    reported_modes: tuple[str, ...] = ()  # image modes and too-small frame sizes already reported


@dataclass(frozen=True)
class UnitEnd:
    """Every frame and error of commit unit `unit` has been delivered; `cursor` continues after it."""

    unit: int
    cursor: CursorState


def iter_video(
    runs: Sequence[VideoRun],
    store: Store,
    on_error: ErrorSink,
    resize: ResizeRule = ResizeRule(),
    chunk: int = 16,
    *,
    stride: int = 1,
    keep_source: bool = False,
) -> Iterator[FrameChunk]:
    """All frames of one video's runs (from `plan_videos`), in order, in chunks of <= `chunk`
    (every `stride`-th frame only; with `keep_source`, the frames before resizing too).

    The next batch of bytes is fetched while the current one decodes.
    """
    # without unit_of, only chunks come
    yield from iter_units(runs, store, on_error, None, resize, chunk, stride=stride, keep_source=keep_source)


def iter_units(
    runs: Sequence[VideoRun],
    store: Store,
    on_error: ErrorSink,
    unit_of: Callable[[dict], int] | None,
    resize: ResizeRule = ResizeRule(),
    chunk: int = 16,
    resume: CursorState | None = None,
    *,
    stride: int = 1,
    keep_source: bool = False,
) -> Iterator[FrameChunk | UnitEnd]:
    """`iter_video`, cut into commit units: a chunk never spans two units (`unit_of(row)`), and
    after each unit comes a `UnitEnd` with the cursor state to resume from. `resume` continues
    a video read elsewhere up to such a point, exactly as if it had never stopped.
    """
    if chunk < 1 or stride < 1:
        raise ValueError(f"chunk and stride must be >= 1 frame, got {chunk} and {stride}")
    if not runs:
        return
    cursor = _Cursor(runs[0].video_id, resize, chunk, on_error, stride, keep_source)
    previous_run = None
    if resume is not None:
        cursor.restore(resume)
        previous_run = resume.run
    current = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tv3s-prefetch") as pool:
        batches = [(run.run, rows) for run in runs for rows in _read_batches(run)]
        pending: Future | None = pool.submit(_fetch, batches[0][1], store) if batches else None
        for i, (run, rows) in enumerate(batches):
            data = pending.result()
            pending = pool.submit(_fetch, batches[i + 1][1], store) if i + 1 < len(batches) else None
            for row, blob in zip(rows, data):
                if unit_of is not None:
                    unit = unit_of(row)
                    if current is not None and unit != current:
                        yield from cursor.flush()
                        yield UnitEnd(current, cursor.state(previous_run))
                    current = unit
                if run != previous_run:
                    yield from cursor.restart("video_start" if previous_run is None else "missing_segment")
                    previous_run = run
                yield from cursor.sample(row, blob)
        yield from cursor.flush()
        if current is not None:
            yield UnitEnd(current, cursor.state(previous_run))


def iter_videos(
    runs: Iterable[VideoRun], store: Store, on_error: ErrorSink, resize: ResizeRule = ResizeRule(), chunk: int = 16
) -> Iterator[FrameChunk]:
    """`iter_video` for every video of a plan, one video after the other."""
    for _, video_runs in groupby(runs, key=lambda r: r.video_id):
        yield from iter_video(list(video_runs), store, on_error, resize, chunk)


def _read_batches(run: VideoRun) -> Iterator[list[dict]]:
    """Segments one at a time; frames in coalesced groups (one request for many small members)."""
    if run.sample_type == "segment":
        yield from ([r] for r in run.rows)
    else:
        yield from coalesced(run.rows)


def _fetch(rows: list[dict], store: Store) -> list[bytes | BinaryIO | StorageError]:
    """The batch's media bytes; a raw video file (no tar member) as a ranged file instead, which
    the decoder reads as it goes (a recording can be larger than memory)."""
    if len(rows) == 1 and rows[0]["sample_type"] == "segment" and rows[0]["media_member"] == WHOLE_FILE:
        return [store.open(rows[0]["shard"], rows[0]["media_size"])]
    try:
        return read_media_batch(rows, store)
    except StorageError as exc:  # every sample of the batch is lost; each is reported
        return [exc] * len(rows)


class _Cursor:
    """Gathers one video's decoded frames into chunks and decides where the stream state restarts."""

    def __init__(
        self, video_id: str, resize: ResizeRule, chunk: int, on_error: ErrorSink, stride: int, keep_source: bool
    ) -> None:
        self.video_id, self.resize, self.chunk, self.on_error = video_id, resize, chunk, on_error
        self.stride, self.keep_source = stride, keep_source
        self.frames: list[np.ndarray] = []
        self.refs: list[FrameOrigin] = []
        self.size: tuple[int, int] | None = None
        self.reset = True
        self.reason: str | None = "video_start"
        self.position = 0  # of the next decoded frame inside its member
        self.next_frame = 0  # video frame number of the next decoded frame
        self.first_frame = self.sample_index = 0  # of the chunk being gathered
        self.reported_modes: set[str] = set()
        self.previous: dict | None = None  # the last segment decoded whole, while no frame is known missing

    def state(self, run: int | None) -> CursorState:
        """Between samples only (nothing gathered): what `restore` needs to go on elsewhere."""
        assert not self.frames, "cursor state taken with frames still gathered"
        return CursorState(
            run, self.next_frame, self.size, self.previous, self.reset, self.reason, tuple(sorted(self.reported_modes))
        )

    def restore(self, state: CursorState) -> None:
        self.next_frame, self.previous = state.next_frame, state.previous
        self.size = None if state.size is None else (int(state.size[0]), int(state.size[1]))
        self.reset, self.reason, self.reported_modes = state.reset, state.reason, set(state.reported_modes)

    def restart(self, reason: str = "missing_segment") -> Iterator[FrameChunk]:
        """Frames are missing before what comes next (or their size changes): flush, and restart
        the state after. The first restart of a video keeps its reason, video_start."""
        yield from self.flush()
        if not self.reset:
            self.reason = reason
        self.reset = True
        self.previous = None

    def sample(self, row: dict, blob: bytes | BinaryIO | StorageError) -> Iterator[FrameChunk]:
        if isinstance(blob, StorageError):
            self._error(row, blob.record.kind, blob.record.message, blob.record.hint, stage="read")
            yield from self.restart()
        elif row["sample_type"] == "segment":
            yield from self._segment(row, blob)
        else:
            yield from self._frame(row, blob)

    def _segment(self, row: dict, blob: bytes | BinaryIO) -> Iterator[FrameChunk]:
        yield from self.flush()  # a chunk never spans two segments
        start = row["start_frame"]
        if start is not None and self.previous is not None and start != self.next_frame:
            yield from self._count_mismatch(self.previous, row, start)
        if start is not None:
            self.next_frame = start
        first = self.next_frame
        self.position = 0
        try:
            with contextlib.nullcontext() if isinstance(blob, bytes) else contextlib.closing(blob):
                for rgb in decode_video(blob):
                    yield from self._add(row, rgb)
        except DecodeError as exc:
            self._error(row, exc.kind, str(exc), exc.hint, frame=self.next_frame if exc.frames else None)
            yield from self.restart()
            return
        except StorageError as exc:  # a raw file read as it is decoded: the rest of it is lost
            self._error(row, exc.record.kind, exc.record.message, exc.record.hint, frame=self.next_frame, stage="read")
            yield from self.restart()
            return
        decoded = self.next_frame - first
        if row["frames"] is not None and decoded != row["frames"]:
            self._error(
                row,
                ErrorKind.corrupt_member if decoded < row["frames"] else ErrorKind.bad_metadata,
                f"decoded {decoded} frames but the json says {row['frames']} (truncated?); the stream state "
                "restarts after it",
                REENCODE,
                frame=self.next_frame,
            )
            yield from self.restart()
        else:
            self.previous = row
        yield from self.flush()

    def _count_mismatch(self, previous: dict, row: dict, start: int) -> Iterator[FrameChunk]:
        """The json says where each segment starts: a shortfall means the previous one lost frames.

        A truncated segment often decodes without any error (FFmpeg stops at the end of
        the data), so this is the only place such a loss shows up.
        """
        missing = start - self.next_frame
        what = f"{missing} frames are missing (truncated?)" if missing > 0 else "the segments overlap"
        self._error(
            previous,
            ErrorKind.corrupt_member if missing > 0 else ErrorKind.bad_metadata,
            f"segment {previous['index']} ends at frame {self.next_frame} but segment {row['index']} starts "
            f"at frame {start}: {what}; the stream state restarts",
            "re-encode or re-pack the segment; start_frame must be the frame count of the segments before",
            frame=self.next_frame,
        )
        yield from self.restart()

    def _frame(self, row: dict, blob: bytes) -> Iterator[FrameChunk]:
        self.next_frame = row["index"]
        self.position = 0
        if self.next_frame % self.stride:  # not sampled: not even decoded
            return
        try:
            image = decode_image(blob)
        except DecodeError as exc:
            self._error(row, exc.kind, str(exc), exc.hint, frame=row["index"])
            yield from self.restart()
            return
        if image.converted_from and image.converted_from not in self.reported_modes:
            self.reported_modes.add(image.converted_from)
            self._error(
                row,
                ErrorKind.bad_image_format,
                f"frames in mode {image.converted_from} (the first is frame {row['index']}) are converted to 8-bit RGB",
                "store frames as 8-bit RGB JPEG/PNG",
                frame=row["index"],
            )
        yield from self._add(row, image.rgb)

    def _add(self, row: dict, rgb: np.ndarray) -> Iterator[FrameChunk]:
        if self.next_frame % self.stride:  # decoded only to reach the next sampled frame
            self.position += 1
            self.next_frame += 1
            return
        size = (rgb.shape[1], rgb.shape[0])
        if not self.resize.fits(*size):
            yield from self._too_small(row, size)
            return
        if self.size is not None and size != self.size:
            self._error(
                row,
                ErrorKind.frame_size_changed,
                f"frame {self.next_frame} is {size[0]}x{size[1]} but the frames before are "
                f"{self.size[0]}x{self.size[1]}; the stream state restarts here",
                "keep one resolution per video (re-encode or resize the odd segment or frames)",
                frame=self.next_frame,
            )
            yield from self.restart("frame_size_changed")
        self.size = size
        if not self.frames:
            self.first_frame, self.sample_index = self.next_frame, row["index"]
        self.frames.append(rgb)
        self.refs.append(FrameOrigin(row["shard"], row["media_member"] or None, self.position, row["index"]))
        self.position += 1
        self.next_frame += 1
        if len(self.frames) == self.chunk:
            yield from self.flush()

    def _too_small(self, row: dict, size: tuple[int, int]) -> Iterator[FrameChunk]:
        """A frame the model cannot take is left out (reported once per video and size); the stream
        state restarts after it, as after any missing frame."""
        key = f"{size[0]}x{size[1]}"
        if key not in self.reported_modes:
            self.reported_modes.add(key)
            target = self.resize.size_for(*size)
            self._error(
                row,
                ErrorKind.frame_too_small,
                f"frames of {key} become {target[0]}x{target[1]} at the model's input, under the "
                f"{self.resize.min_side} pixels per side TV3S needs: frames of this size are left out of this video "
                f"(the first is frame {self.next_frame}) and the stream state restarts after them",
                "set inputs.resize: official (scales small frames up)"
                if self.resize.scale is None
                else "the aspect ratio is too extreme to label: crop or pad the video to a usual shape and re-pack",
                frame=self.next_frame,
            )
        yield from self.restart()
        self.position += 1
        self.next_frame += 1

    def flush(self) -> Iterator[FrameChunk]:
        if not self.frames:
            return
        batch = np.stack(self.frames)
        refs = tuple(self.refs)
        self.frames, self.refs = [], []
        resized = resize_frames(batch, self.resize.size_for(*self.size))
        yield FrameChunk(
            self.video_id,
            self.reset,
            self.sample_index,
            self.first_frame,
            resized,
            self.size,
            refs,
            self.reason if self.reset else None,
            self.stride,
            batch if self.keep_source else None,
        )
        self.reset = False
        self.reason = None

    def _error(
        self, row: dict, kind: ErrorKind, message: str, hint: str, frame: int | None = None, stage: str = "decode"
    ) -> None:
        index = {"segment_index": row["index"]} if row["sample_type"] == "segment" else {}
        self.on_error(
            InputError(
                kind=kind,
                stage=stage,
                url=row["shard"],
                member=row["media_member"] or None,
                video_id=row["video_id"],
                frame_index=frame,
                message=message,
                hint=hint,
                **index,
            )
        )
