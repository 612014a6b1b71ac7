"""The shard index table (Arrow/Parquet) and the per-sample json metadata.

The index is the contract between `tv3s index` and everything that plans or reads: one
row per sample saying which video it belongs to, where it sits in the video's chain, and
exactly which bytes of which shard hold it, so a reader needs one ranged request and no
scan. The schema is versioned in the Parquet metadata; a reader refuses an index of
another version with the command that rebuilds it.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from .manifest import ERRORS_SCHEMA

INDEX_VERSION = 2  # 2: shard_version
VERSION_KEY = b"tv3s.index.version"

INDEX_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("sample_type", pa.string(), nullable=False),  # "segment" | "frame"
        pa.field("index", pa.int64(), nullable=False),  # segment_index or frame index
        pa.field("shard", pa.string(), nullable=False),  # shard URL (never with credentials)
        pa.field("shard_version", pa.string()),  # the shard file's ETag, or size@mtime on disk, when indexed
        pa.field("shard_order", pa.int32(), nullable=False),  # position of the shard in the indexed list
        pa.field("position", pa.int32(), nullable=False),  # sample number inside the shard
        pa.field("key", pa.string(), nullable=False),
        pa.field("media_member", pa.string(), nullable=False),
        pa.field("media_offset", pa.int64(), nullable=False),  # byte offset of the member's data
        pa.field("media_size", pa.int64(), nullable=False),
        pa.field("meta_member", pa.string()),
        pa.field("meta_offset", pa.int64()),
        pa.field("meta_size", pa.int64()),
        pa.field("fps", pa.float64()),
        pa.field("start_frame", pa.int64()),
        pa.field("frames", pa.int64()),  # frame count of a segment, when its json says
        pa.field("camera", pa.string()),
    ],
    metadata={VERSION_KEY: str(INDEX_VERSION).encode()},
)

# The index's error records: the job errors table's columns without job_id (one definition, from InputError).
INDEX_ERRORS_SCHEMA = pa.schema([f for f in ERRORS_SCHEMA if f.name != "job_id"])


class SegmentMeta(BaseModel):
    """``KEY.json`` of a video segment. Extra fields are kept by users and ignored here."""

    model_config = ConfigDict(extra="ignore")

    video_id: str = Field(min_length=1)
    segment_index: int = Field(ge=0)
    fps: float | None = Field(default=None, gt=0)
    start_frame: int | None = Field(default=None, ge=0)
    frames: int | None = Field(default=None, ge=0, description="frame count: lets a reader notice a truncated segment")
    camera: str | None = None


class FrameMeta(BaseModel):
    """Optional ``KEY.json`` of a frame; missing fields come from the key pattern."""

    model_config = ConfigDict(extra="ignore")

    video_id: str | None = Field(default=None, min_length=1)
    frame_index: int | None = Field(default=None, ge=0)
    fps: float | None = Field(default=None, gt=0)
    camera: str | None = None
