"""Typed records of bad input: what failed, where, why, and what to do about it.

Every stage that meets bad input (indexing, reading, decoding, inference) produces one of
these instead of raising through the job: the rest of the video and of the job goes on,
and the record is written to the job's errors table. A record never carries credentials,
and its text is always storable: Parquet strings are UTF-8, and a record that could not be
written would lose every other record with it.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ErrorKind(str, Enum):
    """The kinds of bad input the data plane distinguishes (stable strings: they are stored)."""

    unreachable = "unreachable"  # URL cannot be reached (DNS, connection, timeout after retries)
    forbidden = "forbidden"  # 403 / access denied
    not_found = "not_found"  # 404 / missing object or file
    truncated_tar = "truncated_tar"  # tar ends inside a header or a member
    empty_shard = "empty_shard"  # a shard with no members
    corrupt_member = "corrupt_member"  # member bytes that do not decode (video or image)
    unsupported_codec = "unsupported_codec"  # a stream PyAV/FFmpeg cannot decode
    no_frames = "no_frames"  # a video with zero decodable frames
    frame_size_changed = "frame_size_changed"  # frames of another size inside one video
    bad_image_format = "bad_image_format"  # grayscale/RGBA/16-bit image where RGB8 is expected (converted or refused)
    unsafe_member_name = "unsafe_member_name"  # '..', an absolute path, or bytes not UTF-8 in a tar member name
    duplicate_key = "duplicate_key"  # the same sample key / (video, index) twice
    bad_metadata = "bad_metadata"  # json that does not parse or lacks required fields
    missing_segment = "missing_segment"  # a gap in a video's chain of segments
    unknown_member = "unknown_member"  # a member that is neither media nor metadata (counted, ignored)
    model_error = "model_error"  # inference failed for this input
    frame_too_small = "frame_too_small"  # frames whose model input would be under the model's minimum side


class InputError(BaseModel):
    """One failed input. ``hint`` tells the user what to do; ``message`` what happened."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ErrorKind
    stage: str = Field(description="index | read | decode | model")
    url: str = Field(description="shard or file URL (never with credentials)")
    member: str | None = Field(default=None, description="tar member name, when the error is inside a shard")
    video_id: str | None = None
    segment_index: int | None = None
    frame_index: int | None = None
    message: str
    hint: str = ""

    @field_validator("stage", "url", "member", "video_id", "message", "hint")
    @classmethod
    def _storable_text(cls, text: str | None) -> str | None:
        return None if text is None else storable(text)

    def __str__(self) -> str:
        where = self.url + (f"::{self.member}" if self.member else "")
        what = (
            f" (video {self.video_id}"
            + (f", segment {self.segment_index}" if self.segment_index is not None else "")
            + ")"
            if self.video_id
            else ""
        )
        return f"{self.kind.value} at {where}{what}: {self.message}" + (f" - {self.hint}" if self.hint else "")


def storable(text: str) -> str:
    """`text` as UTF-8 can hold it: bytes of a name that were not UTF-8 (kept as surrogates by
    the tar scan, as tarfile keeps them) are shown as \\xNN, any other lone surrogate as \\uNNNN."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")
