"""Selected frames of an output as WebDataset training shards: what `tv3s train` reads.

Each sample is ``{video}/{frame:06d}`` with the source frame re-read by reference
(``.jpg``), its committed mask exactly as stored (``.png``) and the frames row without
the mask (``.json``). Layout of the destination::

    shard-00000.tar, shard-00001.tar, ...   the samples, in (video, frame) order
    _export/plan.json                       job, predicate, frame count, shard size, selection digest
    _export/shard-00000.json                written after its shard: samples written, frames skipped

Resumable: the selection is split into shards deterministically, and a shard whose record
exists is done, so a re-run writes only the others. A shard is built in a local temporary
file and placed with one rename (local disk) or one PUT (object store): a crash never
leaves a half-written shard visible. A frame whose source cannot be read any more is
skipped, named in its shard's record, and the rest of the export goes on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby

import duckdb
import fsspec
import numpy as np
from PIL import Image
from tqdm import tqdm

from ..ingest.source_frames import FrameRef, SourceError, SourceReader
from ..storage import Store
from .manifest import safe_key
from .query import QueryError, parse_predicate

PLAN = "_export/plan.json"
_JOB = "SELECT * FROM frames WHERE job_id = $job_id"
_RANGE = _JOB + " AND video_id = $video_id AND frame_index BETWEEN $first AND $last"
HINT = "the frame is skipped; restore the source and re-run the same export to add it"


class ExportError(ValueError):
    """The export cannot go ahead as asked; the message says what to do instead."""


@dataclass
class ExportResult:
    shards: list[str]
    frames_selected: int
    samples_written: int = 0
    shards_written: int = 0  # by this run (the others were done before)
    skipped: list[dict] = field(default_factory=list)


def sample_key(video_id: str, frame_index: int) -> str:
    """``{video}/{frame:06d}``; an id with characters unsafe in a tar path gets a slug plus its hash
    (``safe_key``), which keeps distinct videos apart. The json keeps the exact id."""
    plain = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._=-]*", video_id) is not None
    return f"{video_id if plain else safe_key(video_id)}/{frame_index:06d}"


def select_frames(con: duckdb.DuckDBPyConnection, job_id: str, predicate: duckdb.Expression) -> list[tuple[str, int]]:
    """(video_id, frame_index) of the job's frames the checked predicate selects, in export order."""
    try:
        relation = _filtered(con, _JOB, {"job_id": job_id}, predicate).project("video_id, frame_index")
        table = relation.order("video_id, frame_index").to_arrow_table()
    except duckdb.Error as exc:
        raise ExportError(f"the --where predicate does not work on the frames table: {exc}") from exc
    return list(zip(table.column("video_id").to_pylist(), table.column("frame_index").to_pylist()))


def _filtered(
    con: duckdb.DuckDBPyConnection, scope: str, params: dict, predicate: duckdb.Expression
) -> duckdb.DuckDBPyRelation:
    """The frames `scope` selects by its bound `params`, then narrowed by the checked predicate.

    The job (and video, frame range) are parameters of a statement of their own; the user's predicate only
    filters that statement's rows, so it can narrow them and never reach another job's.
    """
    return con.sql(scope, params=params).set_alias("frames").filter(predicate)


def export(
    con: duckdb.DuckDBPyConnection,
    job_id: str,
    where: str,
    dest: str,
    store: Store,
    shard_frames: int = 1000,
    quality: int = 95,
    progress: bool = True,
) -> ExportResult:
    """Write (or finish writing) the shards of the frames `where` selects into `dest`."""
    try:
        predicate = parse_predicate(where)
    except QueryError as exc:
        raise ExportError(f"the --where predicate does not work on the frames table: {exc}") from exc
    selection = select_frames(con, job_id, predicate)
    if not selection:
        raise ExportError(
            f"the predicate selects no frames of job {job_id!r}; check it with "
            f'tv3s query OUTPUT "SELECT count(*) FROM frames WHERE {where}"'
        )
    dest = dest.rstrip("/")
    plan = {
        "job_id": job_id,
        "where": where,
        "frames": len(selection),
        "shard_frames": shard_frames,
        "selection_sha256": _digest(selection),
    }
    _check_plan(store, dest, plan)
    chunks = [selection[k : k + shard_frames] for k in range(0, len(selection), shard_frames)]
    result = ExportResult([f"{dest}/shard-{i:05d}.tar" for i in range(len(chunks))], len(selection))
    done = {i: record for i in range(len(chunks)) if (record := _shard_record(store, dest, i)) is not None}
    for record in done.values():
        result.samples_written += record["samples"]
        result.skipped += record["skipped"]
    reader = SourceReader(store, HINT)
    initial = sum(len(chunks[i]) for i in done)
    with tqdm(total=len(selection), initial=initial, unit="frame", desc="export", disable=not progress) as bar:
        for i, chunk in enumerate(chunks):
            if i in done:
                continue
            record = _write_shard(con, job_id, predicate, chunk, reader, store, result.shards[i], quality, bar.update)
            store.write(f"{dest}/_export/shard-{i:05d}.json", json.dumps(record).encode())
            result.samples_written += record["samples"]
            result.skipped += record["skipped"]
            result.shards_written += 1
    return result


