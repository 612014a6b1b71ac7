"""Property tests: real shards, damaged the ways archives come damaged or hostile, never stop the rest.

Each example takes a real shard holding video segments (H.264 + json) and frames (JPEG),
written by webdataset's TarWriter (a pax header before every member), by tarfile's pax
format (long and non-ASCII names as pax path records) or by its GNU format ('L'
long-name records), and damages it: a cut at every class of offset, header bytes flipped
(with or without a checksum that matches again), pax and long-name records rewritten
(length 0, huge, not a number, not UTF-8), names that are not UTF-8. For each:

* the scan ends: a read budget, and a time limit for a loop that does not read (SIGALRM,
  per example, so Hypothesis sees an ordinary failure and can shrink it);
* nothing but InputError records comes out of build_index, stream_shard and MemberScan,
  and every record can be written to the errors Parquet;
* every sample that lies whole before the first changed byte is scanned, indexed and
  streamed, at its original bytes. That expectation comes from tarfile's layout of the
  unmodified shard and the samples the test wrote, never from the code under test.

Hypothesis runs derandomized (the same examples on every run) and without its database.
"""

from __future__ import annotations

import io
import signal
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tv3s.pipeline.ingest.fetch import stream_shard
from tv3s.pipeline.ingest.index import IndexResult, build_index
from tv3s.pipeline.ingest.tarscan import MemberScan, TarDefect
from tv3s.pipeline.storage import Store
from tv3s.schemas.errors import InputError
from tv3s.schemas.index import INDEX_ERRORS_SCHEMA
from tv3s.schemas.manifest import errors_table

from ..support.datagen import (
    encode,
    encode_image,
    frame_sample,
    pax_record,
    segment_sample,
    stamped_frames,
    tar_bytes,
    tar_in_format,
)

# The backstop for a hang the per-example limits below miss (a thread: SIGALRM is theirs).
pytestmark = pytest.mark.timeout(300, method="thread")

BLOCK = 512
FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=150,
    deadline=5000,  # ms per example, generous for 2 shared cores (a scan that never ends is time_limit's)
)


# --- the real shards and their layout, from tarfile -----------------------------------


@dataclass(frozen=True)
class Member:
    name: str
    header: int  # its first header block (a pax or long-name record's, when it has one)
    data: int
    size: int

    @property
    def end(self) -> int:
        return self.data + self.size

    @property
    def headers(self) -> list[int]:
        """Its header blocks: the extended one (pax or long name) if any, then the ustar one."""
        return sorted({self.header, self.data - BLOCK})


@dataclass(frozen=True)
class Shard:
    label: str
    data: bytes = field(repr=False)
    samples: tuple[dict, ...] = field(repr=False)
    members: tuple[Member, ...] = field(repr=False)

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def intact(self, changed: int) -> list[dict]:
        """The samples whose every member (headers and data) ends before byte `changed`."""
        return [s for s in self.samples if all(self.member(n).end <= changed for n in names(s))]

    def extended(self, typeflag: bytes) -> list[Member]:
        """Members with a pax ('x') or long-name ('L') record before their header."""
        return [
            m
            for m in self.members
            if m.header < m.data - BLOCK and self.data[m.header + 156 : m.header + 157] == typeflag
        ]


def names(sample: dict) -> list[str]:
    return [f"{sample['__key__']}.{ext}" for ext in sorted(k for k in sample if not k.startswith("__"))]


def samples(segment_key: str, frame_key: str) -> tuple[dict, ...]:
    """Two videos' worth: three H.264 segments with their json, three JPEG frames."""
    out = []
    for i in range(3):
        video = encode(stamped_frames(0, 2 * i, 2, height=32))
        out.append(segment_sample("v0", i, video, start_frame=2 * i, frames=2) | {"__key__": segment_key.format(i)})
    for i in range(3):
        out.append(
            frame_sample("cam", i, encode_image(stamped_frames(1, i, 1, height=32)[0]))
            | {"__key__": frame_key.format(i)}
        )
    return tuple(out)


@cache
def shards() -> dict[str, Shard]:
    made = {
        "webdataset": (samples("v0/{:06d}", "cam/{:06d}"), tar_bytes),
        "pax": (
            samples("vidéo-ü/{:06d}", "cam-" + "p" * 110 + "/{:06d}"),
            lambda s: tar_in_format(s, tarfile.PAX_FORMAT),
        ),
        "gnu": (samples("v0-" + "g" * 110 + "/{:06d}", "cäm/{:06d}"), lambda s: tar_in_format(s, tarfile.GNU_FORMAT)),
    }
    out = {}
    for label, (written, write) in made.items():
        data = write(list(written))
        layout = tuple(Member(m.name, m.offset, m.offset_data, m.size) for m in tarfile.open(fileobj=io.BytesIO(data)))
        out[label] = Shard(label, data, written, layout)
    return out


# --- damage ---------------------------------------------------------------------------


