"""Read indexed samples (ranged reads) or whole shards, decode them, and hand videos over in order.

* `read_sample` fetches one sample's bytes with one ranged request, wherever it is.
* `stream_shard` reads a shard front to back in large requests (no index needed).
* `decode_video` (PyAV, decoder threads on) and `decode_image` (Pillow) give uint8 RGB.
* `iter_video` is what stream inference consumes: one video's frames, in order, in
  chunks resized for the model, each saying its source size (masks go back at source
  resolution) and whether the stream state must be reset before it. Bad input becomes
  an `InputError` passed to `on_error`, and the video goes on after it: the state is
  reset wherever frames are missing (a gap, an undecodable sample) or the frame size
  changes, because a carried state is only valid for consecutive frames of one size.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby

import av
import av.error
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..schemas.errors import ErrorKind, InputError
from .index import VideoRun
from .samples import key_of, split_name, unsafe_name
from .storage import Store, StorageError, redact_url
from .tarscan import ChunkReader, MemberScan

ErrorSink = Callable[[InputError], None]
STREAM_CHUNK = 8 << 20
COALESCE_GAP = 64 << 10  # members closer than this are fetched in one request
COALESCE_MAX = 32 << 20  # ... up to this many bytes per request


# --- model input size -----------------------------------------------------------------


@dataclass(frozen=True)
class ResizeRule:
    """The official TV3S test-pipeline size rule (mmseg Resize keep_ratio + AlignedResize).

    The frame is scaled by min(long/max(w, h), short/min(w, h)) with (long, short) =
    `scale` (853, 480 by default), each side rounded half up, then each side rounded up
    to a multiple of `size_divisor`. `scale=None` keeps the source size.
    """

    scale: tuple[int, int] | None = (853, 480)
    size_divisor: int = 32

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the model input for a source frame of width x height."""
        if self.scale is None:
            return width, height
        long_edge, short_edge = max(self.scale), min(self.scale)
        factor = min(long_edge / max(width, height), short_edge / min(width, height))
        w, h = int(width * factor + 0.5), int(height * factor + 0.5)
        d = self.size_divisor
        return -(-w // d) * d, -(-h // d) * d


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


# --- bytes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleBytes:
    media: bytes
    meta: bytes | None


def read_sample(row: dict, store: Store) -> SampleBytes:
    """The media (and json) bytes of an index row, with one ranged request when they are adjacent."""
    spans = [(row["media_offset"], row["media_size"])]
    if row.get("meta_offset") is not None:
        spans.append((row["meta_offset"], row["meta_size"]))
    start = min(o for o, _ in spans)
    end = max(o + s for o, s in spans)
    if end - start - sum(s for _, s in spans) <= COALESCE_GAP:
        blob = store.read(row["shard"], start, end)
        parts = [blob[o - start : o - start + s] for o, s in spans]
    else:
        parts = [store.read(row["shard"], o, o + s) for o, s in spans]
    return SampleBytes(parts[0], parts[1] if len(parts) > 1 else None)


def read_media_batch(rows: Sequence[dict], store: Store) -> list[bytes]:
    """Media bytes of several rows of one shard, in few requests (neighbouring members coalesced)."""
    out: list[bytes] = []
    for group in _coalesced(rows):
        start = group[0]["media_offset"]
        end = group[-1]["media_offset"] + group[-1]["media_size"]
        blob = store.read(group[0]["shard"], start, end)
        out += [blob[r["media_offset"] - start : r["media_offset"] - start + r["media_size"]] for r in group]
    return out


def _coalesced(rows: Sequence[dict]) -> Iterator[list[dict]]:
    group: list[dict] = []
    for r in rows:
        if group:
            last = group[-1]
            gap = r["media_offset"] - (last["media_offset"] + last["media_size"])
            span = r["media_offset"] + r["media_size"] - group[0]["media_offset"]
            if r["shard"] != last["shard"] or not 0 <= gap <= COALESCE_GAP or span > COALESCE_MAX:
                yield group
                group = []
        group.append(r)
    if group:
        yield group


@dataclass(frozen=True)
class ShardSample:
    """One sample of a streamed shard: its key and {extension: bytes}."""

    key: str
    members: dict[str, bytes]


def stream_shard(url: str, store: Store, on_error: ErrorSink) -> Iterator[ShardSample]:
    """Every sample of a shard in order, read front to back in large requests.

    Unsafe and extensionless members are reported and skipped; a damaged archive yields
    its intact samples and then reports the damage.
    """
    safe_url = redact_url(url)
    try:
        size = store.size(url)
        reader = ChunkReader(lambda s, e: store.read(url, s, e), size, STREAM_CHUNK)
        scan = MemberScan(reader.read_at, size)
        named = ((m, split_name(m.name)) for m in scan if m.regular)
        for key, group in groupby(named, key=lambda pair: pair[1][0] if pair[1] else None):
            members = list(group)
            if key is None or any(unsafe_name(m.name) for m, _ in members):
                for m, _ in members:
                    on_error(InputError(kind=ErrorKind.unsafe_member_name if unsafe_name(m.name) else
                                        ErrorKind.unknown_member, stage="read", url=safe_url, member=m.name,
                                        message="member skipped: its name is unsafe or has no extension",
                                        hint="re-pack with relative member names KEY.ext"))
                continue
            if scan.cut_through(key, key_of):
                break  # reported below with the damage
            yield ShardSample(key, {ext: reader.read_at(m.offset, m.size) for m, (_, ext) in members})
        if scan.defect is not None:
            on_error(InputError(kind=scan.defect.kind, stage="read", url=safe_url, member=scan.defect.member,
                                message=str(scan.defect),
                                hint="re-upload or re-create the shard; the samples before the damage were read"))
    except StorageError as exc:
        on_error(exc.record)


# --- decoding -------------------------------------------------------------------------


class DecodeError(Exception):
    """A member does not decode; `frames` says how many frames came out before the failure."""

    def __init__(self, kind: ErrorKind, message: str, hint: str, frames: int = 0):
        super().__init__(message)
        self.kind, self.hint, self.frames = kind, hint, frames


REENCODE = "re-encode it, e.g. ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4, and re-pack"


def decode_video(data: bytes) -> Iterator[np.ndarray]:
    """Frames of an encoded video as uint8 RGB [H, W, 3], in presentation order.

    Raises DecodeError for an unreadable container, a codec this FFmpeg cannot decode,
    a video without frames, or damage mid-stream (after yielding the frames before it).
    """
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.error.FFmpegError as exc:
        raise DecodeError(ErrorKind.corrupt_member, f"not a readable video container ({exc})", REENCODE) from exc
    count = 0
    with container:
        if not container.streams.video:
            raise DecodeError(ErrorKind.no_frames, "the container has no video stream (or it has no frames)",
                              REENCODE)
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise DecodeError(ErrorKind.unsupported_codec, "this FFmpeg has no decoder for the video stream's codec",
                              REENCODE)
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                count += 1
        except av.error.FFmpegError as exc:
            kind = ErrorKind.unsupported_codec if isinstance(exc, av.error.DecoderNotFoundError) else \
                ErrorKind.corrupt_member
            raise DecodeError(kind, f"decoding failed after {count} frames ({exc})", REENCODE, count) from exc
    if count == 0:
        raise DecodeError(ErrorKind.no_frames, "the video has no decodable frames", REENCODE)


@dataclass(frozen=True)
class Image8:
    """A decoded frame and, when it was not 8-bit RGB, the mode it was converted from."""

    rgb: np.ndarray
    converted_from: str | None


CONVERTIBLE = frozenset({"L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "1", "La", "RGBa"})
SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def decode_image(data: bytes) -> Image8:
    """uint8 RGB [H, W, 3] from JPEG/PNG bytes; other modes converted (16-bit scaled by 1/257)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = img.mode
            if mode == "RGB":
                return Image8(np.asarray(img, dtype=np.uint8), None)
            if mode in SIXTEEN_BIT:
                wide = np.asarray(img).astype(np.uint32)
                grey = ((np.clip(wide, 0, 65535) + 128) // 257).astype(np.uint8)
                return Image8(np.repeat(grey[..., None], 3, axis=2), mode)
            if mode in CONVERTIBLE:
                return Image8(np.asarray(img.convert("RGB"), dtype=np.uint8), mode)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DecodeError(ErrorKind.corrupt_member, f"not a readable image ({exc})",
                          "replace the frame with a valid JPEG/PNG and re-pack") from exc
    raise DecodeError(ErrorKind.bad_image_format, f"image mode {mode} cannot be turned into 8-bit RGB",
                      "convert the frames to 8-bit RGB (e.g. PIL Image.convert('RGB')) and re-pack")


# --- one video, in order --------------------------------------------------------------


@dataclass(frozen=True)
class FrameOrigin:
    """Where one decoded frame lives: shard URL, tar member, position inside the member."""

    url: str
    member: str
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
    every frame, so results can point back at them.
    """

    video_id: str
    reset: bool
    sample_index: int
    frame_index: int
    frames: np.ndarray
    source_size: tuple[int, int]
    sources: tuple[FrameOrigin, ...] = ()
    reset_reason: str | None = None


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
    reported_modes: tuple[str, ...] = ()


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
) -> Iterator[FrameChunk]:
    """All frames of one video's runs (from `plan_videos`), in order, in chunks of <= `chunk`.

    The next batch of bytes is fetched while the current one decodes.
    """
    for item in iter_units(runs, store, on_error, None, resize, chunk):
        yield item  # without unit_of, only chunks come


def iter_units(
    runs: Sequence[VideoRun],
    store: Store,
    on_error: ErrorSink,
    unit_of: Callable[[dict], int] | None,
    resize: ResizeRule = ResizeRule(),
    chunk: int = 16,
    resume: CursorState | None = None,
) -> Iterator[FrameChunk | UnitEnd]:
    """`iter_video`, cut into commit units: a chunk never spans two units (`unit_of(row)`), and
    after each unit comes a `UnitEnd` with the cursor state to resume from. `resume` continues
    a video read elsewhere up to such a point, exactly as if it had never stopped.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 frame, got {chunk}")
    if not runs:
        return
    cursor = _Cursor(runs[0].video_id, resize, chunk, on_error)
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


def iter_videos(runs: Iterable[VideoRun], store: Store, on_error: ErrorSink, resize: ResizeRule = ResizeRule(),
                chunk: int = 16) -> Iterator[FrameChunk]:
    """`iter_video` for every video of a plan, one video after the other."""
    for _, video_runs in groupby(runs, key=lambda r: r.video_id):
        yield from iter_video(list(video_runs), store, on_error, resize, chunk)


def _read_batches(run: VideoRun) -> Iterator[list[dict]]:
    """Segments one at a time; frames in coalesced groups (one request for many small members)."""
    if run.sample_type == "segment":
        yield from ([r] for r in run.rows)
    else:
        yield from _coalesced(run.rows)


def _fetch(rows: list[dict], store: Store) -> list[bytes | StorageError]:
    try:
        return read_media_batch(rows, store)
    except StorageError as exc:  # every sample of the batch is lost; each is reported
        return [exc] * len(rows)


class _Cursor:
    """Gathers one video's decoded frames into chunks and decides where the stream state restarts."""

    def __init__(self, video_id: str, resize: ResizeRule, chunk: int, on_error: ErrorSink):
        self.video_id, self.resize, self.chunk, self.on_error = video_id, resize, chunk, on_error
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
        return CursorState(run, self.next_frame, self.size, self.previous, self.reset, self.reason,
                           tuple(sorted(self.reported_modes)))

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

    def sample(self, row: dict, blob: bytes | StorageError) -> Iterator[FrameChunk]:
        if isinstance(blob, StorageError):
            self._error(row, blob.record.kind, blob.record.message, blob.record.hint, stage="read")
            yield from self.restart()
        elif row["sample_type"] == "segment":
            yield from self._segment(row, blob)
        else:
            yield from self._frame(row, blob)

    def _segment(self, row: dict, blob: bytes) -> Iterator[FrameChunk]:
        yield from self.flush()  # a chunk never spans two segments
        start = row["start_frame"]
        if start is not None and self.previous is not None and start != self.next_frame:
            yield from self._count_mismatch(self.previous, row, start)
        if start is not None:
            self.next_frame = start
        first = self.next_frame
        self.position = 0
        try:
            for rgb in decode_video(blob):
                yield from self._add(row, rgb)
        except DecodeError as exc:
            self._error(row, exc.kind, str(exc), exc.hint, frame=self.next_frame if exc.frames else None)
            yield from self.restart()
            return
        decoded = self.next_frame - first
        if row["frames"] is not None and decoded != row["frames"]:
            self._error(row, ErrorKind.corrupt_member if decoded < row["frames"] else ErrorKind.bad_metadata,
                        f"decoded {decoded} frames but the json says {row['frames']} (truncated?); the stream state "
                        "restarts after it", REENCODE, frame=self.next_frame)
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
        self._error(previous, ErrorKind.corrupt_member if missing > 0 else ErrorKind.bad_metadata,
                    f"segment {previous['index']} ends at frame {self.next_frame} but segment {row['index']} starts "
                    f"at frame {start}: {what}; the stream state restarts",
                    "re-encode or re-pack the segment; start_frame must be the frame count of the segments before",
                    frame=self.next_frame)
        yield from self.restart()

    def _frame(self, row: dict, blob: bytes) -> Iterator[FrameChunk]:
        self.next_frame = row["index"]
        self.position = 0
        try:
            image = decode_image(blob)
        except DecodeError as exc:
            self._error(row, exc.kind, str(exc), exc.hint, frame=row["index"])
            yield from self.restart()
            return
        if image.converted_from and image.converted_from not in self.reported_modes:
            self.reported_modes.add(image.converted_from)
            self._error(row, ErrorKind.bad_image_format,
                        f"frames in mode {image.converted_from} (the first is frame {row['index']}) are converted "
                        "to 8-bit RGB", "store frames as 8-bit RGB JPEG/PNG", frame=row["index"])
        yield from self._add(row, image.rgb)

    def _add(self, row: dict, rgb: np.ndarray) -> Iterator[FrameChunk]:
        size = (rgb.shape[1], rgb.shape[0])
        if self.size is not None and size != self.size:
            self._error(row, ErrorKind.frame_size_changed,
                        f"frame {self.next_frame} is {size[0]}x{size[1]} but the frames before are "
                        f"{self.size[0]}x{self.size[1]}; the stream state restarts here",
                        "keep one resolution per video (re-encode or resize the odd segment or frames)",
                        frame=self.next_frame)
            yield from self.restart("frame_size_changed")
        self.size = size
        if not self.frames:
            self.first_frame, self.sample_index = self.next_frame, row["index"]
        self.frames.append(rgb)
        self.refs.append(FrameOrigin(row["shard"], row["media_member"], self.position, row["index"]))
        self.position += 1
        self.next_frame += 1
        if len(self.frames) == self.chunk:
            yield from self.flush()

    def flush(self) -> Iterator[FrameChunk]:
        if not self.frames:
            return
        batch = np.stack(self.frames)
        refs = tuple(self.refs)
        self.frames, self.refs = [], []
        resized = resize_frames(batch, self.resize.size_for(*self.size))
        yield FrameChunk(self.video_id, self.reset, self.sample_index, self.first_frame, resized, self.size, refs,
                         self.reason if self.reset else None)
        self.reset = False
        self.reason = None

    def _error(self, row: dict, kind: ErrorKind, message: str, hint: str, frame: int | None = None,
               stage: str = "decode") -> None:
        index = {"segment_index": row["index"]} if row["sample_type"] == "segment" else {}
        self.on_error(InputError(kind=kind, stage=stage, url=row["shard"], member=row["media_member"],
                                 video_id=row["video_id"], frame_index=frame, message=message, hint=hint, **index))
