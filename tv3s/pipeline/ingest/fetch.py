"""Bytes out of shards: one sample with one ranged request, neighbours coalesced, or a whole shard streamed.

* `read_sample` fetches one sample's bytes with one ranged request, wherever it is.
* `read_media_batch` fetches several members of one shard in few requests.
* `stream_shard` reads a shard front to back in large requests (no index needed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby

from ...schemas.errors import ErrorKind, InputError
from ..storage import StorageError, Store, redact_url
from .samples import key_of, not_utf8, split_name, unsafe_name
from .tarscan import ChunkReader, MemberScan, TarMember

ErrorSink = Callable[[InputError], None]
STREAM_CHUNK = 8 << 20
COALESCE_GAP = 64 << 10  # members closer than this are fetched in one request
COALESCE_MAX = 32 << 20  # ... up to this many bytes per request


@dataclass(frozen=True)
class SampleBytes:
    media: bytes
    meta: bytes | None


def read_sample(row: dict, store: Store) -> SampleBytes:
    """The media (and json) bytes of an index row, with one ranged request when they are adjacent."""
    spans = [(row["media_offset"], row["media_size"])]
    if row.get("meta_offset") is not None:
        spans.append((row["meta_offset"], row["meta_size"]))
    start = min(o for o, _ in spans)
    end = max(o + s for o, s in spans)
    if end - start - sum(s for _, s in spans) <= COALESCE_GAP:
        blob = store.read(row["shard"], start, end)
        parts = [blob[o - start : o - start + s] for o, s in spans]
    else:
        parts = [store.read(row["shard"], o, o + s) for o, s in spans]
    return SampleBytes(parts[0], parts[1] if len(parts) > 1 else None)


def read_media_batch(rows: Sequence[dict], store: Store) -> list[bytes]:
    """Media bytes of several rows of one shard, in few requests (neighbouring members coalesced)."""
    out: list[bytes] = []
    for group in coalesced(rows):
        start = group[0]["media_offset"]
        end = group[-1]["media_offset"] + group[-1]["media_size"]
        blob = store.read(group[0]["shard"], start, end)
        out += [blob[r["media_offset"] - start : r["media_offset"] - start + r["media_size"]] for r in group]
    return out


def coalesced(rows: Sequence[dict]) -> Iterator[list[dict]]:
    """Rows of neighbouring members grouped so each group is one request (same shard, small gaps)."""
    group: list[dict] = []
    for r in rows:
        if group:
            last = group[-1]
            gap = r["media_offset"] - (last["media_offset"] + last["media_size"])
            span = r["media_offset"] + r["media_size"] - group[0]["media_offset"]
            if r["shard"] != last["shard"] or not 0 <= gap <= COALESCE_GAP or span > COALESCE_MAX:
                yield group
                group = []
        group.append(r)
    if group:
        yield group


@dataclass(frozen=True)
class ShardSample:
    """One sample of a streamed shard: its key and {extension: bytes}."""

    key: str
    members: dict[str, bytes]


def stream_shard(url: str, store: Store, on_error: ErrorSink) -> Iterator[ShardSample]:
    """Every sample of a shard in order, read front to back in large requests.

    Unsafe, non-UTF-8 and extensionless members are reported and skipped (as the index
    does); a damaged archive yields its intact samples and then reports the damage.
    Whatever else goes wrong parsing the shard ends it with one corrupt_member record, as
    `index_shard` does: a stream over many shards goes on with the next.
    """
    safe_url = redact_url(url)
    try:
        yield from _stream_samples(url, safe_url, store, on_error)
    except StorageError as exc:
        on_error(exc.record)
    except Exception as exc:  # input nobody foresaw, or a bug: this shard is reported, the others go on
        on_error(
            InputError(
                kind=ErrorKind.corrupt_member,
                stage="read",
                url=safe_url,
                message=f"reading this shard stopped at an unexpected error ({type(exc).__name__}: {exc}); "
                "the samples already read stand",
                hint="re-create the shard with tv3s shards pack (and report the error if the shard is sound)",
            )
        )


def _stream_samples(url: str, safe_url: str, store: Store, on_error: ErrorSink) -> Iterator[ShardSample]:
    """The body of `stream_shard`: samples, and records of skipped members and of damage."""
    size = store.size(url)
    reader = ChunkReader(lambda s, e: store.read(url, s, e), size, STREAM_CHUNK)
    scan = MemberScan(reader.read_at, size)
    named = ((m, split_name(m.name)) for m in scan if m.regular)
    for key, group in groupby(named, key=lambda pair: pair[1][0] if pair[1] else None):
        members = list(group)
        if key is None or any(unsafe_name(m.name) or not_utf8(m.name) for m, _ in members):
            for m, _ in members:
                unsafe = unsafe_name(m.name) or not_utf8(m.name)
                on_error(
                    InputError(
                        kind=ErrorKind.unsafe_member_name if unsafe else ErrorKind.unknown_member,
                        stage="read",
                        url=safe_url,
                        member=m.name,
                        message="member skipped: its name is unsafe, not UTF-8, or has no extension",
                        hint="re-pack with relative UTF-8 member names KEY.ext",
                    )
                )
            continue
        if scan.cut_through(key, key_of):
            break  # reported below with the damage
        yield ShardSample(key, _first_of_each_extension(key, members, reader, safe_url, on_error))
    if scan.defect is not None:
        on_error(
            InputError(
                kind=scan.defect.kind,
                stage="read",
                url=safe_url,
                member=scan.defect.member,
                message=str(scan.defect),
                hint="re-upload or re-create the shard; the samples before the damage were read",
            )
        )


def _first_of_each_extension(
    key: str, members: list[tuple[TarMember, tuple[str, str]]], reader: ChunkReader, safe_url: str, on_error: ErrorSink
) -> dict[str, bytes]:
    """{extension: bytes} of one sample; a repeated extension is reported and the first kept, as the index keeps it."""
    out: dict[str, bytes] = {}
    for m, (_, ext) in members:
        if ext in out:
            on_error(
                InputError(
                    kind=ErrorKind.duplicate_key,
                    stage="read",
                    url=safe_url,
                    member=m.name,
                    message=f"sample {key!r} has more than one .{ext} member; only the first is used",
                    hint="one member per extension and sample key",
                )
            )
        else:
            out[ext] = reader.read_at(m.offset, m.size)
    return out
