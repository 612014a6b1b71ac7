"""From model output to committed manifest parts: frame rows, per-video summaries, errors.

Data flows one way: model logits + where the frame came from (`FrameSource`) ->
`VideoLabeler` (labels by the official rule, statistics, PNG) -> `FrameRow`s ->
`ManifestWriter.commit_units` (one commit per video and range of units, exactly once,
see `commit`). When every expected unit of a video is committed, the writer adds the
video's summary row; it is computed from small partial sums kept in the unit
records, so it never re-reads masks and is right after a crash or a resume elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ... import __version__
from ...schemas.errors import InputError
from ...schemas.manifest import (
    PRECISIONS,
    VIDEOS_SCHEMA,
    FrameRow,
    ResetReason,
    TemporalState,
    errors_table,
    frames_table,
)
from .commit import CommitError, Observer, Output, Part, UnitKey, UnitRecord, no_observer
from .masks import encode_mask_png, logits_to_labels
from .stats import frame_stats

ERRORS_SCOPE = "_errors"
SUMMARY_UNIT = "summary"
ROW_GROUP_BYTES = 64 << 20  # row groups of about 64 MB: few enough footers, small enough to skip
_RANGE_NAME = re.compile(r"s(\d{6,})-(\d{6,})")


class LabelingModel(Protocol):
    """What the manifest records about the model (tv3s.model.TV3S provides it)."""

    model_id: str
    num_classes: int
    class_names: list[str]
    palette: np.ndarray
    checkpoint_sha256: str | None


@dataclass(frozen=True)
class RunInfo:
    """Job-wide facts repeated in every row: who labeled, with what, how."""

    job_id: str
    model_id: str
    checkpoint_sha256: str | None
    model_config: str  # JSON
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    inference_mode: str
    precision: str = "fp32"
    code_version: str = __version__

    def __post_init__(self) -> None:
        UnitKey(self.job_id, "check", "check")  # the job id becomes a path segment
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if len(self.palette) != len(self.class_names):
            raise ValueError(f"{len(self.class_names)} class names but {len(self.palette)} palette colours")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_model(cls, model: LabelingModel, job_id: str, inference_mode: str, precision: str = "fp32") -> RunInfo:
        cfg = getattr(model, "cfg", None)
        config = json.dumps(cfg.to_dict(), sort_keys=True) if cfg is not None else "{}"
        return cls(
            job_id=job_id,
            model_id=model.model_id,
            checkpoint_sha256=getattr(model, "checkpoint_sha256", None),
            model_config=config,
            class_names=tuple(model.class_names),
            palette=tuple(tuple(int(v) for v in rgb) for rgb in np.asarray(model.palette).reshape(-1, 3)),
            inference_mode=inference_mode,
            precision=precision,
        )

    def provenance(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "checkpoint_sha256": self.checkpoint_sha256,
            "inference_mode": self.inference_mode,
            "precision": self.precision,
            "code_version": self.code_version,
        }


@dataclass(frozen=True)
class FrameSource:
    """Where a frame came from and what the model's temporal memory was (from the data plane
    and the runner); field names are those of the frames table."""

    video_id: str
    unit_index: int
    frame_index: int
    source_url: str
    width: int
    height: int
    source_member: str | None = None
    source_frame_index: int = 0
    timestamp_s: float | None = None
    temporal_state: TemporalState = TemporalState.carried
    state_reset_reason: ResetReason | None = None
    warmup_frames: int = 0
    frame_stride: int = 1


class VideoLabeler:
    """Turns the logits of consecutive frames of one video into frame rows.

    Keeps the previous frame's label map for the temporal agreement, which is only
    computed between adjacent frames (frame_index - 1) of the same size.
    """

    def __init__(self, run: RunInfo, previous: tuple[int, np.ndarray] | None = None) -> None:
        self.run = run
        self._previous = previous

    @property
    def previous(self) -> tuple[int, np.ndarray] | None:
        """(frame index, label map) of the last frame labeled: pass it to a labeler that continues."""
        return self._previous

    def label(self, logits: np.ndarray | torch.Tensor, source: FrameSource) -> tuple[FrameRow, np.ndarray]:
        """The row and the label map [H, W] of one frame from its logits [C, h, w]."""
        logits = torch.as_tensor(logits)
        labels = logits_to_labels(logits, (source.height, source.width))
        row = self.describe(logits, labels, source)
        self.remember(labels, source)
        return row, labels

    def remember(self, labels: np.ndarray, source: FrameSource) -> None:
        """Take a frame's label map as the previous one without making its row (a frame re-run only
        to rebuild a state): the next frame's temporal agreement is then what it would have been."""
        self._previous = (source.frame_index, labels)

    def describe(self, logits: np.ndarray | torch.Tensor, labels: np.ndarray, source: FrameSource) -> FrameRow:
        """The row of a frame whose label map the caller already has (e.g. to draw overlays too);
        `labels` must be logits_to_labels(logits, (source.height, source.width)). No side effect:
        call `remember` after it to make this frame the previous one of the next."""
        if logits.shape[0] != self.run.num_classes:
            raise ValueError(f"logits have {logits.shape[0]} classes, the run's model has {self.run.num_classes}")
        if labels.shape != (source.height, source.width):
            raise ValueError(f"labels of {labels.shape} for a {source.width}x{source.height} frame")
        previous = None
        if (
            self._previous is not None
            and self._previous[0] == source.frame_index - 1
            and self._previous[1].shape == labels.shape
        ):
            previous = self._previous[1]
        stats = frame_stats(logits, labels, previous)
        return FrameRow(
            job_id=self.run.job_id,
            **asdict(source),
            mask_png=encode_mask_png(labels),
            class_histogram=stats.class_histogram.tolist(),
            mean_confidence=_float32(stats.confidence.mean_confidence),
            low_confidence_fraction=_float32(stats.confidence.low_confidence_fraction),
            mean_entropy=_float32(stats.confidence.mean_entropy),
            temporal_agreement=None if stats.temporal_agreement is None else _float32(stats.temporal_agreement),
            **self.run.provenance(),
        )


