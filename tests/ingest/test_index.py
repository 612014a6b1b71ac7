"""Tar header scan and the Parquet index: offsets, parallel multi-shard indexing, chains, gaps, duplicates."""

from __future__ import annotations

import io
import tarfile

import pyarrow.parquet as pq
import pytest

from tv3s.cli import main
from tv3s.pipeline.ingest.index import build_index, plan_videos, read_index, write_table
from tv3s.pipeline.ingest.tarscan import ChunkReader, MemberScan, TarDefect, TarMember, iter_members
from tv3s.pipeline.storage import Store
from tv3s.schemas.errors import ErrorKind
from tv3s.schemas.index import INDEX_SCHEMA, INDEX_VERSION

from ..support.datagen import frame_sample, pax_record, segment_sample, tar_bytes, write_shard


def scan(data: bytes, chunk: int = 1 << 20):
    reader = ChunkReader(lambda s, e: data[s:e], len(data), chunk)
    return list(iter_members(reader.read_at, len(data)))


def test_scan_matches_tarfile_including_long_and_pax_names():
    buf = io.BytesIO()
    long_name = "a/" + "very-long-directory-name/" * 8 + "k.mp4"
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in [("x/1.json", b"{}"), (long_name, b"v" * 1000), ("big.bin", bytes(70000))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    pax = io.BytesIO()
    with tarfile.open(fileobj=pax, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("ü/" + "p" * 120 + ".jpg")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    for data in (buf.getvalue(), pax.getvalue()):
        expected = [(m.name, m.offset_data, m.size) for m in tarfile.open(fileobj=io.BytesIO(data))]
        for chunk in (512, 4096, 1 << 20):  # buffer boundaries anywhere
            assert [(m.name, m.offset, m.size) for m in scan(data, chunk)] == expected


def test_scan_reads_only_headers_of_large_members():
    data = tar_bytes([{"__key__": f"k{i}", "mp4": bytes(3 << 20)} for i in range(4)])
    fetched = []

    def read(start, end):
        fetched.append(end - start)
        return data[start:end]

    members = list(iter_members(ChunkReader(read, len(data), 4096).read_at, len(data)))
    assert len(members) == 4
    assert sum(fetched) < 64 * 1024  # 12 MiB archive, a few KiB read


def test_truncated_archive_yields_intact_members_then_defect():
    data = tar_bytes([{"__key__": f"k{i}", "jpg": bytes(2000)} for i in range(3)])
    second = list(tarfile.open(fileobj=io.BytesIO(data)))[1]
    cut = data[: second.offset_data + 1000]  # inside the second member
    got = []
    with pytest.raises(TarDefect) as info:
        for m in iter_members(lambda o, n: cut[o : o + n], len(cut)):
            got.append(m.name)
    assert got == ["k0.jpg"]
    assert info.value.kind == ErrorKind.truncated_tar and "k1.jpg" in str(info.value)


def _archive(tmp_path):
    """Three shards: two videos' segments spread over them, plus a frame sequence."""
    v = lambda vid, i: segment_sample(vid, i, b"\x00" * (100 + i), fps=10.0, start_frame=i * 5)  # noqa: E731
    shards = [
        [v("drive-b", 1), v("drive-a", 0)],
        [v("drive-a", 1), frame_sample("cam", 0, b"jpg0"), frame_sample("cam", 1, b"jpg1")],
        [v("drive-b", 0), v("drive-a", 2)],
    ]
    return [write_shard(tmp_path / f"s-{i}.tar", s) for i, s in enumerate(shards)]


def test_index_rows_point_at_the_member_bytes(tmp_path):
    urls = _archive(tmp_path)
    result = build_index([str(tmp_path / "s-{0..2}.tar")], Store(), workers=3)
    assert result.errors == [] and result.shards == 3 and result.members == 12
    table = result.table
    assert table.schema.equals(INDEX_SCHEMA, check_metadata=True)
    assert table.num_rows == 7
    for row in table.to_pylist():
        with open(row["shard"], "rb") as f:
            f.seek(row["media_offset"])
            media = f.read(row["media_size"])
        with tarfile.open(row["shard"]) as tar:
            assert tar.extractfile(row["media_member"]).read() == media
    a1 = next(r for r in table.to_pylist() if r["video_id"] == "drive-a" and r["index"] == 1)
    assert (a1["shard"], a1["position"], a1["fps"], a1["start_frame"]) == (urls[1], 0, 10.0, 5)
    assert a1["meta_member"] == "drive-a/000001.json"


def test_plan_orders_each_video_across_shards(tmp_path):
    _archive(tmp_path)
    runs, errors = plan_videos(build_index([str(tmp_path / "*.tar")], Store()).table)
    assert errors == []
    assert [(r.video_id, r.sample_type, [row["index"] for row in r.rows]) for r in runs] == [
        ("cam", "frame", [0, 1]),
        ("drive-a", "segment", [0, 1, 2]),
        ("drive-b", "segment", [0, 1]),
    ]


def test_gaps_split_videos_and_duplicates_are_reported(tmp_path):
    seg = lambda i: segment_sample("d", i, b"x" * 10)  # noqa: E731
    write_shard(tmp_path / "a.tar", [seg(0), seg(1), seg(3)])
    write_shard(tmp_path / "b.tar", [seg(1), seg(6)])
    write_shard(tmp_path / "c.tar", [frame_sample("f", i, b"j") for i in (1, 2, 4)])
    runs, errors = plan_videos(build_index([str(tmp_path / "*.tar")], Store()).table)
    assert [(r.video_id, r.run, [row["index"] for row in r.rows]) for r in runs] == [
        ("d", 0, [0, 1]),
        ("d", 1, [3]),
        ("d", 2, [6]),
        ("f", 0, [1, 2]),
        ("f", 1, [4]),
    ]
    kinds = [(e.kind, e.video_id, e.segment_index, e.frame_index) for e in errors]
    assert (ErrorKind.duplicate_key, "d", 1, None) in kinds
    assert (ErrorKind.missing_segment, "d", 2, None) in kinds
    assert (ErrorKind.missing_segment, "d", 4, None) in kinds
    assert (ErrorKind.missing_segment, "f", None, 3) in kinds
    dup = next(e for e in errors if e.kind == ErrorKind.duplicate_key)
    assert dup.url.endswith("b.tar") and "a.tar" in dup.message


def test_missing_first_segment_is_a_gap(tmp_path):
    write_shard(tmp_path / "a.tar", [segment_sample("d", 2, b"x")])
    runs, errors = plan_videos(build_index([str(tmp_path / "a.tar")], Store()).table)
    assert [e.kind for e in errors] == [ErrorKind.missing_segment] and "0..1" in errors[0].message


def test_index_parquet_roundtrip_on_s3_is_versioned(s3, tmp_path):
    bucket = s3.make_bucket("index-roundtrip")
    fs = s3.filesystem()
    for path in _archive(tmp_path):
        fs.put(path, f"{bucket}/shards/{path.rsplit('/', 1)[1]}")
    store = Store(s3.storage_options)
    result = build_index([f"{bucket}/shards/s-{{0..2}}.tar"], store, workers=2)
    assert result.table.num_rows == 7 and not result.errors
    write_table(result.table, f"{bucket}/index.parquet", store)
    back = read_index(f"{bucket}/index.parquet", store)
    assert back.equals(result.table)
    assert all(u.startswith(f"{bucket}/shards/") for u in back.column("shard").to_pylist())
    stale = result.table.replace_schema_metadata({b"tv3s.index.version": b"0"})
    write_table(stale, f"{bucket}/old.parquet", store)
    with pytest.raises(ValueError, match=f"version 0, this tv3s reads version {INDEX_VERSION}.*tv3s index"):
        read_index(f"{bucket}/old.parquet", store)


def test_index_command(tmp_path, capsys):
    _archive(tmp_path)
    out = tmp_path / "out" / "idx.parquet"
    assert (
        main(
            [
                "index",
                str(tmp_path / "s-{0..2}.tar"),
                str(tmp_path / "missing-*.tar"),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "indexed 7 samples of 3 videos from 3 shards" in printed and "1 not_found" in printed
    assert pq.read_table(out).num_rows == 7
    errors = pq.read_table(tmp_path / "out" / "idx.errors.parquet").to_pylist()
    assert [e["kind"] for e in errors] == ["not_found"] and errors[0]["hint"]
    assert main(["index", str(tmp_path / "s-0.tar"), "--out", str(out), "--key-pattern", "{x}"]) == 2


# --- hostile headers: every scan ends, with the intact members and one TarDefect -------


def bounded_scan(data: bytes, reads: int = 200) -> tuple[list[TarMember], TarDefect | None, int]:
    """(members, defect, bytes fetched) of a MemberScan over `data`.

    A scan that loops over reads fails here; one that loops without reading is stopped by
    the tests' timeout marks (pytest-timeout's signal method interrupts a Python loop).
    """
    fetched = []

    def read_at(offset: int, n: int) -> bytes:
        assert len(fetched) < reads, f"the scan did not end within {reads} reads"
        fetched.append(n)
        return data[offset : offset + n]

    members_scan = MemberScan(read_at, len(data))
    return list(members_scan), members_scan.defect, sum(fetched)


def tar_with(*members: tuple[str, bytes, bytes]) -> bytes:
    """A ustar archive of (name, typeflag, data): long-name and pax records written as given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, typeflag, data in members:
            info = tarfile.TarInfo(name)
            info.type, info.size = typeflag, len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.timeout(10, method="signal")
@pytest.mark.parametrize(
    "records",
    [
        b"0 path=x\n",  # length 0: the next record would start where this one does
        b"0 ",
        b"abc path=x\n",  # length not a number
        b"99 path=x\n",  # length past the data
        b"1 path=x\n",  # length shorter than its own digits
        pax_record(b"pathxyz"),  # no '='
        pax_record(b"path=xyz", end=b";"),  # no newline
        pax_record(b"size=abc"),  # size not a number
        pax_record(b"size=-1536"),  # a negative size would step back into the archive
        pax_record(b"size=" + b"9" * 5000),  # more digits than int() converts
        b"9" * 5000 + b" path=x\n",
        pax_record(b"path=k.jpg") + b"\x00" * 3,  # garbage after the records
    ],
)
def test_a_malformed_pax_record_ends_the_scan_with_a_defect(records):
    data = tar_with(
        ("a.jpg", tarfile.REGTYPE, b"x" * 10), ("PaxHeader", tarfile.XHDTYPE, records), ("b.jpg", b"0", b"y")
    )
    members, defect, _ = bounded_scan(data)
    assert [m.name for m in members] == ["a.jpg"]
    assert defect.kind == ErrorKind.corrupt_member and defect.offset == 1024 and "pax" in str(defect)


def test_pax_keys_and_names_that_are_not_utf8_do_not_stop_the_scan():
    records = pax_record(b"\xff\xfe=1") + pax_record(b"path=v/\xff.jpg")
    data = tar_with(("PaxHeader", tarfile.XHDTYPE, records), ("ignored.jpg", b"0", b"y"), ("b.jpg", b"0", b"z"))
    members, defect, _ = bounded_scan(data)
    assert defect is None and [m.name for m in members] == ["v/\udcff.jpg", "b.jpg"]  # as tarfile decodes them


@pytest.mark.timeout(10, method="signal")
@pytest.mark.parametrize("size", [b"-0000003000\x00", b"000000001_0\x00", b"+0000000010\x00"])
def test_a_size_field_that_is_not_octal_ends_the_scan(size):
    data = bytearray(tar_with(("a.jpg", b"0", b"x" * 10), ("b.jpg", b"0", b"y" * 10)))
    header = data[1024:1536]
    assert len(size) == 12
    header[124:136] = size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)  # a valid checksum: only the size is wrong
    data[1024:1536] = header
    members, defect, _ = bounded_scan(bytes(data))
    assert [m.name for m in members] == ["a.jpg"]
    assert defect.kind == ErrorKind.corrupt_member and "size" in str(defect)


@pytest.mark.parametrize("typeflag", [b"L", tarfile.XHDTYPE])
def test_an_extended_header_of_unbelievable_size_is_not_fetched(typeflag):
    data = tar_with(("a.jpg", b"0", b"x"), ("././@LongLink", typeflag, bytes(3 << 20)), ("b.jpg", b"0", b"y"))
    members, defect, fetched = bounded_scan(data)
    assert [m.name for m in members] == ["a.jpg"] and defect.kind == ErrorKind.corrupt_member
    assert fetched < 64 << 10  # the 3 MiB record was never read into memory


def test_a_jpeg_frame_with_its_png_label_map_is_one_frame_not_a_duplicate(tmp_path):
    """tv3s synth's training shards (frame .jpg, label .png, .json) index without a single error record."""
    from tv3s.pipeline.synthetic.training_data import write_synthetic_shards

    shards = write_synthetic_shards(str(tmp_path / "synth"), videos=2, frames=3, height=64, width=96)
    result = build_index(shards, Store())
    runs, plan_errors = plan_videos(result.table)
    assert result.errors == [] and plan_errors == []
    assert [(run.video_id, len(run.rows)) for run in runs] == [("synth00000", 3), ("synth00001", 3)]
    assert {row["media_member"].rsplit(".", 1)[1] for run in runs for row in run.rows} == {"jpg"}
    shard = tmp_path / "mixed.tar"
    with tarfile.open(shard, "w") as tar:  # the label map first: member order does not matter
        for name in ("cam/000000.png", "cam/000000.jpg", "cam/000001.jpg", "cam/000001.mp4"):  # 000001: one too many
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"data"))
    result = build_index([str(shard)], Store())
    assert [r["media_member"] for r in result.table.to_pylist()] == ["cam/000000.jpg", "cam/000001.jpg"]
    assert [(e.kind, e.member) for e in result.errors] == [(ErrorKind.duplicate_key, "cam/000001.mp4")]
