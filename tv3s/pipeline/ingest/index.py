"""Index WebDataset shards into a Parquet table, and plan each video as ordered runs.

Why an index: stream inference needs every segment of a video in order and nothing of
another video in between, while a video's segments are spread over shards. Scanning tar
headers once (no media is decoded or even downloaded) gives, for each sample, its video,
its position in the video and the exact byte range of its members, so a worker can read
one video's samples with ranged requests in order, wherever they are.

Every problem met on the way becomes an `InputError` (the shard or member, what is
wrong, what to do) and the scan of that shard, or of the other shards, goes on.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ...schemas.errors import ErrorKind, InputError
from ...schemas.index import INDEX_ERRORS_SCHEMA, INDEX_SCHEMA, INDEX_VERSION, VERSION_KEY
from ...schemas.manifest import errors_table
from ..storage import StorageError, Store, redact_url
from .order import order_index
from .samples import (
    DEFAULT_KEY_PATTERN,
    META_EXT,
    SampleError,
    identify,
    key_of,
    media_kind,
    not_utf8,
    parse_json,
    split_name,
    unsafe_name,
)
from .tarscan import ChunkReader, MemberScan, TarMember

SCAN_CHUNK = 1 << 20
JPEG_EXTS = frozenset({"jpg", "jpeg"})
LABEL_EXT = "png"  # beside a JPEG frame: its label map
UNSTORABLE = (pa.ArrowException, OverflowError, UnicodeEncodeError)  # what Arrow raises for a value it cannot hold


@dataclass
class ShardIndex:
    """What one shard contributed: its index rows (a table, in shard order), error records, member count."""

    table: pa.Table = field(default_factory=INDEX_SCHEMA.empty_table)
    errors: list[InputError] = field(default_factory=list)
    members: int = 0


@dataclass(frozen=True)
class IndexResult:
    table: pa.Table
    errors: list[InputError]
    shards: int
    members: int


@dataclass(frozen=True)
class VideoRun:
    """Consecutive samples of one video with no gap: the unit that carries one stream state.

    A video with gaps (or, found while reading, a change of frame size) is several runs;
    `run` numbers them from 0 and the state is reset at the start of each.
    """

    video_id: str
    sample_type: str
    run: int
    rows: tuple[dict, ...]


# --- one shard ------------------------------------------------------------------------


def index_shard(url: str, order: int, store: Store, key_pattern: str = DEFAULT_KEY_PATTERN) -> ShardIndex:
    """Scan one shard's headers (and its small json members) into index rows.

    Nothing raised while parsing one shard may stop the indexing of the others: storage
    failures become their own records, and anything else (input nobody foresaw, a bug)
    one corrupt_member record for this shard, keeping the rows indexed before it.
    """
    out = ShardIndex()
    rows: list[dict] = []
    safe_url = redact_url(url)

    def error(kind: ErrorKind, message: str, hint: str, member: str | None = None) -> None:
        out.errors.append(InputError(kind=kind, stage="index", url=safe_url, member=member, message=message, hint=hint))

    try:
        _scan_shard(url, safe_url, order, store, key_pattern, rows, out, error)
    except StorageError as exc:
        out.errors.append(exc.record.model_copy(update={"stage": "index"}))
    except Exception as exc:  # input nobody foresaw, or a bug: this shard is reported, the others go on
        error(
            ErrorKind.corrupt_member,
            f"indexing this shard stopped at an unexpected error ({type(exc).__name__}: {exc}); "
            f"the samples indexed before it ({len(rows)}) are kept",
            "re-create the shard with tv3s shards pack (and report the error if the shard is sound)",
        )
    out.table = _table(rows, error)
    return out


def _scan_shard(
    url: str, safe_url: str, order: int, store: Store, key_pattern: str, rows: list[dict], out: ShardIndex, error
) -> None:
    """The rows, member count and error records of one shard (the body of `index_shard`)."""
    size, version = store.stat(url)
    if size == 0:
        error(ErrorKind.empty_shard, "the shard is an empty file", "re-create or delete the shard")
        return
    reader = ChunkReader(lambda start, end: store.read(url, start, end), size, SCAN_CHUNK)
    scan = MemberScan(reader.read_at, size)
    for position, (key, group) in enumerate(_samples(_counted(_safe_members(scan, error), out), error)):
        if scan.cut_through(key, key_of):
            break  # the truncated_tar record below covers it
        row = _sample_row(key, group, reader, key_pattern, error)
        if row is not None:
            rows.append(row | {"shard": safe_url, "shard_version": version, "shard_order": order, "position": position})
    if scan.defect is not None:
        hint = (
            "re-upload the shard; the members before this point are indexed"
            if scan.defect.kind == ErrorKind.truncated_tar
            else "re-create the shard with tv3s shards pack"
        )
        error(scan.defect.kind, str(scan.defect), hint, scan.defect.member)
    if out.members == 0 and not out.errors:
        error(ErrorKind.empty_shard, "the shard holds no members", "re-create or delete the shard")


def _table(rows: list[dict], error) -> pa.Table:
    """The shard's rows as an index table; a row Arrow cannot store is reported and left out.

    Such a row holds a json value (a number past 64 bits, text with lone surrogates) that
    passed validation: caught here, it costs one sample instead of the whole index, which
    would fail when written. Rows are converted one by one only when the shard fails whole.
    """
    try:
        return pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)
    except UNSTORABLE:
        pass
    kept = []
    for row in rows:
        try:
            pa.Table.from_pylist([row], schema=INDEX_SCHEMA)
        except UNSTORABLE as exc:
            error(
                ErrorKind.bad_metadata,
                f"the sample cannot be stored in the index ({type(exc).__name__}: {exc}); it is left out",
                "keep json numbers within 64 bits and text valid Unicode",
                row["meta_member"] or row["media_member"],
            )
        else:
            kept.append(row)
    return pa.Table.from_pylist(kept, schema=INDEX_SCHEMA)


def _counted(members: Iterator[TarMember], out: ShardIndex) -> Iterator[TarMember]:
    for member in members:
        out.members += 1
        yield member


def _safe_members(members: Iterable[TarMember], error) -> Iterator[TarMember]:
    """Drop (and report) members that are not plain files, whose names could escape a folder, or
    whose names are not UTF-8 (the index could not store them)."""
    for m in members:
        if unsafe_name(m.name):
            error(
                ErrorKind.unsafe_member_name,
                f"member name {m.name!r} is absolute or contains '..'; ignored",
                "re-pack with relative member names (KEY.ext)",
                m.name,
            )
        elif not_utf8(m.name):
            error(
                ErrorKind.unsafe_member_name,
                "member name is not UTF-8 (bytes that are not show as \\xNN in the member field); ignored",
                "re-pack with UTF-8 member names (KEY.ext)",
                m.name,
            )
        elif not m.regular:
            error(
                ErrorKind.unknown_member,
                "a link or special file, not data; ignored",
                "store samples as regular files",
                m.name,
            )
        else:
            yield m


def _samples(members: Iterable[TarMember], error) -> Iterator[tuple[str, list[TarMember]]]:
    """Runs of consecutive members with one key (webdataset's grouping); a key seen again is a duplicate."""
    seen: set[str] = set()
    for key, group in groupby(members, key=lambda m: key_of(m.name)):
        group = list(group)
        if split_name(group[0].name) is None:
            error(
                ErrorKind.unknown_member,
                "member name has no extension, so it is no part of a sample; ignored",
                "name members KEY.ext",
                group[0].name,
            )
            continue
        if key in seen:
            error(
                ErrorKind.duplicate_key,
                f"sample key {key!r} appears again further on in this shard; this occurrence is ignored",
                "give every sample a unique key",
                group[0].name,
            )
            continue
        seen.add(key)
        yield key, group


def _sample_row(key: str, group: list[TarMember], reader: ChunkReader, key_pattern: str, error) -> dict | None:
    """The index row of one sample, or None when it has no usable media (each problem reported)."""
    media, meta = _sample_members(key, group, error)
    item = _chosen_media(key, media, meta, error)
    return None if item is None else _sample_from(key, item, meta, reader, key_pattern, error)


def _sample_members(key: str, group: list[TarMember], error) -> tuple[list[TarMember], TarMember | None]:
    """The sample's media members and its json; duplicate json and unknown extensions reported."""
    media: list[TarMember] = []
    meta: TarMember | None = None
    for m in group:
        ext = split_name(m.name)[1]
        if ext == META_EXT and meta is None:
            meta = m
        elif ext == META_EXT:
            error(
                ErrorKind.duplicate_key,
                f"sample {key!r} has more than one json member; only {meta.name} is used",
                "one json member per sample key",
                m.name,
            )
        elif media_kind(ext) is not None:
            media.append(m)
        else:
            error(
                ErrorKind.unknown_member,
                f"extension .{ext} is neither media nor json; ignored",
                "only .mp4 .mkv .webm .avi .mov .jpg .jpeg .png and .json members are read",
                m.name,
            )
    return media, meta


def _chosen_media(key: str, media: list[TarMember], meta: TarMember | None, error) -> TarMember | None:
    """The media member the sample stands for; the others, and a json without media, reported."""
    if not media:
        if meta is not None:
            error(
                ErrorKind.unknown_member,
                "a json with no media member; ignored",
                "store the video or frame next to its json under the same key",
                meta.name,
            )
        return None
    frame = _frame_beside_label(media)
    if frame is not None:
        return frame
    for extra in media[1:]:
        error(
            ErrorKind.duplicate_key,
            f"sample {key!r} has more than one media member; only {media[0].name} is used",
            "one media member per sample key (a .jpg frame may have a .png label map beside it)",
            extra.name,
        )
    return media[0]


def _frame_beside_label(media: list[TarMember]) -> TarMember | None:
    """The JPEG of a sample holding one JPEG and PNGs: training data (tv3s synth, tv3s export), a frame
    with its label map, whatever their order. The PNG is not a frame, so not a second media member."""
    exts = [split_name(m.name)[1] for m in media]
    jpegs = [m for m, ext in zip(media, exts) if ext in JPEG_EXTS]
    labels = [ext for ext in exts if ext == LABEL_EXT]
    return jpegs[0] if len(media) > 1 and len(jpegs) == 1 and len(jpegs) + len(labels) == len(media) else None


def _sample_from(key: str, item: TarMember, meta: TarMember | None, reader, key_pattern: str, error) -> dict | None:
    """The row of a sample from its media member and json (which say its video and position)."""
    try:
        parsed = parse_json(reader.read_at(meta.offset, meta.size)) if meta else None
        sample = identify(key, media_kind(split_name(item.name)[1]), parsed, key_pattern)
    except SampleError as exc:
        error(exc.kind, str(exc), exc.hint, (meta or item).name)
        return None
    return {
        "video_id": sample.video_id,
        "sample_type": sample.sample_type,
        "index": sample.index,
        "key": key,
        "media_member": item.name,
        "media_offset": item.offset,
        "media_size": item.size,
        "meta_member": meta.name if meta else None,
        "meta_offset": meta.offset if meta else None,
        "meta_size": meta.size if meta else None,
        "fps": sample.fps,
        "start_frame": sample.start_frame,
        "frames": sample.frames,
        "camera": sample.camera,
    }


# --- many shards ----------------------------------------------------------------------


def build_index(
    patterns: Iterable[str],
    store: Store,
    key_pattern: str = DEFAULT_KEY_PATTERN,
    workers: int = 8,
    progress: bool = False,
    ray_from: int | None = None,
) -> IndexResult:
    """Index every shard matched by `patterns` (in parallel; as Ray tasks when there are at least
    `ray_from` shards), rows in shard order, in memory (see `partitions.build_partitioned_index` for
    archives too large to hold)."""
    urls, errors = store.expand(patterns)
    return index_shard_urls(urls, store, key_pattern, workers, progress, errors, ray_from)


def index_shard_urls(
    urls: list[str],
    store: Store,
    key_pattern: str = DEFAULT_KEY_PATTERN,
    workers: int = 8,
    progress: bool = False,
    errors: list[InputError] | None = None,
    ray_from: int | None = None,
) -> IndexResult:
    """`build_index` of shard URLs already expanded (`errors`: those met expanding them)."""
    shards = list(shard_indexes(urls, store, key_pattern, workers, progress, ray_from))
    found = [*(errors or []), *(e for shard in shards for e in shard.errors)]
    table = pa.concat_tables([INDEX_SCHEMA.empty_table(), *(shard.table for shard in shards)])
    return IndexResult(table, found, len(urls), sum(s.members for s in shards))


def shard_indexes(
    urls: list[str],
    store: Store,
    key_pattern: str,
    workers: int,
    progress: bool,
    ray_from: int | None,
    first: int = 0,
) -> Iterator[ShardIndex]:
    """Each shard's index in shard order (numbered from `first`): from this process's threads, or, for at
    least `ray_from` shards (None: never), from Ray tasks on the cluster this process is connected to."""
    if ray_from is None or len(urls) < ray_from:
        return iter_shard_indexes(urls, store, key_pattern, workers, progress, first)
    from .scan_tasks import ray_shard_indexes

    return ray_shard_indexes(urls, store, key_pattern, workers, progress, first=first)


def iter_shard_indexes(
    urls: list[str],
    store: Store,
    key_pattern: str = DEFAULT_KEY_PATTERN,
    workers: int = 8,
    progress: bool = False,
    first: int = 0,
) -> Iterator[ShardIndex]:
    """Each shard's index, in shard order (numbered from `first`), scanned `workers` at a time (header
    scans wait on storage, so threads suffice); at most 2 x `workers` shards' results are held before
    they are taken. `scan_tasks.ray_shard_indexes` spreads the same over a Ray cluster."""
    window = 2 * max(1, workers)
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(urls), unit="shard", desc="index", disable=not progress) as bar,
    ):
        pending: deque = deque()
        for i, url in enumerate(urls):
            pending.append(pool.submit(index_shard, url, first + i, store, key_pattern))
            if len(pending) >= window:
                yield pending.popleft().result()
                bar.update()
        while pending:
            yield pending.popleft().result()
            bar.update()