def _float32(value: float) -> float:
    """The value as the float32 column stores it, so a row equals what is read back."""
    return float(np.float32(value))


def encode_parquet(table: pa.Table) -> bytes:
    """A Parquet file of `table`: zstd for the small columns; binary columns (PNG masks,
    already compressed) stored plain, without dictionary or min/max statistics."""
    compressed, plain = _leaf_columns(table.schema)
    rows_per_group = max(1, ROW_GROUP_BYTES * table.num_rows // max(table.nbytes, 1))
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        row_group_size=rows_per_group,
        compression={**{c: "zstd" for c in compressed}, **{c: "none" for c in plain}},
        use_dictionary=compressed,
        write_statistics=compressed,
    )
    return sink.getvalue().to_pybytes()


@lru_cache(maxsize=16)
def _leaf_columns(schema: pa.Schema) -> tuple[list[str], list[str]]:
    """Parquet leaf column paths (nested ones are e.g. 'class_histogram.list.element', the
    names per-column writer options need), split into (compressible, binary)."""
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    leaves = pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema
    paths = [leaves.column(i).path for i in range(len(leaves))]
    binary = {f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)}
    return [p for p in paths if p not in binary], [p for p in paths if p in binary]


def safe_key(text: str) -> str:
    """A path segment naming `text` uniquely: a readable slug plus a hash of the exact text."""
    slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("._")[:80] or "x"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def unit_name(first: int, last: int) -> str:
    return f"s{first:06d}-{last:06d}"


@dataclass(frozen=True)
class VideoPartial:
    """Sums over the frames of one unit, from which the video's summary row is merged."""

    units: tuple[int, int]
    frames: int
    first_frame: int | None
    last_frame: int | None
    width: int | None
    height: int | None
    source_url: str | None
    class_histogram: tuple[int, ...]
    sum_confidence: float
    sum_low_confidence: float
    sum_entropy: float
    agreement_sum: float
    agreement_count: int
    agreement_min: float | None
    resets: int
    warmups: int
    errors: int

    @classmethod
    def of(cls, rows: list[FrameRow], units: tuple[int, int], num_classes: int, errors: int) -> VideoPartial:
        first = min(rows, key=lambda r: r.frame_index) if rows else None
        hist = np.zeros(num_classes, dtype=np.int64)
        for row in rows:
            hist += np.asarray(row.class_histogram, dtype=np.int64)
        agreements = [r.temporal_agreement for r in rows if r.temporal_agreement is not None]
        return cls(
            units=units,
            frames=len(rows),
            first_frame=first.frame_index if first else None,
            last_frame=max(r.frame_index for r in rows) if rows else None,
            width=first.width if first else None,
            height=first.height if first else None,
            source_url=first.source_url if first else None,
            class_histogram=tuple(int(v) for v in hist),
            sum_confidence=float(sum(r.mean_confidence for r in rows)),
            sum_low_confidence=float(sum(r.low_confidence_fraction for r in rows)),
            sum_entropy=float(sum(r.mean_entropy for r in rows)),
            agreement_sum=float(sum(agreements)),
            agreement_count=len(agreements),
            agreement_min=min(agreements) if agreements else None,
            resets=sum(r.temporal_state == TemporalState.reset for r in rows),
            warmups=sum(r.temporal_state == TemporalState.warmed_up for r in rows),
            errors=errors,
        )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> VideoPartial:
        return cls(**{**d, "units": tuple(d["units"]), "class_histogram": tuple(d["class_histogram"])})


