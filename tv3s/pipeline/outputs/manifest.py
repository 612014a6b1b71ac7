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
import uuid
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from ... import __version__
from ...schemas.errors import InputError
from ...schemas.manifest import (
    PRECISIONS,
    TABLES,
    UNITS_SCHEMA,
    VIDEOS_SCHEMA,
    FrameRow,
    ResetReason,
    TemporalState,
    errors_table,
    frames_table,
)
from .commit import META_DIR, Observer, Output, no_observer, utc_now, video_predicate
from .masks import encode_mask_png, logits_to_labels
from .stats import frame_stats

ERRORS_SCOPE = "_errors"
STAGING = f"{META_DIR}/staging"  # a changed video's new rows, until they replace its old ones
SUMMARY_UNIT = "summary"
ROW_GROUP_BYTES = 64 << 20  # row groups of about 64 MB: few enough footers, small enough to skip
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,199}")


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
    computed between adjacent labeled frames (frame_index - frame_stride) of the same size.
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
        return frame_row(self.run, logits, labels, source, self.previous_for(source))

    def previous_for(self, source: FrameSource) -> np.ndarray | None:
        """The label map the frame's temporal agreement compares with: the previous frame's, if it
        is the adjacent labelled frame (frame_index - frame_stride); else None."""
        if self._previous is None or self._previous[0] != source.frame_index - source.frame_stride:
            return None
        return self._previous[1]


