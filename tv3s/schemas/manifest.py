"""The tables a labeling job outputs: `frames`, `videos`, `errors`, as versioned Arrow schemas.

Defined once, here: the writer builds its Parquet parts from these schemas, the query
layer exposes them as SQL tables, and the README's column reference is generated from
the `description` metadata of each field, so code and documentation cannot drift apart.
`errors` is derived from `tv3s.schemas.errors.InputError`, the record the data plane
produces, so a new field there is a new column here.

Every Parquet part carries `tv3s.table` and `tv3s.schema_version` in its schema
metadata; a reader meeting a version it does not know can say so instead of guessing.
Bump SCHEMA_VERSION when a column changes meaning or type (adding a nullable column
does not need a bump: readers union columns by name).
"""

from __future__ import annotations

import types
import typing
from enum import Enum

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import InputError

SCHEMA_VERSION = 3  # 3: Delta Lake tables, the units ledger, palette as int16 (Delta has no unsigned types)
LOW_CONFIDENCE_THRESHOLD = 0.5  # a pixel is low-confidence when its top-1 probability is below this
TABLE_KEY = b"tv3s.table"
VERSION_KEY = b"tv3s.schema_version"


class TemporalState(str, Enum):
    """What the model's temporal memory was for a frame (stable strings: they are stored)."""

    carried = "carried"  # state (stream) or clip history (clip) carried from the previous frame
    reset = "reset"  # started empty at this frame; `state_reset_reason` says why
    warmed_up = "warmed_up"  # rebuilt by re-running `warmup_frames` earlier frames first


class ResetReason(str, Enum):
    """Why the temporal state was reset (stable strings)."""

    video_start = "video_start"  # first frame of the video: nothing to carry
    missing_segment = "missing_segment"  # the previous segment is missing or failed
    frame_size_changed = "frame_size_changed"  # the video changed frame size mid-stream


PRECISIONS = ("fp32", "fp16", "bf16")