def video_row(video_id: str, partials: list[VideoPartial], run: RunInfo, units_expected: int | None) -> dict:
    """The `videos` row of a video from the partial sums of its committed units."""
    frames = sum(p.frames for p in partials)
    labeled = [p for p in partials if p.frames]
    first = min(labeled, key=lambda p: p.first_frame) if labeled else None
    hist = np.zeros(run.num_classes, dtype=np.int64)
    for p in partials:
        hist += np.asarray(p.class_histogram, dtype=np.int64)
    agreement_count = sum(p.agreement_count for p in partials)
    minima = [p.agreement_min for p in partials if p.agreement_min is not None]
    units = {s for p in partials for s in range(p.units[0], p.units[1] + 1)}
    return {
        "job_id": run.job_id,
        "video_id": video_id,
        "source_url": first.source_url if first else "",
        "frames": frames,
        "first_frame_index": first.first_frame if first else None,
        "last_frame_index": max(p.last_frame for p in labeled) if labeled else None,
        "units_committed": len(units),
        "units_expected": units_expected,
        "width": first.width if first else None,
        "height": first.height if first else None,
        "class_histogram": hist.tolist(),
        "mean_confidence": sum(p.sum_confidence for p in partials) / frames if frames else None,
        "low_confidence_fraction": sum(p.sum_low_confidence for p in partials) / frames if frames else None,
        "mean_entropy": sum(p.sum_entropy for p in partials) / frames if frames else None,
        "temporal_agreement_mean": (
            sum(p.agreement_sum for p in partials) / agreement_count if agreement_count else None
        ),
        "temporal_agreement_min": min(minima) if minima else None,
        "state_resets": sum(p.resets for p in partials),
        "state_warmups": sum(p.warmups for p in partials),
        "errors": sum(p.errors for p in partials),
        "class_names": list(run.class_names),
        "palette": [list(rgb) for rgb in run.palette],
        "model_config": run.model_config,
        **run.provenance(),
    }