def frame_row(
    run: RunInfo,
    logits: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    source: FrameSource,
    previous: np.ndarray | None,
) -> FrameRow:
    """One frame's row: statistics and mask PNG from its logits [C, h, w] and label map [H, W],
    and the agreement with `previous` (`VideoLabeler.previous_for`) when that has its size.
    Pure, so rows can be built in any thread, in any order."""
    if logits.shape[0] != run.num_classes:
        raise ValueError(f"logits have {logits.shape[0]} classes, the run's model has {run.num_classes}")
    if labels.shape != (source.height, source.width):
        raise ValueError(f"labels of {labels.shape} for a {source.width}x{source.height} frame")
    if previous is not None and previous.shape != labels.shape:
        previous = None
    stats = frame_stats(logits, labels, previous)
    return FrameRow(
        job_id=run.job_id,
        **asdict(source),
        mask_png=encode_mask_png(labels),
        class_histogram=stats.class_histogram.tolist(),
        mean_confidence=_float32(stats.confidence.mean_confidence),
        low_confidence_fraction=_float32(stats.confidence.low_confidence_fraction),
        mean_entropy=_float32(stats.confidence.mean_entropy),
        temporal_agreement=None if stats.temporal_agreement is None else _float32(stats.temporal_agreement),
        **run.provenance(),
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


def video_scope(video_id: str, content: str = "") -> str:
    """Where a video's units are named in the ledger: its key, then the labelling's content id
    (`ManifestWriter.labelling`): the digest of the content labelled (`tv3s.jobs.plan.video_contents`),
    so a video whose content changed is new work, and from the second labelling of the video on its
    generation (`DIGEST.N`), so a video whose content went back to an earlier one is labelled again."""
    key = safe_key(video_id)
    return f"{key}.{content}" if content else key


_LABELLING = re.compile(r"\.([0-9a-f]{16})(?:\.([0-9]+))?$")


def labelling_of(scope: str) -> tuple[str, int] | None:
    """(content digest, generation) of a video scope; None for a scope written without a content."""
    found = _LABELLING.search(scope)
    return None if found is None else (found.group(1), int(found.group(2) or 0))


def _content_id(content: str, generation: int) -> str:
    return content if generation == 0 else f"{content}.{generation}"


def staged(scope: str, table: str) -> str:
    """Where a table's rows of a changed video wait: a Delta table of the same schema, one per video
    scope (video and content), removed once its rows replaced the old ones."""
    return f"{STAGING}/{scope}/{table}"


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


@dataclass(frozen=True)
class UnitKey:
    """Names one unit of a job: its scope (a video's key, or ERRORS_SCOPE) and its name there."""

    job_id: str
    scope: str
    name: str

    def __post_init__(self) -> None:
        for what, value in (("job id", self.job_id), ("scope", self.scope), ("unit name", self.name)):
            if not _SAFE.fullmatch(value.lstrip("_")):
                raise ValueError(
                    f"{what} {value!r} is not a safe path segment: use letters, digits and . _ = - "
                    "(at most 200 characters, not starting with a dot)"
                )

    @property
    def app_id(self) -> str:
        """The unit's Delta application-transaction id: the same in every table it appends to."""
        return f"{self.job_id}/{self.scope}/{self.name}"

    def state_path(self, attempt: str) -> str:
        return f"state/{self.job_id}/{self.scope}/{self.name}.{attempt}.safetensors"


class ManifestWriter:
    """Commits a job's results to an output location, exactly once per unit (see `commit`).

    A unit appends its rows to `frames` and `errors`, then its row to the `units` ledger;
    the ledger row says the unit is done and holds what a resume and the video's summary
    need, so neither ever reads the frames back.
    """

    def __init__(self, output: Output, run: RunInfo, observer: Observer = no_observer) -> None:
        self.output = output
        self.run = run
        self.observer = observer
        self._replaces: dict[str, bool] = {}

    def video_scope(self, video_id: str, content: str = "") -> str:
        return video_scope(video_id, content)

    def unit_key(self, video_id: str, first: int, last: int, content: str = "") -> UnitKey:
        return UnitKey(self.run.job_id, self.video_scope(video_id, content), unit_name(first, last))

    # --- reading the ledger -------------------------------------------------------------------
    def ledger(
        self,
        scope: str | None = None,
        columns: list[str] | None = None,
        kind: str | None = None,
        video_id: str | None = None,
    ) -> pa.Table:
        """This job's ledger rows (of one scope, kind or video), read with the filter pushed down to the files."""
        where = pc.field("job_id") == self.run.job_id
        for column, value in (("scope", scope), ("kind", kind), ("video_id", video_id)):
            if value is not None:
                where &= pc.field(column) == value
        return self.output.dataset("units", UNITS_SCHEMA).to_table(columns=columns, filter=where)

    def is_committed(self, video_id: str, first: int, last: int, content: str = "") -> bool:
        """Whether this range of units is done (ask before running the model on it)."""
        return self.output.is_committed("units", self.unit_key(video_id, first, last, content).app_id)

    def finished_videos(self) -> dict[str, str]:
        """The content digest of each video's latest finished labelling (its summary row is in, so all
        its units are), from one read of the ledger: a video whose planned content is this one is in
        the tables and need not go to an actor again."""
        rows = self.ledger(columns=["video_id", "scope"], kind="summary")
        latest: dict[str, tuple[int, str]] = {}
        for video_id, scope in zip(rows["video_id"].to_pylist(), rows["scope"].to_pylist()):
            found = labelling_of(scope)
            if found is not None and found[1] >= latest.get(video_id, (-1, ""))[0]:
                latest[video_id] = (found[1], found[0])
        return {video_id: content for video_id, (_, content) in latest.items()}

    def labelling(self, video_id: str, content: str) -> str:
        """The content id to label `content` of the video under (`video_scope`), from the video's
        ledger rows: its latest finished labelling if that is of this content (nothing to do); its
        newest labelling if that is of this content and unfinished (resumed: its rows are intact,
        in the tables or in staging); else a new generation. An older labelling is never resumed:
        a later swap may have replaced its rows."""
        if not content:
            return content
        rows = self.ledger(columns=["scope", "kind"], video_id=video_id).to_pylist()
        chosen = self._labelling(content, rows)
        scope = self.video_scope(video_id, chosen)  # `replaces` needs no second read of these rows
        self._remember_replaces(scope, any(r["scope"] != scope for r in rows))
        return chosen

    @staticmethod
    def _labelling(content: str, rows: list[dict]) -> str:
        """`labelling`'s choice from the video's ledger rows (scope, kind)."""
        seen = [(labelling_of(r["scope"]), r["kind"] == "summary") for r in rows]
        seen = [(found[1], found[0], done) for found, done in seen if found is not None]
        if not seen:
            return content
        finished = max(((n, c) for n, c, done in seen if done), default=None)
        newest = max(n for n, _, _ in seen)
        if finished is not None and finished[1] == content:
            return _content_id(content, finished[0])
        if any(n == newest and c == content for n, c, _ in seen):
            return _content_id(content, newest)
        return _content_id(content, newest + 1)

    def committed_units(self, video_id: str, content: str = "") -> set[int]:
        """Segments of the video already committed (by any unit), for planning a resume."""
        rows = self.ledger(self.video_scope(video_id, content), ["unit_first", "unit_last"], kind="units")
        return {
            s for a, b in zip(rows["unit_first"].to_pylist(), rows["unit_last"].to_pylist()) for s in range(a, b + 1)
        }

    def resume_points(self, video_id: str, content: str = "") -> dict[tuple[int, int], str]:
        """Where the resume point of each committed unit range of the video lies (units that carried one)."""
        scope = self.video_scope(video_id, content)
        rows = self.ledger(scope, ["unit_first", "unit_last", "resume_point"]).to_pylist()
        return {(r["unit_first"], r["unit_last"]): r["resume_point"] for r in rows if r["resume_point"]}

    def replaces(self, video_id: str, content: str) -> bool:
        """Whether this job committed other content of the video before (a video changed in a grown
        archive). Its new rows are then staged, and replace the old ones in one commit per table
        when the video is done, so no reader ever sees both labelings or neither. Asked once per
        video and remembered: the answer cannot change while the job runs."""
        if not content:
            return False
        scope = self.video_scope(video_id, content)
        if scope not in self._replaces:
            scopes = self.ledger(columns=["scope"], video_id=video_id)["scope"]
            self._remember_replaces(scope, bool(pc.any(pc.not_equal(scopes, scope)).as_py()))
        return self._replaces[scope]

    def _remember_replaces(self, scope: str, replaces: bool) -> None:
        if len(self._replaces) >= 4096:  # a bounded memo: a worker sees its videos one after another
            self._replaces.clear()
        self._replaces[scope] = replaces

    # --- committing -------------------------------------------------------------------------
    def commit_units(
        self,
        video_id: str,
        first: int,
        last: int,
        rows: list[FrameRow],
        errors: Sequence[InputError] = (),
        units_expected: int | None = None,
        resume_point: bytes | None = None,
        content: str = "",
    ) -> bool:
        """Commit the frames (and errors) of units first..last of one video; returns whether this
        call committed them (False: they were committed before, nothing was written).

        `resume_point` (a job's state after these units) is named by the unit's ledger row, so
        the state to continue from becomes visible with the unit. With `units_expected`, the
        video's summary row is committed as soon as all its units are. `content`: the digest of the
        video's content (see `video_scope`, `replaces`).
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
        key = self.unit_key(video_id, first, last, content)
        rows = sorted(rows, key=lambda r: r.frame_index)
        partial = VideoPartial.of(rows, (first, last), self.run.num_classes, len(errors))
        ledger = {"video_id": video_id, "kind": "units", "unit_first": first, "unit_last": last}
        ledger |= {"frames": len(rows), "error_rows": len(errors), "partial": json.dumps(partial.to_json())}
        tables = {"frames": frames_table(rows), "errors": self._errors(errors)}
        if self.replaces(video_id, content):
            tables = {staged(key.scope, name): table for name, table in tables.items()}
        committed = self._commit(key, tables, ledger, resume_point)
        if units_expected is not None:
            self.finalize_video(video_id, units_expected, require_complete=True, content=content)
        return committed

    def commit_errors(self, name: str, errors: Sequence[InputError]) -> bool:
        """Commit errors met outside any video's units (e.g. a shard that cannot be indexed).

        `name` identifies the unit (e.g. the shard URL), so a retry commits nothing twice.
        """
        key = UnitKey(self.run.job_id, ERRORS_SCOPE, safe_key(name))
        ledger = {"video_id": None, "kind": "errors", "frames": 0, "error_rows": len(errors)}
        return self._commit(key, {"errors": self._errors(errors)}, ledger)

    def finalize_video(
        self,
        video_id: str,
        units_expected: int | None = None,
        require_complete: bool = False,
        planned: Collection[int] | None = None,
        content: str = "",
    ) -> bool:
        """Commit the video's summary row once; returns whether the video has it now.

        `planned` (the units a job will commit: a gap in the input is never committed) replaces
        0..units_expected-1 as what must be complete.
        With `require_complete`, nothing is written until units 0..units_expected-1
        are all committed. Without it the summary is written from what is committed now
        (a video the job gives up on still gets its row).
        """
        scope = self.video_scope(video_id, content)
        ledger = self.ledger(scope, ["kind", "unit_first", "unit_last", "partial"]).to_pylist()
        if any(r["kind"] == "summary" for r in ledger):
            return True
        units = [r for r in ledger if r["kind"] == "units"]
        if require_complete:
            done = {s for r in units for s in range(r["unit_first"], r["unit_last"] + 1)}
            wanted = set(planned) if planned is not None else set(range(units_expected or 0))
            if (units_expected is None and planned is None) or not wanted <= done:
                return False
        partials = [VideoPartial.from_json(json.loads(r["partial"])) for r in units]
        row = pa.Table.from_pylist([video_row(video_id, partials, self.run, units_expected)], schema=VIDEOS_SCHEMA)
        summary = {"video_id": video_id, "kind": "summary", "frames": 0, "error_rows": 0}
        key = UnitKey(self.run.job_id, scope, SUMMARY_UNIT)
        if self.replaces(video_id, content):
            self._swap(key, video_id, row)
            self._commit(key, {}, summary)
            self.output.drop(f"{STAGING}/{scope}")  # its rows are in the tables now
        else:
            self._commit(key, {"videos": row}, summary)
        return True

    def _swap(self, key: UnitKey, video_id: str, summary: pa.Table) -> None:
        """Replace the video's rows of an earlier content by the staged ones: one commit per table,
        each exactly once (as unit `key`), before the ledger row that makes the video done."""
        out, where = self.output, video_predicate(self.run.job_id, video_id)
        for name in ("frames", "errors"):
            schema = TABLES[name]
            if out.table(name) is None and out.table(staged(key.scope, name)) is None:
                continue  # neither labeling has rows here

            def rows(name: str = name, schema: pa.Schema = schema) -> pa.RecordBatchReader:
                return out.dataset(staged(key.scope, name), schema).scanner().to_reader()

            out.replace_once(name, rows, schema, where, key.app_id)
        out.replace_once("videos", lambda: summary, VIDEOS_SCHEMA, where, key.app_id)

    def _errors(self, errors: Sequence[InputError]) -> pa.Table | None:
        return errors_table(list(errors), self.run.job_id) if errors else None

    def _commit(
        self, key: UnitKey, tables: dict[str, pa.Table | None], ledger: dict, state: bytes | None = None
    ) -> bool:
        """Append the unit to each table (each exactly once), then its ledger row, which makes it done."""
        out = self.output
        if out.is_committed("units", key.app_id):
            return False
        self.observer("before_write", out.uri("units"))
        for name, table in tables.items():
            if table is not None and table.num_rows:
                out.append_once(name, table, key.app_id, self.observer)
        resume = None
        if state is not None:
            resume = key.state_path(uuid.uuid4().hex[:16])
            out.write_once(resume, state, self.observer)
        self.observer("after_write", out.uri("units"))
        row = {"job_id": key.job_id, "scope": key.scope, "name": key.name, "unit_first": None, "unit_last": None}
        row |= {**ledger, "resume_point": resume, "committed_at": utc_now(), "code_version": __version__}
        row.setdefault("partial", None)
        committed = out.append_once("units", pa.Table.from_pylist([row], schema=UNITS_SCHEMA), key.app_id)
        if committed:
            self.observer("after_commit", out.uri("units"))
        return committed