class Damaged:
    """A damaged copy of a shard; shown as `how` it was damaged (the bytes would drown a failure report)."""

    def __init__(self, shard: Shard, data: bytes, how: str):
        self.shard, self.data, self.how = shard, data, how

    def __repr__(self) -> str:
        return f"Damaged({self.shard.label}: {self.how})"

    @property
    def changed(self) -> int:
        """The first byte that differs from the shard (its length when one is a prefix of the other)."""
        for i, (a, b) in enumerate(zip(self.shard.data, self.data)):
            if a != b:
                return i
        return min(len(self.shard.data), len(self.data))


FIELDS = {"name": (0, 100), "size": (124, 136), "checksum": (148, 156), "typeflag": (156, 157), "magic": (257, 263)}
HOSTILE_PAX = [
    b"0 path=x\n",
    b"0 ",
    b"9" * 30 + b" path=x\n",
    b"abc path=x\n",
    b"99999 path=x\n",
    pax_record(b"size=abc"),
    pax_record(b"size=-1"),
    pax_record(b"size=" + b"9" * 25),
    pax_record(b"path=v0/\xff\xfe.jpg"),
    pax_record(b"\xff\xfe=1"),
    pax_record(b"pathxyz"),
    pax_record(b"path=x.jpg", end=b";"),
    pax_record(b"path="),
]


def valid_checksum(data: bytearray, header: int) -> None:
    """Make the header at `header` pass its checksum again, so what was changed is what gets parsed."""
    block = data[header : header + BLOCK]
    block[148:156] = b" " * 8
    data[header + 148 : header + 156] = b"%06o\x00 " % sum(block)


def with_record(shard: Shard, member: Member, record: bytes) -> bytes:
    """`member`'s pax or long-name record replaced by `record` (cut to the space it has), its size field set."""
    start, space = member.header + BLOCK, member.data - BLOCK - (member.header + BLOCK)
    record = record[:space]
    data = bytearray(shard.data)
    data[start : start + space] = record + bytes(space - len(record))
    data[member.header + 124 : member.header + 136] = b"%011o\x00" % len(record)
    valid_checksum(data, member.header)
    return bytes(data)


SHARD = st.sampled_from(["webdataset", "pax", "gnu"]).map(lambda label: shards()[label])