def _write_shard(
    con: duckdb.DuckDBPyConnection,
    job_id: str,
    predicate: duckdb.Expression,
    chunk: Sequence[tuple[str, int]],
    reader: SourceReader,
    store: Store,
    url: str,
    quality: int,
    advance: Callable[[int], object],
) -> dict:
    skipped: list[dict] = []

    def samples() -> Iterator[dict]:
        for row in _rows(con, job_id, predicate, chunk):
            advance(1)
            try:
                frame = reader.frame(FrameRef(row["source_url"], row["source_member"], row["source_frame_index"]))
                if frame.shape[:2] != (row["height"], row["width"]):
                    raise SourceError(
                        f"the source frame is {frame.shape[1]}x{frame.shape[0]} but its mask is "
                        f"{row['width']}x{row['height']}: the source changed since labeling; {HINT}"
                    )
            except SourceError as exc:
                skipped.append({"video_id": row["video_id"], "frame_index": row["frame_index"], "error": str(exc)})
                continue
            mask = row.pop("mask_png")
            yield training_sample(row["video_id"], row["frame_index"], encode_jpeg(frame, quality), mask, row)

    written = write_shard(samples(), url, store)
    return {"shard": url, "samples": written, "skipped": skipped}


def training_sample(video_id: str, frame_index: int, jpeg: bytes, mask_png: bytes, meta: dict) -> dict:
    """One sample as `tv3s train` reads it: the frame (.jpg), its label map (.png) and `meta` (.json, which
    must hold the video_id and frame_index the reader groups and orders samples by)."""
    return {
        "__key__": sample_key(video_id, frame_index),
        "jpg": jpeg,
        "png": mask_png,
        "json": json.dumps(meta, default=_json_value).encode(),
    }


def write_shard(samples: Iterable[dict], url: str, store: Store) -> int:
    """Write `samples` (`training_sample`s) as the shard at `url`; returns how many. Built in a temporary file
    and placed with one rename (local disk) or one PUT (object store), so a shard is whole or absent."""
    import webdataset as wds

    count = 0
    handle, tmp = _shard_file(url)
    try:
        with os.fdopen(handle, "wb") as raw, wds.TarWriter(raw) as writer:
            for sample in samples:
                writer.write(sample)
                count += 1
        if _is_local(url):
            os.replace(tmp, _local_path(url))
        else:
            store.put(tmp, url)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return count


def _shard_file(url: str) -> tuple[int, str]:
    """A new file to build the shard at `url` in: its open descriptor and its path.

    On local disk it sits beside the shard and becomes it by a rename, so it is created with the mode any new
    file gets (0o666 less the umask), not mkstemp's 0o600, which would leave the shard unreadable to the other
    users and containers that train on it. For an object store it is a private temporary file, uploaded then
    deleted.
    """
    if not _is_local(url):
        return tempfile.mkstemp(suffix=".tar.tmp")
    path = _local_path(url)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp


def _rows(
    con: duckdb.DuckDBPyConnection, job_id: str, predicate: duckdb.Expression, chunk: Sequence[tuple[str, int]]
) -> Iterator[dict]:
    """Full rows of the chunk's frames, video by video, in order (few masks in memory at once); the
    predicate again, so a sparse selection does not fetch the masks of every frame in its range."""
    for video_id, keys in groupby(chunk, key=lambda k: k[0]):
        frames = [f for _, f in keys]
        for start in range(0, len(frames), 64):
            part = frames[start : start + 64]
            params = {"job_id": job_id, "video_id": video_id, "first": part[0], "last": part[-1]}
            rows = _filtered(con, _RANGE, params, predicate).order("frame_index").to_arrow_table().to_pylist()
            wanted = set(part)
            yield from (r for r in rows if r["frame_index"] in wanted)


def _check_plan(store: Store, dest: str, plan: dict) -> None:
    url = f"{dest}/{PLAN}"
    fs, path = store.filesystem(url)
    if fs.exists(path):
        before = json.loads(store.read_all(url))
        if before != plan:
            raise ExportError(
                f"{dest} already holds an export of another selection (job {before.get('job_id')!r}, "
                f"where {before.get('where')!r}, {before.get('frames')} frames, {before.get('shard_frames')} per "
                "shard); export to another --to, or delete it first"
            )
        return
    store.write(url, json.dumps(plan, indent=2).encode())


def _shard_record(store: Store, dest: str, index: int) -> dict | None:
    url = f"{dest}/_export/shard-{index:05d}.json"
    fs, path = store.filesystem(url)
    if not fs.exists(path):
        return None
    try:
        return json.loads(store.read_all(url))
    except ValueError:  # a record cut short by a crash: the shard is written again
        return None


def _digest(selection: Sequence[tuple[str, int]]) -> str:
    h = hashlib.sha256()
    for video_id, frame_index in selection:
        h.update(f"{video_id}\0{frame_index}\n".encode())
    return h.hexdigest()


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _json_value(value: object) -> object:
    if isinstance(value, bytes):
        return None
    return str(value)


def _is_local(url: str) -> bool:
    return fsspec.utils.get_protocol(url) in ("file", "local")


def _local_path(url: str) -> str:
    return fsspec.core.url_to_fs(url)[1]
