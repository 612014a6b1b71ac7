"""Rewrite many small committed parts into few large ones (~256 MB), row for row, exactly once.

A labeling job commits one part per video and segment range, so a big job leaves
thousands of small files: slow to list and to open for every query. Compaction reads
the visible small files of each table, concatenates them unchanged (same rows, same
values, same order within each file) into files of about TARGET_BYTES, and publishes
them with one snapshot object (see `commit`): before it, readers see the small files;
after it, the large ones; never both, never neither. A crash at any step leaves the
view as it was; a re-run completes the work. Replaced files stay until `vacuum` finds
them older than a grace period, so queries already running keep their files.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from ...schemas.manifest import TABLES, check_schema
from .commit import (
    COMPACTED_SCOPE,
    META_DIR,
    SNAPSHOTS_DIR,
    CommitError,
    DataFile,
    Observer,
    Output,
    Snapshot,
    no_observer,
    utc_now,
)
from .manifest import encode_parquet

TARGET_BYTES = 256 << 20
DEFAULT_GRACE_S = 3600.0


@dataclass(frozen=True)
class CompactReport:
    files_in: int
    files_out: int
    rows: int
    bytes_in: int
    bytes_out: int
    deleted: int
    snapshot: str | None


def plan_bins(files: list[DataFile], target: int = TARGET_BYTES) -> list[list[DataFile]]:
    """Groups of small files to merge: per table, in path order (so a video's parts stay
    together), filled up to `target` bytes. Files of at least half the target are left
    alone, and so is a group of one (nothing would be gained)."""
    bins: list[list[DataFile]] = []
    for table in sorted({f.table for f in files if f.table in TABLES}):  # resume points are not tables
        current: list[DataFile] = []
        size = 0
        for f in sorted((f for f in files if f.table == table and f.size < target // 2), key=lambda f: f.path):
            if current and size + f.size > target:
                bins.append(current)
                current, size = [], 0
            current.append(f)
            size += f.size
        bins.append(current)
    return [b for b in bins if len(b) > 1]


def compact(
    output: Output, target: int = TARGET_BYTES, grace_s: float = DEFAULT_GRACE_S, observer: Observer = no_observer
) -> CompactReport:
    """Merge the output's small parts, publish the result atomically, then vacuum."""
    view = output.view()
    bins = plan_bins(list(view.files), target)
    seq = view.snapshot.seq + 1 if view.snapshot else 1
    snapshot_id = uuid.uuid4().hex[:12]
    written: list[DataFile] = []
    replaced: set[str] = set()
    if bins:
        observer("before_write", output.uri(SNAPSHOTS_DIR))
    for k, group in enumerate(bins):
        table = _merge(output, group)
        rel = f"{group[0].table}/{COMPACTED_SCOPE}/{seq:08d}-{snapshot_id}-{k:04d}.parquet"
        data = encode_parquet(table)
        output.write_once(rel, data, observer)
        written.append(DataFile(group[0].table, rel, table.num_rows, len(data)))
        replaced.update(f.path for f in group)
    name = None
    if bins:
        latest = output.latest_snapshot()
        if (latest.path if latest else None) != (view.snapshot.path if view.snapshot else None):
            raise CommitError(
                f"another compaction of {output.url} committed while this one ran; nothing was published "
                "(its files will be vacuumed): run compact again"
            )
        files = [f for f in view.files if f.path not in replaced] + written
        files.sort(key=lambda f: f.path)
        snapshot = Snapshot(seq, snapshot_id, frozenset(view.records), tuple(files), utc_now())
        output.commit_snapshot(snapshot, observer)
        name = snapshot.path
    deleted = vacuum(output, grace_s)
    return CompactReport(
        files_in=sum(len(b) for b in bins),
        files_out=len(written),
        rows=sum(f.rows for f in written),
        bytes_in=sum(f.size for b in bins for f in b),
        bytes_out=sum(f.size for f in written),
        deleted=len(deleted),
        snapshot=name,
    )


def _merge(output: Output, group: list[DataFile]) -> pa.Table:
    """The files' rows, concatenated in order, checked against the counts their records promise."""
    tables = []
    for f in group:
        table = pq.read_table(io.BytesIO(output.read(f.path)))
        where = output.uri(f.path)
        name = check_schema(table.schema, where)
        if name != f.table or table.num_rows != f.rows:
            raise CommitError(
                f"{where} holds {table.num_rows} rows of table {name}, its commit record says {f.rows} rows "
                f"of {f.table}: the file was changed after it was committed; restore it"
            )
        tables.append(table)
    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise CommitError(
            f"parts of {group[0].table} have different columns ({exc}); they cannot share a file"
        ) from exc


def vacuum(output: Output, grace_s: float = DEFAULT_GRACE_S, now: float | None = None) -> list[str]:
    """Delete files no reader needs: data files not in the view (replaced by compaction or
    left by crashed attempts), older snapshots, and temporary records; returns their paths.

    Only once both the file and the latest snapshot are older than `grace_s`: a reader or
    compaction that started from an older view must have finished by then, and a writer
    must commit a part within that time of writing it.
    """
    now = time.time() if now is None else now
    snapshots = [f for f in output.list(SNAPSHOTS_DIR) if f.path.endswith(".json")]
    latest = max(snapshots, key=lambda f: f.path) if snapshots else None
    if latest is not None and now - latest.modified < grace_s:
        return []
    visible = {f.path for f in output.view().files}
    candidates = [f for table in (*TABLES, "state") for f in output.list(table) if f.path not in visible]
    candidates += [f for f in snapshots if f is not latest]
    candidates += [f for f in output.list(META_DIR) if f.path.endswith(".tmp")]
    doomed = [f.path for f in candidates if now - f.modified >= grace_s]
    output.delete(doomed)
    return doomed
