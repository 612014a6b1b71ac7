"""Index rows for raw media files (videos as they were recorded, folders of frames), not shards.

A raw video file is indexed like a shard's video sample: one row per file, `sample_type`
segment, the file's URL in `shard` and an empty `media_member` (the whole object is the
media, there is no tar member), so planning, chains and resume points work unchanged and
the reader decodes straight from the file. Each file is probed by PyAV through a ranged
file object (`Store.open`): only the container's header and index are read, not the file.
The probe gives the frame rate and, when the container records it, the frame count, which
lets the reader notice a file that decodes short and numbers a folder's next segment.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import av.error
import pyarrow as pa

from ...schemas.errors import ErrorKind, InputError
from ...schemas.index import INDEX_SCHEMA
from ..storage import Listed, StorageError, Store, redact_url
from .decode import REENCODE
from .sources import SourceVideo, frame_numbers

WHOLE_FILE = ""  # media_member of a row whose media is the whole object at `shard`
REENCODE_FILE = REENCODE.replace(", and re-pack", "")


class ProbeError(Exception):
    """A file PyAV cannot take as a video; `kind` says how."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Probe:
    """What a container says without decoding: frame rate and frame count (None when unrecorded)."""

    fps: float | None
    frames: int | None


def probe_video(file: Listed, store: Store) -> Probe:
    """Probe one video file with ranged reads; raises ProbeError naming what is wrong."""
    try:
        with store.open(file.url, file.size) as raw, av.open(raw, mode="r") as container:
            if not container.streams.video:
                raise ProbeError(ErrorKind.no_frames, "the file has no video stream")
            stream = container.streams.video[0]
            if stream.codec_context is None:
                raise ProbeError(ErrorKind.unsupported_codec, "this FFmpeg has no decoder for the video's codec")
            fps = float(stream.average_rate) if stream.average_rate else None
            return Probe(fps, int(stream.frames) or None)
    except av.error.FFmpegError as exc:
        raise ProbeError(ErrorKind.corrupt_member, f"not a readable video container ({exc})") from exc


def index_media(
    videos: list[SourceVideo], store: Store, first_order: int = 0, workers: int = 8
) -> tuple[pa.Table, list[InputError]]:
    """Index rows of raw videos and frame folders (files numbered from `first_order` in `shard_order`);
    a file that cannot be probed is reported and left out, the rest indexed."""
    files = [f for video in videos if video.sample_type == "segment" for f in video.files]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        probes = dict(zip((f.url for f in files), pool.map(lambda f: _probed(f, store), files)))
    rows: list[dict] = []
    errors: list[InputError] = []
    order = first_order
    for video in videos:
        for row in _video_rows(video, probes, errors):
            rows.append(row | {"shard_order": order})
            order += 1
    return pa.Table.from_pylist(rows, schema=INDEX_SCHEMA), errors


def _probed(file: Listed, store: Store) -> Probe | InputError:
    try:
        return probe_video(file, store)
    except ProbeError as exc:
        return InputError(kind=exc.kind, stage="index", url=redact_url(file.url), message=str(exc), hint=REENCODE_FILE)
    except StorageError as exc:
        return exc.record.model_copy(update={"stage": "index"})


def _video_rows(video: SourceVideo, probes: dict[str, Probe | InputError], errors: list[InputError]) -> Iterator[dict]:
    """The rows of one video: a segment per probed file (numbered on across the folder), or a frame per image."""
    if video.sample_type == "frame":
        for number, file in zip(frame_numbers([f.name for f in video.files]), video.files):
            yield _row(video.video_id, "frame", number, file)
        return
    start: int | None = 0
    for index, file in enumerate(video.files):
        probe = probes[file.url]
        if isinstance(probe, InputError):
            errors.append(probe.model_copy(update={"video_id": video.video_id, "segment_index": index}))
            start = None  # the frames after a file left out cannot be numbered from the counts
            continue
        yield _row(video.video_id, "segment", index, file, probe, start)
        start = None if start is None or probe.frames is None else start + probe.frames


def _row(
    video_id: str, sample_type: str, index: int, file: Listed, probe: Probe | None = None, start: int | None = None
) -> dict:
    return {
        "video_id": video_id,
        "sample_type": sample_type,
        "index": index,
        "shard": redact_url(file.url),
        "shard_version": file.version,
        "position": 0,
        "key": file.name,
        "media_member": WHOLE_FILE,
        "media_offset": 0,
        "media_size": file.size,
        "meta_member": None,
        "meta_offset": None,
        "meta_size": None,
        "fps": probe.fps if probe else None,
        "start_frame": start,
        "frames": probe.frames if probe else None,
        "camera": None,
    }