class ManifestWriter:
    """Commits a job's results to an output location, exactly once per unit."""

    def __init__(self, output: Output, run: RunInfo, observer: Observer = no_observer) -> None:
        self.output = output
        self.run = run
        self.observer = observer

    def video_scope(self, video_id: str) -> str:
        return safe_key(video_id)

    def unit_key(self, video_id: str, first: int, last: int) -> UnitKey:
        return UnitKey(self.run.job_id, self.video_scope(video_id), unit_name(first, last))

    def is_committed(self, video_id: str, first: int, last: int) -> bool:
        """Whether this range of units is done (ask before running the model on it)."""
        return self.output.record(self.unit_key(video_id, first, last)) is not None

    def finished_video_keys(self) -> set[str]:
        """`video_scope` of every video whose summary row is committed (so all its units are), from one
        listing: what a resumed job need not hand to an actor again."""
        return {scope for scope, names in self.output.job_scopes(self.run.job_id).items() if SUMMARY_UNIT in names}

    def committed_units(self, video_id: str) -> set[int]:
        """Segments of the video already committed (by any unit), for planning a resume."""
        names = self.output.scope_names(self.run.job_id, self.video_scope(video_id))
        return {s for a, b in _ranges(names) for s in range(a, b + 1)}

    def commit_units(
        self,
        video_id: str,
        first: int,
        last: int,
        rows: list[FrameRow],
        errors: Sequence[InputError] = (),
        units_expected: int | None = None,
        resume_point: bytes | None = None,
    ) -> tuple[UnitRecord, bool]:
        """Commit the frames (and errors) of units first..last of one video.

        `resume_point` (a job's state after these units) is committed with them, so a
        unit's rows and the state to continue from become visible together or not at all.
        Returns (the unit's record, whether this call committed it). With
        `units_expected`, the video's summary row is committed as soon as all its
        units are. A unit that overlaps a committed one without being it is refused:
        its rows would be counted twice.
        """
        if not 0 <= first <= last:
            raise ValueError(f"unit range {first}..{last} of video {video_id!r} is empty or negative")
        for row in rows:
            if row.video_id != video_id or not first <= row.unit_index <= last or row.job_id != self.run.job_id:
                raise ValueError(
                    f"frame {row.frame_index} (job {row.job_id}, video {row.video_id!r}, unit "
                    f"{row.unit_index}) does not belong to job {self.run.job_id}, video {video_id!r}, "
                    f"units {first}..{last}"
                )
        key = self.unit_key(video_id, first, last)
        existing = self.output.record(key)
        if existing is None:
            self._check_overlap(video_id, first, last)
            rows = sorted(rows, key=lambda r: r.frame_index)
            partial = VideoPartial.of(rows, (first, last), self.run.num_classes, len(errors))
            parts = [Part("frames", encode_parquet(frames_table(rows)), len(rows))]
            if errors:
                parts.append(Part("errors", encode_parquet(errors_table(list(errors), self.run.job_id)), len(errors)))
            if resume_point is not None:
                parts.append(Part("state", resume_point, 1))
            meta = {"video_id": video_id, "units": [first, last], "partial": partial.to_json()}
            existing, committed = self.output.commit(key, parts, meta, self.observer)
        else:
            committed = False
        if units_expected is not None:
            self.finalize_video(video_id, units_expected, require_complete=True)
        return existing, committed

    def resume_point(self, video_id: str, first: int, last: int) -> bytes | None:
        """The resume point committed with units first..last, if that unit carried one."""
        record = self.output.record(self.unit_key(video_id, first, last))
        files = [f for f in record.files if f.table == "state"] if record else []
        return self.output.read(files[0].path) if files else None

    def commit_errors(self, name: str, errors: Sequence[InputError]) -> tuple[UnitRecord, bool]:
        """Commit errors met outside any video's units (e.g. a shard that cannot be indexed).

        `name` identifies the unit (e.g. the shard URL), so a retry commits nothing twice.
        """
        key = UnitKey(self.run.job_id, ERRORS_SCOPE, safe_key(name))
        part = Part("errors", encode_parquet(errors_table(list(errors), self.run.job_id)), len(errors))
        return self.output.commit(key, [part], {"errors": len(errors)}, self.observer)

    def finalize_video(
        self,
        video_id: str,
        units_expected: int | None = None,
        require_complete: bool = False,
        planned: Collection[int] | None = None,
    ) -> UnitRecord | None:
        """Commit the video's summary row once; returns its record, or None while incomplete.

        `planned` (the units a job will commit: a gap in the input is never committed) replaces
        0..units_expected-1 as what must be complete.
        With `require_complete`, nothing is written until units 0..units_expected-1
        are all committed. Without it the summary is written from what is committed now
        (a video the job gives up on still gets its row).
        """
        scope = self.video_scope(video_id)
        names = self.output.scope_names(self.run.job_id, scope)
        summary_key = UnitKey(self.run.job_id, scope, SUMMARY_UNIT)
        if SUMMARY_UNIT in names:
            return self.output.record(summary_key)
        if require_complete:
            done = {s for a, b in _ranges(names) for s in range(a, b + 1)}
            wanted = set(planned) if planned is not None else set(range(units_expected or 0))
            if (units_expected is None and planned is None) or not wanted <= done:
                return None
        records = [r for r in self.output.scope_records(self.run.job_id, scope) if r.key.name != SUMMARY_UNIT]
        partials = [VideoPartial.from_json(r.meta["partial"]) for r in records]
        row = video_row(video_id, partials, self.run, units_expected)
        table = pa.Table.from_pylist([row], schema=VIDEOS_SCHEMA)
        record, _ = self.output.commit(
            summary_key, [Part("videos", encode_parquet(table), 1)], {"video_id": video_id}, self.observer
        )
        return record

    def _check_overlap(self, video_id: str, first: int, last: int) -> None:
        for a, b in _ranges(self.output.scope_names(self.run.job_id, self.video_scope(video_id))):
            if a <= last and first <= b and (a, b) != (first, last):
                raise CommitError(
                    f"units {first}..{last} of video {video_id!r} overlap the committed unit {a}..{b} "
                    f"in {self.output.url}; plan the resume from committed_units() so no unit is "
                    "committed twice"
                )


def _ranges(names: list[str]) -> list[tuple[int, int]]:
    """Segment ranges of a video's committed units, read off their names."""
    matches = (_RANGE_NAME.fullmatch(name) for name in names)
    return [(int(m.group(1)), int(m.group(2))) for m in matches if m]
