"""Packing folders into shards: layout rules, size limits, key-frame splitting, and the round trip through the index."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest

from tv3s.cli import main
from tv3s.commands.shards import byte_size
from tv3s.pipeline.ingest.chunks import iter_videos
from tv3s.pipeline.ingest.decode import decode_image
from tv3s.pipeline.ingest.index import build_index, plan_videos
from tv3s.pipeline.ingest.pack import PackOptions, pack
from tv3s.pipeline.ingest.resize import ResizeRule
from tv3s.pipeline.ingest.sources import discover, frame_numbers
from tv3s.pipeline.storage import Store

from ..support.datagen import encode, encode_image, read_stamp, stamped_frames


def make_source(root: Path) -> Path:
    """solo.mp4 (a video), drive/ (two webm files = one video), cam/ (PNG frames numbered from 1)."""
    src = root / "src"
    (src / "drive").mkdir(parents=True)
    (src / "cam").mkdir()
    (src / "solo.mp4").write_bytes(encode(stamped_frames(0, 0, 9)))
    for i in range(2):
        (src / "drive" / f"part{i}.webm").write_bytes(encode(stamped_frames(1, 5 * i, 5), "libvpx-vp9", "webm"))
    for i in range(4):
        (src / "cam" / f"frame_{i + 1:04d}.png").write_bytes(encode_image(stamped_frames(2, i, 1)[0], "png"))
    (src / "notes.txt").write_text("ignored")
    return src


def read_all(pattern: str, store: Store):
    result = build_index([pattern], store)
    runs, plan_errors = plan_videos(result.table)
    errors = [*result.errors, *plan_errors]
    frames: dict[str, list] = {}
    for chunk in iter_videos(runs, store, errors.append, ResizeRule(scale=None)):
        frames.setdefault(chunk.video_id, []).extend(
            (chunk.frame_index + i, read_stamp(f)) for i, f in enumerate(chunk.frames)
        )
    return frames, errors, result.table


def test_discover_follows_the_folder_rules(tmp_path):
    videos, errors = discover(str(make_source(tmp_path)), Store())
    assert errors == []
    assert [(v.video_id, v.sample_type, [Path(f.name).name for f in v.files]) for v in videos] == [
        ("solo", "segment", ["solo.mp4"]),
        ("cam", "frame", [f"frame_{i:04d}.png" for i in range(1, 5)]),
        ("drive", "segment", ["part0.webm", "part1.webm"]),
    ]
    assert frame_numbers(["a_7.jpg", "b/a_9.jpg"]) == [7, 9]
    assert frame_numbers(["x.jpg", "y.jpg"]) == [0, 1]


def test_pack_index_read_round_trip_on_s3(s3, tmp_path):
    src = make_source(tmp_path)
    bucket = s3.make_bucket("pack-roundtrip")
    store = Store(s3.storage_options)
    result = pack(str(src), f"{bucket}/shards", store, PackOptions(max_count=2))
    assert (result.videos, result.samples, len(result.shards)) == (3, 7, 4) and result.errors == []
    assert result.pattern == f"{bucket}/shards/shard-{{000000..000003}}.tar"
    frames, errors, table = read_all(result.pattern, store)
    assert errors == []
    assert [s for _, s in frames["solo"]] == [(0, t) for t in range(9)]
    assert [s for _, s in frames["drive"]] == [(1, t) for t in range(10)]
    assert frames["cam"] == [(i + 1, (2, i)) for i in range(4)]  # frame numbers from the file names
    drive = [r for r in table.to_pylist() if r["video_id"] == "drive"]
    assert [(r["index"], r["start_frame"], r["frames"], r["fps"]) for r in drive] == [(0, 0, 5, 12.0), (1, 5, 5, 12.0)]
    cam = next(r for r in table.to_pylist() if r["video_id"] == "cam")
    original = (src / "cam" / "frame_0001.png").read_bytes()
    assert (
        s3.filesystem().cat_file(cam["shard"], start=cam["media_offset"], end=cam["media_offset"] + cam["media_size"])
        == original
    )  # bytes unchanged
    with pytest.raises(FileExistsError, match="--overwrite"):
        pack(str(src), f"{bucket}/shards", store)


def test_max_size_bounds_every_shard(tmp_path):
    src = tmp_path / "src" / "seq"
    src.mkdir(parents=True)
    for i in range(12):
        (src / f"{i:03d}.png").write_bytes(encode_image(stamped_frames(0, i, 1)[0], "png"))
    limit = 3 * (src / "000.png").stat().st_size + 8000
    result = pack(str(tmp_path / "src"), str(tmp_path / "out"), Store(), PackOptions(max_size=limit))
    sizes = [Path(s).stat().st_size for s in result.shards]
    assert len(sizes) >= 4 and all(size <= limit + 10240 for size in sizes)  # + tar's end-of-archive padding
    frames, errors, _ = read_all(str(tmp_path / "out" / "*.tar"), Store())
    assert errors == [] and [s for _, s in frames["seq"]] == [(0, i) for i in range(12)]


def test_segment_seconds_cuts_at_key_frames_without_reencoding(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = {"crf": "12", "g": "10"}  # a key frame every second
        for f in stamped_frames(3, 0, 55):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode(None))
    (src / "long.mp4").write_bytes(buf.getvalue())
    result = pack(str(src), str(tmp_path / "out"), Store(), PackOptions(segment_seconds=1.5))
    assert result.samples == 3  # cut at the first key frame 1.5 s or more after each cut: 2 s, 4 s
    frames, errors, table = read_all(str(tmp_path / "out" / "*.tar"), Store())
    assert errors == [] and frames["long"] == [(t, (3, t)) for t in range(55)]
    assert [(r["start_frame"], r["frames"]) for r in table.to_pylist()] == [(0, 20), (20, 20), (40, 15)]


def test_unreadable_video_is_reported_and_the_rest_packed(tmp_path):
    src = make_source(tmp_path)
    (src / "broken.mp4").write_bytes(b"not a video")
    result = pack(str(src), str(tmp_path / "out"), Store())
    assert [(e.kind.value, e.video_id) for e in result.errors] == [("corrupt_member", "broken")]
    assert result.videos == 3


def test_shards_pack_command(tmp_path, capsys):
    src = make_source(tmp_path)
    out = tmp_path / "out"
    assert main(["shards", "pack", str(src), str(out), "--max-size", "1MB", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "packed 7 samples of 3 videos into 1 shards" in printed and "tv3s index" in printed
    with tarfile.open(out / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert names[:2] == ["solo/000000.json", "solo/000000.mp4"]
    assert main(["shards", "pack", str(src), str(out)]) == 2  # refuses to mix with earlier shards
    assert main(["shards", "pack", str(src), str(out), "--overwrite", "--no-progress"]) == 0
    assert main(["shards", "pack", str(tmp_path / "nope"), str(out)]) == 2
    assert byte_size("1GB") == 10**9 and byte_size("512MiB") == 512 << 20 and byte_size("100") == 100
    assert np.array_equal(decode_image((src / "cam" / "frame_0002.png").read_bytes()).rgb, stamped_frames(2, 1, 1)[0])


def test_pack_takes_an_s3_prefix_as_its_source(s3, tmp_path, monkeypatch, capsys):
    """`tv3s shards pack s3://bucket/footage DEST`: the source listed and read through fsspec, URL intact."""
    src = make_source(tmp_path)
    bucket = s3.make_bucket("pack-remote-source")
    s3.filesystem().put(f"{src}/", f"{bucket}/footage/", recursive=True)
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    argv = ["shards", "pack", f"{bucket}/footage", str(out), "--endpoint-url", s3.endpoint_url, "--no-progress"]
    assert main(argv) == 0
    assert "packed 7 samples of 3 videos into 1 shards" in capsys.readouterr().out
    frames, errors, _ = read_all(str(out / "shard-000000.tar"), Store())
    assert errors == [] and [s for _, s in frames["drive"]] == [(1, t) for t in range(10)]
    assert main(["shards", "pack", f"{bucket}/nothing-here", str(out), "--endpoint-url", s3.endpoint_url]) == 2
    assert f"{bucket}/nothing-here: not a folder" in capsys.readouterr().err