@st.composite
def cuts(draw) -> Damaged:
    shard = draw(SHARD)
    m = draw(st.sampled_from(shard.members))
    end = -(-shard.members[-1].end // BLOCK) * BLOCK  # where the end-of-archive blocks start
    where = draw(
        st.sampled_from(
            [
                "inside a header",
                "at a block boundary",
                "inside member data",
                "after a member",
                "in the end blocks",
                "anywhere",
            ]
        )
    )
    cut = {
        "inside a header": lambda: draw(st.sampled_from(m.headers)) + draw(st.integers(1, BLOCK - 1)),
        "at a block boundary": lambda: BLOCK * draw(st.integers(0, len(shard.data) // BLOCK)),
        "inside member data": lambda: m.data + draw(st.integers(1, m.size - 1)),
        "after a member": lambda: m.end,
        "in the end blocks": lambda: draw(st.integers(end, len(shard.data) - 1)),
        "anywhere": lambda: draw(st.integers(0, len(shard.data))),
    }[where]()
    return Damaged(shard, shard.data[:cut], f"cut {where} at {cut}")


@st.composite
def header_flips(draw) -> Damaged:
    shard = draw(SHARD)
    m = draw(st.sampled_from(shard.members))
    header = draw(st.sampled_from(m.headers))
    part = draw(st.sampled_from(list(FIELDS)))
    data = bytearray(shard.data)
    if part == "size" and draw(st.booleans()):  # a believable number, wrong (or negative: int() takes a sign)
        data[header + 124 : header + 136] = draw(st.sampled_from([b"%011o\x00", b"-%010o\x00"])) % draw(
            st.integers(0, 8**10 - 1)
        )
    elif part == "typeflag":
        data[header + 156] = draw(st.sampled_from(list(b"0125x gLK7\x00\xff")))
    else:
        start, stop = FIELDS[part]
        for _ in range(draw(st.integers(1, 3))):
            data[header + draw(st.integers(start, stop - 1))] = draw(st.integers(0, 255))
    if part != "checksum" and draw(st.booleans()):
        valid_checksum(data, header)
    return Damaged(shard, bytes(data), f"{part} of the header at {header} changed")


@st.composite
def pax_rewrites(draw) -> Damaged:
    shard = shards()[draw(st.sampled_from(["webdataset", "pax"]))]  # the GNU shard has none
    m = draw(st.sampled_from(shard.extended(b"x")))
    other = draw(st.sampled_from(shard.members)).name.encode()  # a rename onto another member
    record = draw(
        st.one_of(
            st.sampled_from(HOSTILE_PAX),
            st.just(pax_record(b"path=" + other)),
            st.lists(st.sampled_from([*HOSTILE_PAX, pax_record(b"mtime=1.5")]), min_size=1, max_size=4).map(b"".join),
            st.binary(max_size=120),
        )
    )
    return Damaged(shard, with_record(shard, m, record), f"pax record of {m.name} is {record!r}")


@st.composite
def long_name_rewrites(draw) -> Damaged:
    shard = shards()["gnu"]
    m = draw(st.sampled_from(shard.extended(b"L")))
    if draw(st.booleans()):
        data = bytearray(shard.data)
        data[m.header + 124 : m.header + 136] = b"%011o\x00" % draw(st.sampled_from([8**11 - 1, 3 << 20, 0]))
        valid_checksum(data, m.header)
        return Damaged(shard, bytes(data), f"long-name record of {m.name} resized")
    record = draw(
        st.one_of(
            st.sampled_from([b"", b"\x00", b"v0/\xff\xfe.mp4\x00", "ü.jpg".encode("latin-1")]), st.binary(max_size=300)
        )
    )
    return Damaged(shard, with_record(shard, m, record), f"long name of {m.name} is {record!r}")


@st.composite
def odd_names(draw) -> Damaged:
    shard = draw(SHARD)
    m = draw(st.sampled_from(shard.members))
    name = draw(
        st.one_of(
            st.sampled_from(
                ["vidéo/000000.mp4".encode("latin-1"), "ü/000001.jpg".encode("utf-16"), b"\xff.json", b"cam/\x80.jpg"]
            ),
            st.binary(min_size=1, max_size=99),
        )
    )[:99]
    data = bytearray(shard.data)
    header = m.data - BLOCK
    data[header : header + 100] = name + bytes(100 - len(name))
    valid_checksum(data, header)
    return Damaged(shard, bytes(data), f"name of {m.name} is {name!r}")


# --- what must hold -------------------------------------------------------------------


def check(damaged: Damaged, path: Path) -> IndexResult:
    """The properties, for one damaged shard. The scan and the stream run here, under the time
    limit, before build_index: its scan runs in a pool thread, which no signal can stop."""
    intact = damaged.shard.intact(damaged.changed)
    whole = [damaged.shard.member(n) for s in intact for n in names(s)]
    path.write_bytes(damaged.data)
    with time_limit(10):
        members, defect = bounded_scan(damaged.data)
        streamed: list[InputError] = []
        got = list(stream_shard(str(path), Store(), streamed.append))
    assert [(m.name, m.offset, m.size) for m in members[: len(whole)]] == [(m.name, m.data, m.size) for m in whole]
    assert defect is None or isinstance(defect, TarDefect)
    assert [(s.key, s.members) for s in got[: len(intact)]] == [
        (s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")}) for s in intact
    ]

    result = build_index([str(path)], Store(), workers=1)
    keys = result.table.column("key").to_pylist()
    assert all(s["__key__"] in keys for s in intact), (result.errors, keys)
    for row in result.table.to_pylist():
        if row["key"] in {s["__key__"] for s in intact}:
            media = damaged.shard.member(row["media_member"])
            assert (row["media_offset"], row["media_size"]) == (media.data, media.size)
    pq.write_table(result.table, io.BytesIO())
    for errors in (result.errors, streamed):
        assert all(type(e) is InputError and e.message and e.hint for e in errors), errors
        assert not any("object at 0x" in e.message for e in errors), errors
        errors_table(errors, schema=INDEX_ERRORS_SCHEMA)  # storable: the errors Parquet can be written
    return result


def bounded_scan(data: bytes) -> tuple[list, TarDefect | None]:
    """A MemberScan's members and defect; more reads than two per block fails (the scan loops)."""
    reads = 0

    def read_at(offset: int, n: int) -> bytes:
        nonlocal reads
        reads += 1
        assert reads <= 2 * (len(data) // BLOCK) + 8, "the scan does not end"
        return data[offset : offset + n]

    scan = MemberScan(read_at, len(data))
    return list(scan), scan.defect


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail what runs past `seconds` in this (the main) thread with an ordinary AssertionError."""

    def expire(signum, frame):
        raise AssertionError(f"did not end within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def shard_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "shard.tar"


def test_the_unmodified_shards_index_whole(shard_path):
    for shard in shards().values():
        result = check(Damaged(shard, shard.data, "unmodified"), shard_path)
        assert result.errors == [] and result.table.num_rows == len(shard.samples)


@FUZZ
@given(cuts())
def test_cut_shards(shard_path, damaged):
    check(damaged, shard_path)


@FUZZ
@given(header_flips())
def test_flipped_header_bytes(shard_path, damaged):
    check(damaged, shard_path)


@FUZZ
@given(pax_rewrites())
def test_corrupt_pax_records(shard_path, damaged):
    check(damaged, shard_path)


@FUZZ
@given(long_name_rewrites())
def test_corrupt_long_name_records(shard_path, damaged):
    check(damaged, shard_path)


@FUZZ
@given(odd_names())
def test_names_in_odd_encodings(shard_path, damaged):
    check(damaged, shard_path)
