"""The two sample formats of a shard, as pure functions over member names and json bytes.

A WebDataset sample is the run of consecutive tar members sharing a key (the member
name up to the first dot of its base name, exactly webdataset's rule, so our index and
`wds.WebDataset` agree on what a sample is):

1. *video segment*: ``KEY.mp4`` (.mkv .webm .avi .mov) + ``KEY.json`` holding
   ``video_id``, ``segment_index`` and optionally ``fps``, ``start_frame``, ``frames``,
   ``camera``;
2. *frame*: ``KEY.jpg`` (.jpeg .png) + optional ``KEY.json``; video id and frame index
   come from the json or, failing that, from a key pattern such as
   ``{video_id}/{frame:06d}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

from pydantic import ValidationError

from ...schemas.errors import ErrorKind
from ...schemas.index import FrameMeta, SegmentMeta
from .decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

VIDEO_EXTS = frozenset(e.lstrip(".") for e in VIDEO_EXTENSIONS)
IMAGE_EXTS = frozenset(e.lstrip(".") for e in IMAGE_EXTENSIONS)
META_EXT = "json"
DEFAULT_KEY_PATTERN = "{video_id}/{frame}"
KEY_RE = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


class SampleError(ValueError):
    """A sample breaks the format; `kind` says how (the message says what to do)."""

    def __init__(self, kind: ErrorKind, message: str, hint: str = ""):
        super().__init__(message)
        self.kind = kind
        self.hint = hint


@dataclass(frozen=True)
class SampleId:
    """Where a sample belongs: its video and its position in the video's chain."""

    video_id: str
    sample_type: str  # "segment" | "frame"
    index: int
    fps: float | None = None
    start_frame: int | None = None
    frames: int | None = None
    camera: str | None = None


def split_name(name: str) -> tuple[str, str] | None:
    """(key, extension) of a member name, webdataset's rule; None when it has no extension."""
    match = KEY_RE.match(name)
    return (match.group(1), match.group(2).lower()) if match else None


def key_of(name: str) -> str:
    """The sample key of a member name (the whole name when it has no extension)."""
    return (split_name(name) or (name, ""))[0]


def media_kind(ext: str) -> str | None:
    """'segment' for a video extension, 'frame' for an image one, None otherwise."""
    if ext in VIDEO_EXTS:
        return "segment"
    if ext in IMAGE_EXTS:
        return "frame"
    return None


def unsafe_name(name: str) -> bool:
    """True for absolute names, '..' components or drive letters: they could escape a folder on extract."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or bool(re.match(r"^[A-Za-z]:", name))


def not_utf8(name: str) -> bool:
    """True for a name holding bytes that are not UTF-8 (tarscan keeps them as surrogates):
    the index stores names as UTF-8 text, so it could neither hold nor match such a name."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@lru_cache(maxsize=32)
def key_regex(pattern: str) -> re.Pattern[str]:
    """Compile a key pattern: {video_id} matches any text, {frame} / {frame:06d} digits."""
    out, pos = [], 0
    fields = set()
    for match in re.finditer(r"\{(\w+)(?::[^}]*)?\}", pattern):
        out.append(re.escape(pattern[pos : match.start()]))
        name = match.group(1)
        if name not in ("video_id", "frame") or name in fields:
            raise ValueError(f"key pattern {pattern!r}: use {{video_id}} and {{frame}} once each, not {{{name}}}")
        fields.add(name)
        out.append(r"(?P<video_id>.+)" if name == "video_id" else r"(?P<frame>\d+)")
        pos = match.end()
    out.append(re.escape(pattern[pos:]))
    if fields != {"video_id", "frame"}:
        raise ValueError(f"key pattern {pattern!r} needs both {{video_id}} and {{frame}}")
    return re.compile("^" + "".join(out) + "$")


def parse_json(data: bytes) -> dict:
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise SampleError(
            ErrorKind.bad_metadata,
            f"the json does not parse ({exc})",
            "write valid UTF-8 JSON (json.dumps) for every sample",
        ) from exc
    if not isinstance(meta, dict):
        raise SampleError(
            ErrorKind.bad_metadata,
            f"the json is a {type(meta).__name__}, not an object",
            "write a JSON object with video_id and the index",
        )
    return meta


def identify(key: str, sample_type: str, meta: dict | None, key_pattern: str = DEFAULT_KEY_PATTERN) -> SampleId:
    """The video and position of a sample from its json (and, for frames, its key)."""
    if sample_type == "segment":
        if meta is None:
            raise SampleError(
                ErrorKind.bad_metadata,
                "a video segment needs a KEY.json with video_id and segment_index",
                "add the json member (tv3s shards pack writes it)",
            )
        parsed = _validated(SegmentMeta, meta)
        return SampleId(
            parsed.video_id,
            "segment",
            parsed.segment_index,
            parsed.fps,
            parsed.start_frame,
            parsed.frames,
            parsed.camera,
        )
    fields = _validated(FrameMeta, meta or {})
    video_id, frame = fields.video_id, fields.frame_index
    if video_id is None or frame is None:
        match = key_regex(key_pattern).match(key)
        if match is None:
            raise SampleError(
                ErrorKind.bad_metadata,
                f"no video id / frame index: no json fields and key {key!r} does not match "
                f"the key pattern {key_pattern!r}",
                "name frames like VIDEO/000123.jpg, pass --key-pattern, or add a json with video_id and frame_index",
            )
        video_id = video_id if video_id is not None else match.group("video_id")
        frame = frame if frame is not None else int(match.group("frame"))
    return SampleId(video_id, "frame", frame, fields.fps, camera=fields.camera)


def _validated(model, meta: dict):
    try:
        return model.model_validate(meta)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'json'}: {e['msg']}" for e in exc.errors())
        raise SampleError(
            ErrorKind.bad_metadata,
            f"the json is not valid sample metadata ({problems})",
            f"fix the fields: {', '.join(model.model_fields)}",
        ) from exc
