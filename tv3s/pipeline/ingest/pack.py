"""Turn a folder (or s3:// prefix) of videos or frame folders into WebDataset shards in tv3s's layout.

Why: users bring footage as files; the data plane reads shards. Packing copies the
encoded bytes as they are (no re-encoding, no quality loss) and writes the json that
`tv3s index` needs, so pack -> index -> read returns the source frames. Which files make
which video is `sources`' rule (the one jobs over raw files use too).

`segment_seconds` cuts long videos into segments at key frames, by remuxing packets.
Each shard is written whole to a temporary file and then moved or uploaded, so a shard
at DEST is either complete or absent.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import av.error
import webdataset as wds
from tqdm import tqdm

from ...schemas.errors import ErrorKind, InputError
from ..storage import Listed, StorageError, Store, redact_url
from .sources import SourceVideo, discover, frame_numbers

MUXERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
TAR_OVERHEAD = 3 * 512  # header + padding per member, pessimistic


@dataclass(frozen=True)
class PackOptions:
    max_size: int = 1 << 30  # bytes per shard (a single larger sample gets a shard of its own)
    max_count: int = 100_000  # samples per shard
    segment_seconds: float | None = None  # cut videos into segments of about this length
    prefix: str = "shard"


@dataclass
class PackResult:
    shards: list[str] = field(default_factory=list)
    videos: int = 0
    samples: int = 0
    errors: list[InputError] = field(default_factory=list)

    @property
    def pattern(self) -> str:
        """A brace pattern naming every shard written, for `tv3s index`."""
        if not self.shards:
            return ""
        if len(self.shards) == 1:
            return self.shards[0]
        head, tail = self.shards[0].rsplit("-", 1)
        last = self.shards[-1].rsplit("-", 1)[1]
        return f"{head}-{{{tail.split('.')[0]}..{last.split('.')[0]}}}.tar"


# --- what to pack ---------------------------------------------------------------------


def video_samples(video: SourceVideo, segment_seconds: float | None, store: Store) -> Iterator[dict]:
    """WebDataset sample dicts of one video, in order, one at a time (a drive can be larger than memory).

    Unreadable videos raise av errors; files that cannot be read, StorageError.
    """
    if video.sample_type == "frame":
        for number, file in zip(frame_numbers([f.name for f in video.files]), video.files):
            meta = {"video_id": video.video_id, "frame_index": number, "source": posixpath.basename(file.name)}
            yield {
                "__key__": f"{video.video_id}/{number:06d}",
                _extension(file): store.read_all(file.url),
                "json": json.dumps(meta).encode(),
            }
        return
    index = start_frame = 0
    for file in video.files:
        for data, frames, fps in _segments(file, segment_seconds, store):
            meta = {
                "video_id": video.video_id,
                "segment_index": index,
                "start_frame": start_frame,
                "frames": frames,
                "source": posixpath.basename(file.name),
            }
            if fps:
                meta["fps"] = fps
            yield {
                "__key__": f"{video.video_id}/{index:06d}",
                _extension(file): data,
                "json": json.dumps(meta).encode(),
            }
            index += 1
            start_frame += frames


def _extension(file: Listed) -> str:
    return posixpath.splitext(file.name)[1].lower().lstrip(".")


def _segments(file: Listed, seconds: float | None, store: Store) -> Iterator[tuple[bytes, int, float | None]]:
    """(bytes, frame count, fps) of each segment: the file as is, or cut at key frames."""
    with store.open(file.url, file.size) as raw, av.open(raw) as src:
        if not src.streams.video:
            raise av.error.InvalidDataError(0, "no video stream", redact_url(file.url))
        stream = src.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else None
        if not seconds:
            frames = stream.frames or sum(1 for p in src.demux(stream) if p.size)
            yield store.read_all(file.url), frames, fps
            return
        segment: list[av.Packet] = []
        start = None
        for packet in src.demux(stream):
            if not packet.size:
                continue
            if packet.is_keyframe and segment and (packet.pts - start) * stream.time_base >= seconds:
                yield _remux(segment, stream, file), len(segment), fps
                segment = []
            if not segment:
                start = packet.pts
            segment.append(packet)
        if segment:
            yield _remux(segment, stream, file), len(segment), fps


def _remux(packets: list, stream, file: Listed) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=MUXERS["." + _extension(file)]) as out:
        target = out.add_stream_from_template(stream)
        for packet in packets:
            packet.stream = target
            out.mux(packet)
    return buf.getvalue()


# --- writing shards -------------------------------------------------------------------


class ShardSink:
    """Fills shards up to the size and count limits; each goes to DEST complete or not at all."""

    def __init__(self, dest: str, store: Store, options: PackOptions, result: PackResult):
        self.dest, self.store, self.options, self.result = dest.rstrip("/"), store, options, result
        self._tmp: tempfile._TemporaryFileWrapper | None = None
        self._writer: wds.TarWriter | None = None
        self._size = self._count = 0

    def write(self, sample: dict) -> None:
        size = sum(len(v) + TAR_OVERHEAD for k, v in sample.items() if k != "__key__")
        if self._writer and (self._count >= self.options.max_count or self._size + size > self.options.max_size):
            self.close()
        if self._writer is None:
            self._tmp = tempfile.NamedTemporaryFile(suffix=".tar", delete=False)  # noqa: SIM115 (closed by close())
            self._writer = wds.TarWriter(self._tmp, encoder=False)
        self._writer.write(sample)
        self._size += size
        self._count += 1

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        url = f"{self.dest}/{self.options.prefix}-{len(self.result.shards):06d}.tar"
        try:
            self.store.put(self._tmp.name, url)
        finally:
            os.unlink(self._tmp.name)
        self.result.shards.append(url)
        self._writer, self._tmp, self._size, self._count = None, None, 0, 0


def pack(
    src: str,
    dest: str,
    store: Store,
    options: PackOptions = PackOptions(),
    progress: bool = False,
    overwrite: bool = False,
) -> PackResult:
    """Pack every video under the folder or prefix `src` into shards `DEST/{prefix}-000000.tar`, ...
    in video order."""
    videos, errors = discover(src, store, stage="pack")  # a wrong SRC fails before DEST is touched
    existing = store.glob(f"{dest.rstrip('/')}/{options.prefix}-*.tar")
    if existing and not overwrite:
        raise FileExistsError(
            f"{redact_url(dest)} already holds {len(existing)} {options.prefix}-*.tar shards; "
            "pass another DEST, another --prefix, or --overwrite"
        )
    for url in existing:
        store.remove(url)
    result = PackResult(errors=errors)
    sink = ShardSink(dest, store, options, result)
    for video in tqdm(videos, unit="video", desc="pack", disable=not progress):
        written = 0
        try:
            for sample in video_samples(video, options.segment_seconds, store):
                sink.write(sample)
                written += 1
        except (av.error.FFmpegError, OSError, StorageError) as exc:
            result.errors.append(_not_packed(exc, written, video, src))
        result.videos += written > 0
        result.samples += written
    sink.close()
    return result


def _not_packed(exc: Exception, written: int, video: SourceVideo, src: str) -> InputError:
    """The record of a video packed in part or not at all: a storage failure keeps its own kind."""
    done = f"its first {written} samples were packed, the rest not" if written else "not packed"
    if isinstance(exc, StorageError):
        return exc.record.model_copy(
            update={"stage": "pack", "video_id": video.video_id, "message": f"{done}: {exc.record.message}"}
        )
    return InputError(
        kind=ErrorKind.corrupt_member,
        stage="pack",
        url=redact_url(src),
        video_id=video.video_id,
        message=f"{done}: {exc}",
        hint="check that the file plays (ffprobe FILE) or re-encode it",
    )
