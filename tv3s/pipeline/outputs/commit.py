"""An output location: Delta Lake tables committed exactly once, plus the job's own files.

Layout, relative to the output root:

    frames/  videos/  errors/              Delta tables any Delta reader opens (DuckDB, polars, Spark, ...)
    units/                                 the units ledger, a Delta table (see `ledger`)
    state/<job_id>/<scope>/<name>.<attempt>.safetensors   resume points, named by the ledger
    _tv3s/jobs/<name>/...                  the driver's plan and status (see `tv3s.jobs.runner`)

Why Delta (delta-rs, no JVM): a table's commit is one atomic log entry written with a
conditional PUT, so every reader sees whole commits and nothing else: no listing of
per-unit records, no reader that must know our protocol. Exactly-once per unit comes from
Delta's application transactions: each append carries `(app_id, version=1)` for the unit's
id, and is made only if the table's log has no such transaction. Two attempts racing on
one unit conflict in the log (delta-rs refuses the second commit as a concurrent
transaction), and the loser finds the winner's transaction and writes nothing.

A unit spans tables (its frames, its errors, its ledger row), which Delta cannot commit
together. Each table's append is exactly-once on its own, and the ledger row comes last:
a crash in between leaves rows that a retry will not append again, and the unit is done
(for resumes and summaries) once its ledger row is in.

Measured here (deltalake 1.6.6, local disk): an append with its transaction about 30 ms;
`transaction_version` 1.6 ms with 1,000 units in the log, 18 ms with 200,000 (it scans the
log's transactions), which is the per-unit cost that grows with the output; `tv3s compact`
checkpoints the log so opening stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
from fsspec.implementations.local import LocalFileSystem

from ..storage import RetryPolicy

META_DIR = "_tv3s"
LEGACY_COMMITS_DIR = f"{META_DIR}/commits"  # tv3s before Delta tables: refused with a message
STEPS = ("before_write", "mid_write", "after_write", "after_commit")
_COMMIT_RETRIES = 20  # log conflicts between different units are retried by delta-rs itself

T = TypeVar("T")
_RETRY = RetryPolicy()

# Called with (step, where) at each step of a commit; tests use it to inject crashes.
Observer = Callable[[str, str], None]


def no_observer(step: str, path: str) -> None:
    """The default observer: does nothing."""


class CommitError(RuntimeError):
    """The output location holds something the protocol cannot accept; the message says what to do."""


@dataclass(frozen=True)
class StoredFile:
    """A file found under the output root, with its modification time (seconds since the epoch)."""

    path: str
    modified: float


class Output:
    """An output location: a root URL plus fsspec storage options (credentials come from the
    environment as usual when not given). Options apply to remote URLs only, so one call
    opens a local folder and a bucket alike."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.url = url.rstrip("/")
        remote = "://" in self.url and not self.url.startswith("file://")
        self.storage_options = dict(storage_options or {}) if remote else {}
        self.fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        self._tables: dict[str, object] = {}
        self._legacy_checked = False

    # --- paths ----------------------------------------------------------------------------
    def full(self, rel: str) -> str:
        """The filesystem path of a root-relative path."""
        return f"{self.root}/{rel}"

    def uri(self, rel: str) -> str:
        """A URL other tools can open: the local path, or protocol://bucket/key."""
        return self.full(rel) if self.local else self.fs.unstrip_protocol(self.full(rel))

    def _rel(self, full: str) -> str:
        prefix = self.root + "/"
        if not full.startswith(prefix):
            raise CommitError(f"{full} is outside the output root {self.root}")
        return full[len(prefix) :]

    # --- plain files (resume points, the driver's plan and status) --------------------------
    def read(self, rel: str) -> bytes:
        return self.fs.cat_file(self.full(rel))

    def list(self, prefix: str) -> list[StoredFile]:
        """Files under a root-relative prefix, freshly listed (no cached listing)."""
        base = self.full(prefix)
        self.fs.invalidate_cache(base)
        found = self.fs.find(base, detail=True)  # {} when nothing is there
        return sorted(
            (StoredFile(self._rel(path), _modified(info)) for path, info in found.items() if info["type"] == "file"),
            key=lambda f: f.path,
        )

    def write_once(self, rel: str, data: bytes, observer: Observer = no_observer) -> None:
        """Write a new file that nothing references yet (a fresh name per attempt); never overwrites."""
        path = self.full(rel)
        if not self.local:
            # An object store PUT is all or nothing: a crash during it leaves no object.
            observer("mid_write", self.uri(rel))
            self.fs.pipe_file(path, data)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def delete(self, rels: list[str]) -> None:
        if rels:
            self.fs.rm([self.full(r) for r in rels])

    def drop(self, prefix: str) -> None:
        """Delete everything under a root-relative prefix (a table no one reads any more), if present."""
        for name in [n for n in self._tables if n == prefix or n.startswith(prefix + "/")]:
            del self._tables[name]
        self.fs.invalidate_cache(self.full(prefix))
        if self.fs.exists(self.full(prefix)):
            self.fs.rm(self.full(prefix), recursive=True)

    # --- Delta tables ---------------------------------------------------------------------
    def delta_options(self) -> dict[str, str]:
        """delta-rs storage options for this location: fsspec's credentials and endpoint, and the
        conditional PUT (ETag) that makes concurrent commits to S3 safe without a lock service."""
        if self.local:
            return {}
        opts = self.storage_options
        endpoint = (opts.get("client_kwargs") or {}).get("endpoint_url") or opts.get("endpoint_url")
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL")
        out = {"conditional_put": "etag", "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1")}
        if opts.get("key"):
            out["AWS_ACCESS_KEY_ID"] = opts["key"]
        if opts.get("secret"):
            out["AWS_SECRET_ACCESS_KEY"] = opts["secret"]
        if opts.get("token"):
            out["AWS_SESSION_TOKEN"] = opts["token"]
        if endpoint:
            out["AWS_ENDPOINT_URL"] = endpoint
            if endpoint.startswith("http://"):
                out["AWS_ALLOW_HTTP"] = "true"
        return out

    def table_uri(self, name: str) -> str:
        return self.uri(name)

    def table(self, name: str, refresh: bool = True):
        """The Delta table `name` (brought up to date), or None while nothing was committed to it."""
        from deltalake import DeltaTable

        self._refuse_legacy()
        dt = self._tables.get(name)
        if dt is None:
            try:
                dt = DeltaTable(self.table_uri(name), storage_options=self.delta_options())
            except Exception as exc:  # TableNotFoundError: no commit yet
                if type(exc).__name__ != "TableNotFoundError":
                    raise
                return None
            self._tables[name] = dt
        elif refresh:
            dt.update_incremental()
        return dt

    def dataset(self, name: str, schema: pa.Schema) -> ds.Dataset:
        """The committed rows of a table as an Arrow dataset (empty, with `schema`, before any commit)."""
        dt = self.table(name)
        return ds.dataset(schema.empty_table()) if dt is None else dt.to_pyarrow_dataset()

    def is_committed(self, name: str, app_id: str) -> bool:
        """Whether `name` holds the append of unit `app_id` (its application transaction)."""

        def look() -> bool:
            dt = self.table(name)
            return dt is not None and dt.transaction_version(app_id) is not None

        return _retrying(look)

    def append_once(self, name: str, data: pa.Table, app_id: str, observer: Observer = no_observer) -> bool:
        """Append `data` to table `name` as unit `app_id`, unless that unit was appended before;
        returns whether this call appended it. The table is created (schema of `data`) if missing.
        A store error is retried (with the project's backoff): the append is exactly-once, so a retry
        after an append that did land finds its transaction and writes nothing."""
        return _retrying(lambda: self._append_once(name, data, app_id, observer))

    def _append_once(self, name: str, data: pa.Table, app_id: str, observer: Observer) -> bool:
        from deltalake import write_deltalake

        def append(dt, props) -> None:
            observer("mid_write", self.uri(name))
            write_deltalake(dt, data, mode="append", commit_properties=props)

        return self._once(name, data.schema, app_id, append)

    def replace_once(
        self, name: str, rows: Callable[[], pa.Table | pa.RecordBatchReader], schema: pa.Schema, where: str, app_id: str
    ) -> bool:
        """Replace the rows of table `name` that match `where` (a predicate from `video_predicate`) by
        `rows()` in one commit, as unit `app_id`, unless that unit committed before; returns whether
        this call did. Readers see the old rows or the new ones, never both, never neither. `rows` is
        called per attempt (a reader is used up by a failed one)."""
        return _retrying(lambda: self._replace_once(name, rows, schema, where, app_id))

    def _replace_once(self, name: str, rows, schema: pa.Schema, where: str, app_id: str) -> bool:
        from deltalake import write_deltalake

        def replace(dt, props) -> None:
            write_deltalake(dt, rows(), mode="overwrite", predicate=where, commit_properties=props)

        return self._once(name, schema, app_id, replace)

    def _once(self, name: str, schema: pa.Schema, app_id: str, write: Callable[[object, object], None]) -> bool:
        """`write(table, commit_properties)` as unit `app_id`, unless the table's log has that unit's
        transaction; returns whether this call committed it. Attempts racing on one unit conflict in
        the log: the loser looks again, finds the winner's transaction and writes nothing."""
        from deltalake import CommitProperties, Transaction
        from deltalake.exceptions import CommitFailedError

        for _ in range(_COMMIT_RETRIES):
            dt = self.table(name) or self._create(name, schema)
            if dt.transaction_version(app_id) is not None:
                return False
            props = CommitProperties(app_transactions=[Transaction(app_id, 1)], max_commit_retries=_COMMIT_RETRIES)
            try:
                write(dt, props)
                return True
            except CommitFailedError:
                dt.update_incremental()
        raise CommitError(f"could not commit unit {app_id} to {self.uri(name)}: the log kept conflicting")

    def _create(self, name: str, schema: pa.Schema):
        """Create the table (a no-op if another writer just did) and open it."""
        from deltalake import DeltaTable
        from deltalake.exceptions import CommitFailedError

        version = (schema.metadata or {}).get(b"tv3s.schema_version", b"?").decode()
        with contextlib.suppress(CommitFailedError):  # another writer created it between our look and ours
            DeltaTable.create(
                self.table_uri(name),
                schema,
                mode="ignore",
                name=name,
                description=f"tv3s {name} table, schema version {version}",
                storage_options=self.delta_options(),
            )
        return self.table(name)

    def _refuse_legacy(self) -> None:
        if not self._legacy_checked:
            if self.fs.exists(self.full(LEGACY_COMMITS_DIR)):
                raise CommitError(
                    f"{self.url} was written by an older tv3s (per-unit JSON commit records under "
                    f"{LEGACY_COMMITS_DIR}); this version writes and reads Delta Lake tables. Label into a new "
                    "output, or read the old one with the tv3s version that wrote it"
                )
            self._legacy_checked = True


def video_predicate(job_id: str, video_id: str) -> str:
    """The Delta predicate (SQL, parsed by delta-rs) selecting one video's rows of one job. The ids
    are only ever string literals in it: a quote is doubled, the SQL way, so an id holding quotes,
    backslashes or SQL text still names exactly its own rows (tested with such ids)."""

    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    return f"job_id = {literal(job_id)} AND video_id = {literal(video_id)}"


def _retrying(call: Callable[[], T]) -> T:
    """`call`, again after a store error (delta-rs raises OSError for a dropped connection, a 5xx or a
    SlowDown it did not absorb itself), with the project's backoff; the last attempt's error stands."""
    rng = random.Random()
    for attempt in range(_RETRY.attempts - 1):
        try:
            return call()
        except OSError:
            time.sleep(_RETRY.delay(attempt, rng))
    return call()


def _modified(info: dict) -> float:
    """Modification time of a listing entry: 'mtime' (local) or 'LastModified' (S3)."""
    if "mtime" in info:
        return float(info["mtime"])
    stamp = info.get("LastModified") or info.get("last_modified")
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    if isinstance(stamp, str):
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return time.time()  # unknown: treated as new, so never deleted for being old


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
