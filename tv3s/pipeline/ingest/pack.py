"""Turn a folder of videos or frame folders into WebDataset shards in tv3s's layout.

Why: users bring footage as files; the data plane reads shards. Packing copies the
encoded bytes as they are (no re-encoding, no quality loss) and writes the json that
`tv3s index` needs, so pack -> index -> read returns the source frames.

Which files make which video (folders are walked recursively, names in natural order):

* a video file directly in SRC is a video of its own, id = its name without extension;
* a sub-folder holding video files is ONE video (a drive recorded in consecutive
  files, as dashcams do), id = the folder's path under SRC, segments = its files;
* a folder holding images is one frame sequence, id = its path under SRC (SRC's own
  name for images directly in SRC). Frame numbers come from the trailing digits of the
  file names when every name has them (so a missing file shows up as a gap), else
  from the position.

`segment_seconds` cuts long videos into segments at key frames, by remuxing packets.
Each shard is written whole to a temporary file and then moved or uploaded, so a shard
at DEST is either complete or absent.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.error
import webdataset as wds
from tqdm import tqdm

from ...schemas.errors import ErrorKind, InputError
from ..storage import Store, redact_url
from .decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

MUXERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
TAR_OVERHEAD = 3 * 512  # header + padding per member, pessimistic


def natural_key(name: str) -> tuple:
    """Sort key putting frame_2 before frame_10 (digit runs compare as numbers).

    Splitting on digit runs always alternates text, number, text, ... so two
    keys never compare a string with an int. The raw name breaks ties such as
    frame_01 vs frame_1 deterministically.
    """
    parts = re.split(r"(\d+)", name)
    return (*(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name)


@dataclass(frozen=True)
class PackOptions:
    max_size: int = 1 << 30  # bytes per shard (a single larger sample gets a shard of its own)
    max_count: int = 100_000  # samples per shard
    segment_seconds: float | None = None  # cut videos into segments of about this length
    prefix: str = "shard"


@dataclass(frozen=True)
class SourceVideo:
    video_id: str
    sample_type: str  # "segment" | "frame"
    files: tuple[Path, ...]


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


def discover(src: Path) -> tuple[list[SourceVideo], list[InputError]]:
    """The videos under `src` by the folder rules of this module, in natural order."""
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: not a folder; pass a folder of videos or of frame folders")
    videos: list[SourceVideo] = []
    errors: list[InputError] = []
    for folder in sorted([src, *(p for p in src.rglob("*") if p.is_dir())], key=lambda p: natural_key(str(p))):
        files = sorted(
            (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
            key=lambda p: natural_key(p.name),
        )
        clips = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS]
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        rel = folder.relative_to(src).as_posix()
        if folder == src:
            videos += [SourceVideo(p.stem, "segment", (p,)) for p in clips]
        elif clips:
            videos.append(SourceVideo(rel, "segment", tuple(clips)))
        if images and clips and folder != src:
            errors.append(
                InputError(
                    kind=ErrorKind.unknown_member,
                    stage="pack",
                    url=str(folder),
                    message=f"{len(images)} images next to video files; the images are not packed",
                    hint="move the frames into a folder of their own",
                )
            )
        elif images:
            videos.append(SourceVideo(rel if folder != src else src.name, "frame", tuple(images)))
    return videos, errors


def frame_numbers(files: tuple[Path, ...]) -> list[int]:
    """Trailing numbers of the file names if all have distinct ones, else positions 0..n-1."""
    numbers = [re.search(r"(\d+)$", p.stem) for p in files]
    if all(numbers) and len({int(m.group(1)) for m in numbers}) == len(files):
        return [int(m.group(1)) for m in numbers]
    return list(range(len(files)))


def video_samples(video: SourceVideo, segment_seconds: float | None) -> Iterator[dict]:
    """WebDataset sample dicts of one video, in order, one at a time (a drive can be larger than memory).

    Unreadable videos raise av errors.
    """
    if video.sample_type == "frame":
        for number, path in zip(frame_numbers(video.files), video.files):
            ext = path.suffix.lower().lstrip(".")
            meta = {"video_id": video.video_id, "frame_index": number, "source": path.name}
            yield {
                "__key__": f"{video.video_id}/{number:06d}",
                ext: path.read_bytes(),
                "json": json.dumps(meta).encode(),
            }
        return
    index = start_frame = 0
    for path in video.files:
        for data, frames, fps in _segments(path, segment_seconds):
            meta = {
                "video_id": video.video_id,
                "segment_index": index,
                "start_frame": start_frame,
                "frames": frames,
                "source": path.name,
            }
            if fps:
                meta["fps"] = fps
            yield {
                "__key__": f"{video.video_id}/{index:06d}",
                path.suffix.lower().lstrip("."): data,
                "json": json.dumps(meta).encode(),
            }
            index += 1
            start_frame += frames


def _segments(path: Path, seconds: float | None) -> Iterator[tuple[bytes, int, float | None]]:
    """(bytes, frame count, fps) of each segment: the file as is, or cut at key frames."""
    with av.open(str(path)) as src:
        if not src.streams.video:
            raise av.error.InvalidDataError(0, "no video stream", str(path))
        stream = src.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else None
        if not seconds:
            frames = stream.frames or sum(1 for p in src.demux(stream) if p.size)
            yield path.read_bytes(), frames, fps
            return
        segment: list[av.Packet] = []
        start = None
        for packet in src.demux(stream):
            if not packet.size:
                continue
            if packet.is_keyframe and segment and (packet.pts - start) * stream.time_base >= seconds:
                yield _remux(segment, stream, path), len(segment), fps
                segment = []
            if not segment:
                start = packet.pts
            segment.append(packet)
        if segment:
            yield _remux(segment, stream, path), len(segment), fps


def _remux(packets: list, stream, path: Path) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=MUXERS[path.suffix.lower()]) as out:
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
    src: Path,
    dest: str,
    store: Store,
    options: PackOptions = PackOptions(),
    progress: bool = False,
    overwrite: bool = False,
) -> PackResult:
    """Pack every video under `src` into shards `DEST/{prefix}-000000.tar`, ... in video order."""
    existing = store.glob(f"{dest.rstrip('/')}/{options.prefix}-*.tar")
    if existing and not overwrite:
        raise FileExistsError(
            f"{redact_url(dest)} already holds {len(existing)} {options.prefix}-*.tar shards; "
            "pass another DEST, another --prefix, or --overwrite"
        )
    for url in existing:
        store.remove(url)
    videos, errors = discover(src)
    result = PackResult(errors=errors)
    sink = ShardSink(dest, store, options, result)
    for video in tqdm(videos, unit="video", desc="pack", disable=not progress):
        written = 0
        try:
            for sample in video_samples(video, options.segment_seconds):
                sink.write(sample)
                written += 1
        except (av.error.FFmpegError, OSError) as exc:
            done = f"its first {written} samples were packed, the rest not" if written else "not packed"
            result.errors.append(
                InputError(
                    kind=ErrorKind.corrupt_member,
                    stage="pack",
                    url=str(src),
                    video_id=video.video_id,
                    message=f"{done}: {exc}",
                    hint="check that the file plays (ffprobe FILE) or re-encode it",
                )
            )
        result.videos += written > 0
        result.samples += written
    sink.close()
    return result