# --- Parquet --------------------------------------------------------------------------


def write_table(table: pa.Table, uri: str, store: Store) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    store.write(uri, buf.getvalue())


def write_errors(errors: list[InputError], uri: str, store: Store) -> None:
    write_table(errors_table(errors, schema=INDEX_ERRORS_SCHEMA), uri, store)


def read_index(uri: str, store: Store) -> pa.Table:
    """The index at `uri`; refuses another schema version with the command that rebuilds it."""
    table = pq.read_table(io.BytesIO(store.read_all(uri)))
    version = (table.schema.metadata or {}).get(VERSION_KEY, b"?").decode()
    if version != str(INDEX_VERSION) or not set(INDEX_SCHEMA.names) <= set(table.column_names):
        raise ValueError(
            f"{redact_url(uri)}: index version {version}, this tv3s reads version {INDEX_VERSION}; "
            "rebuild it with `tv3s index SHARDS... --out URI`"
        )
    return table.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)


def default_errors_uri(index_uri: str) -> str:
    stem = index_uri[: -len(".parquet")] if index_uri.endswith(".parquet") else index_uri
    return stem + ".errors.parquet"


# --- videos as ordered chains ---------------------------------------------------------


def plan_videos(table: pa.Table) -> tuple[list[VideoRun], list[InputError]]:
    """Every video as ordered runs of samples, split at gaps; duplicates and gaps reported.

    Segment chains start at segment 0 (the format numbers them so), so missing leading
    segments are a gap; frame chains start at their lowest frame number, since frame
    files are numbered from 0 or from 1 in the wild. Of samples claiming the same
    position the first in shard order is kept (see `order.order_index`).
    """
    ordered, errors = order_index(table)
    return [VideoRun(video_id, kind, run, tuple(rows)) for video_id, kind, run, rows in ordered.runs()], errors
