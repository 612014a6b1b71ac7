"""Exactly-once commits of result parts to any fsspec location (local disk, S3, ...).

Layout, relative to the output root:

    _tv3s/commits/<job_id>/<scope>/<name>.json            commit records: one per unit, never deleted
    _tv3s/snapshots/<seq:08d>-<id>.json                   compaction snapshots: the latest one counts
    <table>/<job_id>/<scope>/<name>.<attempt>.parquet     data files of one attempt at a unit
    state/<job_id>/<scope>/<name>.<attempt>.safetensors   a unit's resume point (jobs), committed with it
    <table>/_compacted/<seq:08d>-<id>-<k:04d>.parquet     data files written by compaction

A *unit* is what is committed at once, named by (job, scope, name): for frames one video
(the scope) and one range of its segments (the name). Its commit record lists the data
files of exactly one attempt. Rules that give exactly-once on stores without atomic rename:

1. Every data file is written once, at a fresh path (a random attempt id), before any
   record mentions it. A crash mid-write leaves at worst a partial file nobody references.
2. A unit becomes visible only through its record, written in one request (S3 PUT) or by
   hard-linking a complete temporary file (local disk: atomic, and it fails if the record
   exists, so the first attempt wins). Readers read only files that records list, so a
   half-written or abandoned attempt is never seen, and one record per unit means its rows
   are seen once.
3. A writer first checks for the record: a finished unit is skipped, so a re-run of a
   finished job writes nothing. Two attempts racing on S3 both write complete records to
   the same key; the last one wins and either is a complete, single copy.
4. Compaction replaces data files, never records. It writes the merged files, then one
   snapshot object: the full list of visible files plus the list of records it accounted
   for. The visible files are those of the latest snapshot plus those of the records it
   does not list. Records stay as the proof that a unit is done, so a re-run after
   compaction still writes nothing.
5. Files no longer visible (replaced by compaction, or left by crashed attempts) are
   deleted only after a grace period (`compact.vacuum`), so that readers and writers
   still working from an older view never lose a file under their feet.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ... import __version__

META_DIR = "_tv3s"
COMMITS_DIR = f"{META_DIR}/commits"
SNAPSHOTS_DIR = f"{META_DIR}/snapshots"
COMPACTED_SCOPE = "_compacted"
RECORD_FORMAT = "tv3s.commit/1"
SNAPSHOT_FORMAT = "tv3s.snapshot/1"
STEPS = ("before_write", "mid_write", "after_write", "after_commit")
# Parts that are not Parquet tables: a unit's resume point travels with its rows (jobs).
FILE_SUFFIXES = {"state": ".safetensors"}
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,199}")

# Called with (step, path) at each step of a commit; tests use it to inject crashes.
Observer = Callable[[str, str], None]


def no_observer(step: str, path: str) -> None:
    """The default observer: does nothing."""


class CommitError(RuntimeError):
    """The output location holds something the protocol cannot accept; the message says what to do."""


@dataclass(frozen=True)
class DataFile:
    """A Parquet data file of one table, as listed in a record or snapshot (path relative to the root)."""

    table: str
    path: str
    rows: int
    size: int  # bytes

    def to_json(self) -> dict:
        return {"table": self.table, "path": self.path, "rows": self.rows, "size": self.size}

    @classmethod
    def from_json(cls, d: dict) -> DataFile:
        return cls(str(d["table"]), str(d["path"]), int(d["rows"]), int(d["size"]))


@dataclass(frozen=True)
class Part:
    """Encoded contents of one table for a unit."""

    table: str
    data: bytes
    rows: int


@dataclass(frozen=True)
class UnitKey:
    """Names one unit; each part must be a safe path segment (letters, digits, . _ = -)."""

    job_id: str
    scope: str
    name: str

    def __post_init__(self) -> None:
        for what, value in (("job id", self.job_id), ("scope", self.scope), ("unit name", self.name)):
            if not _SAFE.fullmatch(value) and not (what == "scope" and _SAFE.fullmatch(value.lstrip("_"))):
                raise ValueError(
                    f"{what} {value!r} is not a safe path segment: use letters, digits and . _ = - "
                    "(at most 200 characters, not starting with a dot)"
                )

    @property
    def record_path(self) -> str:
        return f"{COMMITS_DIR}/{self.job_id}/{self.scope}/{self.name}.json"

    def data_path(self, table: str, attempt: str) -> str:
        return f"{table}/{self.job_id}/{self.scope}/{self.name}.{attempt}{FILE_SUFFIXES.get(table, '.parquet')}"


@dataclass(frozen=True)
class UnitRecord:
    """A committed unit: the files of its winning attempt and what the writer chose to note."""

    key: UnitKey
    attempt: str
    files: tuple[DataFile, ...]
    meta: dict = field(compare=False)
    committed_at: str = ""

    def to_json(self) -> dict:
        return {
            "format": RECORD_FORMAT,
            "job_id": self.key.job_id,
            "scope": self.key.scope,
            "name": self.key.name,
            "attempt": self.attempt,
            "files": [f.to_json() for f in self.files],
            "meta": self.meta,
            "committed_at": self.committed_at,
            "tv3s_version": __version__,
        }

    @classmethod
    def from_json(cls, d: dict, where: str) -> UnitRecord:
        if d.get("format") != RECORD_FORMAT:
            raise CommitError(f"{where}: not a {RECORD_FORMAT} commit record (format {d.get('format')!r})")
        return cls(
            UnitKey(d["job_id"], d["scope"], d["name"]),
            d["attempt"],
            tuple(DataFile.from_json(f) for f in d["files"]),
            d.get("meta", {}),
            d.get("committed_at", ""),
        )


@dataclass(frozen=True)
class Snapshot:
    """The visible files as of a compaction, and the records it accounted for."""

    seq: int
    id: str
    covered: frozenset[str]
    files: tuple[DataFile, ...]
    created_at: str

    @property
    def path(self) -> str:
        return f"{SNAPSHOTS_DIR}/{self.seq:08d}-{self.id}.json"

    def to_json(self) -> dict:
        return {
            "format": SNAPSHOT_FORMAT,
            "seq": self.seq,
            "id": self.id,
            "created_at": self.created_at,
            "covered": sorted(self.covered),
            "files": [f.to_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, d: dict, where: str) -> Snapshot:
        if d.get("format") != SNAPSHOT_FORMAT:
            raise CommitError(f"{where}: not a {SNAPSHOT_FORMAT} snapshot (format {d.get('format')!r})")
        files = tuple(DataFile.from_json(f) for f in d["files"])
        return cls(int(d["seq"]), str(d["id"]), frozenset(d["covered"]), files, d.get("created_at", ""))


@dataclass(frozen=True)
class View:
    """What readers see: the visible data files, and the records and snapshot that define them."""

    files: tuple[DataFile, ...]
    records: tuple[str, ...]  # every record path present (covered by the snapshot or not)
    snapshot: Snapshot | None

    def table_files(self, table: str) -> list[DataFile]:
        return [f for f in self.files if f.table == table]


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
        self.fs, root = fsspec.core.url_to_fs(self.url, **(storage_options or {} if remote else {}))
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)

    # --- paths ----------------------------------------------------------------------------
    def full(self, rel: str) -> str:
        """The filesystem path of a root-relative path."""
        return f"{self.root}/{rel}"

    def uri(self, rel: str) -> str:
        """A URL other tools (DuckDB) can open: the local path, or protocol://bucket/key."""
        return self.full(rel) if self.local else self.fs.unstrip_protocol(self.full(rel))

    def _rel(self, full: str) -> str:
        prefix = self.root + "/"
        if not full.startswith(prefix):
            raise CommitError(f"{full} is outside the output root {self.root}")
        return full[len(prefix) :]

    # --- reading --------------------------------------------------------------------------
    def read(self, rel: str) -> bytes:
        return self.fs.cat_file(self.full(rel))

    def _read_json(self, rel: str) -> dict:
        try:
            return json.loads(self.read(rel))
        except json.JSONDecodeError as exc:
            raise CommitError(
                f"{self.uri(rel)} is not valid JSON ({exc}); records are written whole, so something else "
                "wrote it: restore it from the attempt's data files or remove the unit's data and re-run"
            ) from exc

    def _read_many(self, rels: list[str]) -> dict[str, dict]:
        if not rels:
            return {}
        blobs = self.fs.cat([self.full(r) for r in rels])  # concurrent requests on object stores
        out = {}
        for rel in rels:
            try:
                out[rel] = json.loads(blobs[self.full(rel)])
            except json.JSONDecodeError as exc:
                raise CommitError(f"{self.uri(rel)} is not valid JSON ({exc})") from exc
        return out

    def list(self, prefix: str) -> list[StoredFile]:
        """Files under a root-relative prefix, freshly listed (no cached listing)."""
        base = self.full(prefix)
        self.fs.invalidate_cache(base)
        found = self.fs.find(base, detail=True)  # {} when nothing is there
        return sorted(
            (StoredFile(self._rel(path), _modified(info)) for path, info in found.items() if info["type"] == "file"),
            key=lambda f: f.path,
        )

    def record(self, key: UnitKey) -> UnitRecord | None:
        """The unit's commit record, or None if the unit is not committed."""
        path = self.full(key.record_path)
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        return UnitRecord.from_json(json.loads(data), self.uri(key.record_path))

    def scope_names(self, job_id: str, scope: str) -> list[str]:
        """Names of the committed units of one job and scope, from one listing (no reads)."""
        found = self.list(f"{COMMITS_DIR}/{job_id}/{scope}")
        return [f.path.rsplit("/", 1)[-1].removesuffix(".json") for f in found if f.path.endswith(".json")]

    def job_scopes(self, job_id: str) -> dict[str, set[str]]:
        """The names of every committed unit of a job, by scope, from one listing of its records."""
        prefix = f"{COMMITS_DIR}/{job_id}/"
        scopes: dict[str, set[str]] = {}
        for f in self.list(prefix.rstrip("/")):
            if f.path.endswith(".json"):
                scope, _, name = f.path[len(prefix) :].removesuffix(".json").rpartition("/")
                scopes.setdefault(scope, set()).add(name)
        return scopes

    def scope_records(self, job_id: str, scope: str) -> list[UnitRecord]:
        """All committed units of one job and scope (e.g. one video's segment ranges)."""
        rels = [f.path for f in self.list(f"{COMMITS_DIR}/{job_id}/{scope}") if f.path.endswith(".json")]
        return [UnitRecord.from_json(d, self.uri(p)) for p, d in self._read_many(rels).items()]

    def latest_snapshot(self) -> Snapshot | None:
        names = [f.path for f in self.list(SNAPSHOTS_DIR) if f.path.endswith(".json")]
        if not names:
            return None
        latest = max(names)  # zero-padded sequence number, then id: a total order
        return Snapshot.from_json(self._read_json(latest), self.uri(latest))

    def view(self) -> View:
        """The visible data files: the latest snapshot's, plus those of records it does not cover."""
        snapshot = self.latest_snapshot()
        covered = snapshot.covered if snapshot else frozenset()
        records = [f.path for f in self.list(COMMITS_DIR) if f.path.endswith(".json")]
        files = list(snapshot.files) if snapshot else []
        for path, body in self._read_many([r for r in records if r not in covered]).items():
            files.extend(UnitRecord.from_json(body, self.uri(path)).files)
        return View(tuple(sorted(files, key=lambda f: f.path)), tuple(records), snapshot)

    # --- writing --------------------------------------------------------------------------
    def commit(
        self, key: UnitKey, parts: list[Part], meta: dict | None = None, observer: Observer = no_observer
    ) -> tuple[UnitRecord, bool]:
        """Commit a unit exactly once; returns (its record, whether this call committed it).

        If the unit is already committed nothing is written and the existing record is
        returned. `observer` is called at each of STEPS.
        """
        existing = self.record(key)
        if existing is not None:
            return existing, False
        attempt = uuid.uuid4().hex[:16]
        observer("before_write", self.uri(key.record_path))
        files = []
        for part in parts:
            rel = key.data_path(part.table, attempt)
            self.write_once(rel, part.data, observer)
            files.append(DataFile(part.table, rel, part.rows, len(part.data)))
        observer("after_write", self.uri(key.record_path))
        record = UnitRecord(key, attempt, tuple(files), meta or {}, utc_now())
        winner = self._publish(key.record_path, record.to_json(), attempt)
        if winner is not None:  # another attempt committed first (local disk): its files count
            return UnitRecord.from_json(winner, self.uri(key.record_path)), False
        observer("after_commit", self.uri(key.record_path))
        return record, True

    def commit_snapshot(self, snapshot: Snapshot, observer: Observer = no_observer) -> None:
        """Make a compaction visible: one atomic object naming every visible file."""
        observer("after_write", self.uri(snapshot.path))
        if self._publish(snapshot.path, snapshot.to_json(), snapshot.id) is not None:
            raise CommitError(f"{self.uri(snapshot.path)} already exists; snapshot ids are random, so re-run compact")
        observer("after_commit", self.uri(snapshot.path))

    def write_once(self, rel: str, data: bytes, observer: Observer = no_observer) -> None:
        """Write a new file that nothing references yet; never overwrites."""
        path = self.full(rel)
        if not self.local:
            # An object store PUT is all or nothing: a crash during it leaves no object,
            # which is what a crash at this point means.
            observer("mid_write", self.uri(rel))
            self.fs.pipe_file(path, data)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            observer("mid_write", path)
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())

    def _publish(self, rel: str, body: dict, attempt: str) -> dict | None:
        """Write a record atomically; on local disk only if none exists (returns the existing one then)."""
        data = json.dumps(body, indent=1).encode()
        path = self.full(rel)
        if not self.local:
            self.fs.pipe_file(path, data)
            return None
        tmp = f"{path}.{attempt}.tmp"
        self.write_once(self._rel(tmp), data)
        try:
            os.link(tmp, path)  # atomic, and refuses to replace an existing record
        except FileExistsError:
            return json.loads(self.fs.cat_file(path))
        finally:
            os.unlink(tmp)
        _fsync_dir(os.path.dirname(path))
        return None

    def delete(self, rels: list[str]) -> None:
        if rels:
            self.fs.rm([self.full(r) for r in rels])


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