def _field(name: str, type_: pa.DataType, description: str, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


def _list(type_: pa.DataType, size: int = -1) -> pa.DataType:
    """A list type whose item is named as Parquet names it, so schemas round-trip exactly."""
    return pa.list_(pa.field("element", type_, nullable=False), size)


def _schema(table: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={TABLE_KEY: table.encode(), VERSION_KEY: str(SCHEMA_VERSION).encode()})


# --- frames: one row per labeled frame -----------------------------------------------------

_PROVENANCE = [
    _field(
        "model_id", pa.string(), "the model: backbone:head:architecture fingerprint:weights hash (tv3s.model model_id)"
    ),
    _field(
        "checkpoint_sha256",
        pa.string(),
        "sha256 of the checkpoint file the weights came from; null for random weights",
        nullable=True,
    ),
    _field(
        "inference_mode", pa.string(), "stream (state carried over the whole video) or clip (official 4-frame clips)"
    ),
    _field("precision", pa.string(), "numeric precision of inference: fp32, fp16 or bf16"),
    _field("code_version", pa.string(), "tv3s version that wrote the row"),
]

FRAMES_SCHEMA = _schema(
    "frames",
    [
        _field("job_id", pa.string(), "the labeling job that produced the row"),
        _field("video_id", pa.string(), "the video, as named by the input index"),
        _field(
            "unit_index",
            pa.int32(),
            "commit unit of the video the frame belongs to (0-based): the segment index for videos stored as "
            "segment files, frame_index // frames_per_unit for frame sequences",
        ),
        _field("frame_index", pa.int64(), "position of the frame in its video (0-based, decode order)"),
        _field(
            "timestamp_s", pa.float64(), "presentation time in seconds from the video's start; null if unknown", True
        ),
        _field("source_url", pa.string(), "shard or file URL the frame was read from (never with credentials)"),
        _field("source_member", pa.string(), "tar member holding the frame; null for a plain file", True),
        _field(
            "source_frame_index",
            pa.int64(),
            "position of the frame inside that member or file (decode order; 0 for an image)",
        ),
        _field("width", pa.int32(), "source frame width in pixels (= mask width)"),
        _field("height", pa.int32(), "source frame height in pixels (= mask height)"),
        _field(
            "mask_png",
            pa.binary(),
            "the label map at source resolution as a lossless PNG: 8-bit grey (uint8) up to 255 classes, "
            "16-bit above; pixel value = class index. Official rule: logits bilinearly resized to the "
            "source size (align_corners=False), then argmax",
        ),
        _field(
            "class_histogram",
            _list(pa.int32()),
            "pixels per class in the mask, indexed by class (SQL lists are 1-based: class k is class_histogram[k + 1])",
        ),
        _field(
            "mean_confidence",
            pa.float32(),
            "mean top-1 softmax probability over the frame's pixels",
        ),
        _field(
            "low_confidence_fraction",
            pa.float32(),
            f"fraction of pixels whose top-1 probability is below {LOW_CONFIDENCE_THRESHOLD}",
        ),
        _field("mean_entropy", pa.float32(), "mean softmax entropy over the pixels, in nats (at most ln(classes))"),
        _field(
            "temporal_agreement",
            pa.float32(),
            "fraction of pixels with the same label as the previous labeled frame (frame_index - frame_stride); "
            "null when its mask was not at hand (first frame, after a gap, after a resume elsewhere)",
            True,
        ),
        _field("temporal_state", pa.string(), "carried, reset or warmed_up: the model's temporal memory for the frame"),
        _field(
            "state_reset_reason",
            pa.string(),
            "why the state was reset: video_start, missing_segment or frame_size_changed",
            True,
        ),
        _field("warmup_frames", pa.int32(), "earlier frames re-run to rebuild the state (warmed_up), else 0"),
        _field(
            "frame_stride",
            pa.int32(),
            "the job labelled every Nth frame of the video (frames 0, N, 2N, ...), N = this; 1 = every frame",
        ),
        *_PROVENANCE,
    ],
)


class FrameRow(BaseModel):
    """One `frames` row, validated. Field names and nullability equal FRAMES_SCHEMA's (tested)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    job_id: str
    video_id: str
    unit_index: int = Field(ge=0)
    frame_index: int = Field(ge=0)
    timestamp_s: float | None = None
    source_url: str
    source_member: str | None = None
    source_frame_index: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    mask_png: bytes
    class_histogram: list[int]
    mean_confidence: float = Field(ge=0.0, le=1.0)
    low_confidence_fraction: float = Field(ge=0.0, le=1.0)
    mean_entropy: float = Field(ge=0.0)
    temporal_agreement: float | None = Field(default=None, ge=0.0, le=1.0)
    temporal_state: TemporalState
    state_reset_reason: ResetReason | None = None
    warmup_frames: int = Field(default=0, ge=0)
    frame_stride: int = Field(default=1, ge=1)
    model_id: str
    checkpoint_sha256: str | None = None
    inference_mode: str
    precision: str
    code_version: str

    @model_validator(mode="after")
    def _consistent(self) -> FrameRow:
        if (self.temporal_state == TemporalState.reset) != (self.state_reset_reason is not None):
            raise ValueError("state_reset_reason must be given exactly when temporal_state is reset")
        if (self.temporal_state == TemporalState.warmed_up) != (self.warmup_frames > 0):
            raise ValueError("warmup_frames must be > 0 exactly when temporal_state is warmed_up")
        if sum(self.class_histogram) != self.width * self.height:
            raise ValueError(
                f"class_histogram counts {sum(self.class_histogram)} pixels, the frame has {self.width}x{self.height}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        return self


def frames_table(rows: list[FrameRow]) -> pa.Table:
    """The Arrow table of validated rows, in FRAMES_SCHEMA (enums stored as their strings)."""
    columns: dict[str, list] = {name: [] for name in FRAMES_SCHEMA.names}
    for row in rows:
        for name, value in row:
            columns[name].append(value.value if isinstance(value, Enum) else value)
    return pa.Table.from_pydict(columns, schema=FRAMES_SCHEMA)


# --- videos: one row per finished video ----------------------------------------------------

VIDEOS_SCHEMA = _schema(
    "videos",
    [
        _field("job_id", pa.string(), "the labeling job that produced the row"),
        _field("video_id", pa.string(), "the video, as named by the input index"),
        _field("source_url", pa.string(), "URL of the video's first labeled frame"),
        _field("frames", pa.int64(), "frames labeled (rows in `frames`)"),
        _field("first_frame_index", pa.int64(), "smallest frame_index labeled; null when no frame was", True),
        _field("last_frame_index", pa.int64(), "largest frame_index labeled; null when no frame was", True),
        _field("units_committed", pa.int32(), "commit units whose results (frames or errors) were committed"),
        _field("units_expected", pa.int32(), "commit units planned for the video; null if not given", True),
        _field("width", pa.int32(), "frame width (of the first labeled frame); null when no frame was", True),
        _field("height", pa.int32(), "frame height (of the first labeled frame); null when no frame was", True),
        _field("class_histogram", _list(pa.int64()), "pixels per class over all labeled frames"),
        _field("mean_confidence", pa.float32(), "mean of the frames' mean_confidence", True),
        _field("low_confidence_fraction", pa.float32(), "mean of the frames' low_confidence_fraction", True),
        _field("mean_entropy", pa.float32(), "mean of the frames' mean_entropy", True),
        _field("temporal_agreement_mean", pa.float32(), "mean of the frames' non-null temporal_agreement", True),
        _field("temporal_agreement_min", pa.float32(), "smallest non-null temporal_agreement (worst flicker)", True),
        _field("state_resets", pa.int32(), "frames whose temporal_state is reset"),
        _field("state_warmups", pa.int32(), "frames whose temporal_state is warmed_up"),
        _field("errors", pa.int64(), "rows in `errors` committed with this video's units"),
        _field("class_names", _list(pa.string()), "the model's class names, indexed by class"),
        _field("palette", _list(_list(pa.int16())), "the model's RGB colour per class (three values 0..255)"),
        _field("model_config", pa.string(), "the model's architecture config as JSON (tv3s.model config dict)"),
        *_PROVENANCE,
    ],
)


# --- errors: one row per failed input --------------------------------------------------------


def _arrow_type(annotation: object, where: str) -> tuple[pa.DataType, bool]:
    """Arrow type and nullability of an InputError field annotation (the few kinds it uses)."""
    nullable = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        if len(members) != 1:
            raise TypeError(f"{where}: union {annotation} has no Arrow column type; extend _arrow_type")
        annotation = members[0]
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return pa.string(), nullable
    if annotation is int:
        return pa.int64(), nullable
    raise TypeError(f"{where}: type {annotation} has no Arrow column type; extend _arrow_type")


def _errors_fields() -> list[pa.Field]:
    fields = [_field("job_id", pa.string(), "the labeling job that met the error")]
    for name, info in InputError.model_fields.items():
        type_, nullable = _arrow_type(info.annotation, f"InputError.{name}")
        description = info.description or _ERROR_DESCRIPTIONS.get(name, name)
        fields.append(_field(name, type_, description, nullable))
    return fields


_ERROR_DESCRIPTIONS = {
    "kind": "what went wrong (tv3s.schemas.errors.ErrorKind: not_found, corrupt_member, ...)",
    "video_id": "the video concerned, when known",
    "segment_index": "the segment (a piece of a video file) concerned, when known",
    "frame_index": "the frame concerned, when known",
    "message": "what happened",
    "hint": "what to do about it",
}

ERRORS_SCHEMA = _schema("errors", _errors_fields())


def errors_table(errors: list[InputError], job_id: str | None = None, schema: pa.Schema = ERRORS_SCHEMA) -> pa.Table:
    """Error records as rows of `schema`: InputError's columns, and `job_id` where the schema has it
    (the job's errors table; the index's errors file has none)."""
    columns: dict[str, list] = {name: [] for name in schema.names}
    for error in errors:
        if "job_id" in columns:
            columns["job_id"].append(job_id)
        for name, value in error:
            columns[name].append(value.value if isinstance(value, Enum) else value)
    return pa.Table.from_pydict(columns, schema=schema)


# --- units: the ledger, one row per committed unit --------------------------------------------

UNIT_KINDS = ("units", "summary", "errors")
UNITS_SCHEMA = _schema(
    "units",
    [
        _field("job_id", pa.string(), "the labeling job that committed the unit"),
        _field("video_id", pa.string(), "the unit's video; null for errors met outside any video", True),
        _field(
            "scope",
            pa.string(),
            "the video's key (a path-safe name) and the digest of the content labelled, or _errors",
        ),
        _field("name", pa.string(), "the unit's name within its scope (s000003-000003, summary, ...)"),
        _field("kind", pa.string(), "units (frames of a range of units), summary (a videos row) or errors"),
        _field("unit_first", pa.int64(), "first unit of the range; null for summary and errors", True),
        _field("unit_last", pa.int64(), "last unit of the range; null for summary and errors", True),
        _field("frames", pa.int64(), "rows the unit committed to `frames`"),
        _field("error_rows", pa.int64(), "rows the unit committed to `errors`"),
        _field("partial", pa.string(), "the unit's partial sums for its video's summary row (JSON)", True),
        _field("resume_point", pa.string(), "path (under the output) of the state to continue from", True),
        _field("committed_at", pa.string(), "when the unit was committed (UTC, ISO 8601)"),
        _field("code_version", pa.string(), "tv3s version that committed the unit"),
    ],
)

TABLES: dict[str, pa.Schema] = {
    "frames": FRAMES_SCHEMA,
    "videos": VIDEOS_SCHEMA,
    "errors": ERRORS_SCHEMA,
    "units": UNITS_SCHEMA,
}


def check_schema(schema: pa.Schema, where: str) -> str:
    """The table name of a part's schema; raise if it is not a tv3s table of a known version."""
    meta = schema.metadata or {}
    table = meta.get(TABLE_KEY, b"").decode()
    version = meta.get(VERSION_KEY, b"").decode()
    if table not in TABLES:
        raise ValueError(f"{where}: not a tv3s output part (schema metadata tv3s.table is {table!r})")
    if version != str(SCHEMA_VERSION):
        raise ValueError(
            f"{where}: {table} schema version {version!r}, this tv3s reads version {SCHEMA_VERSION}; "
            "use the tv3s version that wrote it (see the code_version column)"
        )
    return table
