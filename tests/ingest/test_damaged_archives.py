"""A corpus of deliberately broken inputs: each yields its typed error record and nothing else is lost.

Every test builds real shards holding the bad input next to good videos, runs index ->
plan -> ordered read, and checks (1) the error record (kind, where, a hint) and (2) that
every frame of everything else arrives, in order, with the stream state reset exactly
where frames are missing or the size changes.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tarfile
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from tv3s.pipeline.ingest import fetch as fetch_module
from tv3s.pipeline.ingest import index as index_module
from tv3s.pipeline.ingest.chunks import iter_videos
from tv3s.pipeline.ingest.decode import DecodeError, decode_image
from tv3s.pipeline.ingest.fetch import stream_shard
from tv3s.pipeline.ingest.index import build_index, plan_videos, write_errors, write_table
from tv3s.pipeline.ingest.resize import ResizeRule
from tv3s.pipeline.storage import RetryPolicy, Store
from tv3s.schemas.errors import ErrorKind, InputError

from ..support.datagen import encode, encode_image, frame_sample, read_stamp, segment_sample, stamped_frames, tar_bytes
from ..support.faultproxy import fault_proxy

K = ErrorKind
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)


def seg(video: int, index: int, frames: int = 4, **kw) -> dict:
    """A good H.264 segment of video `video` whose json gives start_frame and frames."""
    data = encode(stamped_frames(video, index * frames, frames))
    return segment_sample(f"v{video}", index, data, start_frame=index * frames, frames=frames, **kw)


def good_video(number: int = 9, segments: int = 2) -> list[dict]:
    return [seg(number, i) for i in range(segments)]


def run(
    shards: list[bytes | list[dict]],
    tmp_path: Path,
    store: Store | None = None,
    urls: list[str] | None = None,
    workers: int = 4,
):
    """Index + plan + read; returns ({video_id: [(stamp video, stamp frame)]}, resets, all error records)."""
    store = store or Store()
    if urls is None:
        urls = []
        for i, shard in enumerate(shards):
            path = tmp_path / f"shard-{i}.tar"
            path.write_bytes(shard if isinstance(shard, bytes) else tar_bytes(shard))
            urls.append(str(path))
    result = build_index(urls, store, workers=workers)
    runs, plan_errors = plan_videos(result.table)
    errors: list[InputError] = [*result.errors, *plan_errors]
    frames: dict[str, list[tuple[int, int]]] = {}
    resets: dict[str, list[int]] = {}
    for chunk in iter_videos(runs, store, errors.append, ResizeRule(scale=None), chunk=3):
        if chunk.reset:
            resets.setdefault(chunk.video_id, []).append(chunk.frame_index)
        frames.setdefault(chunk.video_id, []).extend(read_stamp(f) for f in chunk.frames)
    for e in errors:
        assert e.message and e.hint, e
    return frames, resets, errors


def frames_of(video: int, *ranges: range) -> list[tuple[int, int]]:
    return [(video, t) for r in ranges for t in r]


def only(errors: list[InputError], kind: ErrorKind) -> InputError:
    matching = [e for e in errors if e.kind == kind]
    assert len(matching) == 1, errors
    assert len(errors) == 1, f"unexpected extra records: {errors}"
    return matching[0]


def raw_tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --- members that do not decode -------------------------------------------------------


def test_corrupt_member(tmp_path):
    bad = segment_sample("v0", 1, b"\x00garbage" * 300, start_frame=4, frames=4)
    frames, resets, errors = run([[seg(0, 0), bad, seg(0, 2)], good_video()], tmp_path)
    e = only(errors, K.corrupt_member)
    assert (e.stage, e.video_id, e.segment_index, e.member) == ("decode", "v0", 1, "v0/000001.mp4")
    assert e.url.endswith("shard-0.tar") and "re-encode" in e.hint
    assert frames["v0"] == frames_of(0, range(0, 4), range(8, 12))
    assert resets["v0"] == [0, 8] and frames["v9"] == frames_of(9, range(8))


def test_truncated_member_decodes_what_is_there_and_says_so(tmp_path):
    mkv = encode(stamped_frames(0, 4, 12), "libx264", "matroska")
    cut = segment_sample("v0", 1, mkv[: int(len(mkv) * 0.8)], ext="mkv", start_frame=4, frames=12)
    frames, resets, errors = run([[seg(0, 0), cut], good_video()], tmp_path)
    e = only(errors, K.corrupt_member)
    assert e.segment_index == 1 and "json says 12" in e.message
    got = frames["v0"]
    assert got[:4] == frames_of(0, range(4)) and 4 < len(got) < 16
    assert all(v == 0 for v, _ in got) and [n for _, n in got] == sorted({n for _, n in got})  # in order, once
    assert frames["v9"] == frames_of(9, range(8))


def test_truncated_segment_without_frame_count_is_caught_by_the_next_start_frame(tmp_path):
    mkv = encode(stamped_frames(0, 4, 12), "libx264", "matroska")
    cut = segment_sample("v0", 1, mkv[: int(len(mkv) * 0.8)], ext="mkv", start_frame=4)
    seg2 = segment_sample("v0", 2, encode(stamped_frames(0, 16, 4)), start_frame=16, frames=4)
    frames, resets, errors = run([[seg(0, 0), cut, seg2]], tmp_path)
    e = only(errors, K.corrupt_member)
    assert e.segment_index == 1 and "frames are missing" in e.message
    assert frames["v0"][-4:] == frames_of(0, range(16, 20)) and resets["v0"] == [0, 16]


def test_truncated_tar(tmp_path):
    data = tar_bytes([seg(0, 0), seg(0, 1), seg(0, 2)])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        third = [m for m in tar.getmembers() if m.name == "v0/000002.mp4"][0]
    frames, resets, errors = run([data[: third.offset_data + 100], good_video()], tmp_path)
    assert {e.kind for e in errors} == {K.truncated_tar}
    e = errors[0]
    assert e.stage == "index" and e.member == "v0/000002.mp4" and "re-upload" in e.hint
    assert frames["v0"] == frames_of(0, range(8)) and frames["v9"] == frames_of(9, range(8))


@pytest.mark.parametrize(
    "where",
    [
        "no end-of-archive blocks",
        "inside the end-of-archive blocks",
        "inside the next pax header",
        "inside its records",
        "inside the next ustar header",
    ],
)
def test_a_tar_cut_between_members_keeps_every_complete_sample(tmp_path, where):
    data = tar_bytes([seg(0, 0), seg(0, 1), seg(0, 2)])
    members = list(tarfile.open(fileobj=io.BytesIO(data)))
    end = members[-1].offset_data + -(-members[-1].size // 512) * 512
    third = next(m for m in members if m.name == "v0/000002.json")  # webdataset puts a pax header before each
    cut = {
        "no end-of-archive blocks": end,
        "inside the end-of-archive blocks": end + 300,
        "inside the next pax header": third.offset + 100,
        "inside its records": third.offset + 520,
        "inside the next ustar header": third.offset_data - 100,
    }[where]
    complete = 3 if cut >= end else 2
    frames, _, errors = run([data[:cut], good_video()], tmp_path)
    e = only(errors, K.truncated_tar)
    assert e.member is None and f"after member v0/{complete - 1:06d}.mp4" in e.message  # no member was cut
    assert frames["v0"] == frames_of(0, range(4 * complete)) and frames["v9"] == frames_of(9, range(8))
    streamed: list[InputError] = []
    keys = [s.key for s in stream_shard(str(tmp_path / "shard-0.tar"), Store(), streamed.append)]
    assert keys == [f"v0/{i:06d}" for i in range(complete)] and [e.kind for e in streamed] == [K.truncated_tar]


def zipped(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("shard.tar", data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "what, compress, tool",
    [
        ("gzip-compressed", gzip.compress, "gunzip"),
        ("zstd-compressed", lambda data: pa.compress(data, "zstd", asbytes=True), "unzstd"),
        ("bzip2-compressed", bz2.compress, "bunzip2"),
        ("xz-compressed", lzma.compress, "unxz"),
        ("zip archive", zipped, "unzip"),
    ],
    ids=["gzip", "zstd", "bzip2", "xz", "zip"],
)
def test_a_compressed_shard_is_named_as_such(tmp_path, what, compress, tool):
    small = compress(raw_tar([("README.md", b"# shards")]))  # shorter than one tar block
    frames, _, errors = run([compress(tar_bytes([seg(0, 0)])), small, good_video()], tmp_path)
    assert len(small) < 512 and [(e.kind, e.url.rsplit("/", 1)[1]) for e in errors] == [
        (K.corrupt_member, "shard-0.tar"),
        (K.corrupt_member, "shard-1.tar"),
    ]
    for e in errors:
        assert f"this is a {what} " in e.message and "tv3s reads uncompressed tar shards" in e.message, e
        assert tool in e.message and "not a tar" not in e.message
    assert frames == {"v9": frames_of(9, range(8))}
    streamed: list[InputError] = []
    assert list(stream_shard(str(tmp_path / "shard-0.tar"), Store(), streamed.append)) == []
    assert [e.message for e in streamed] == [errors[0].message]


def test_a_tar_whose_first_name_looks_like_compression_magic_is_read_as_a_tar(tmp_path):
    frames, _, errors = run([[seg(0, 0) | {"__key__": "BZh/000000"}, *good_video()]], tmp_path)
    assert errors == [] and set(frames) == {"v0", "v9"}


def test_empty_shards(tmp_path):
    end_marker_only = raw_tar([])
    frames, _, errors = run([b"", end_marker_only, good_video()], tmp_path)
    assert [(e.kind, e.url.rsplit("/", 1)[1]) for e in errors] == [
        (K.empty_shard, "shard-0.tar"),
        (K.empty_shard, "shard-1.tar"),
    ]
    assert frames["v9"] == frames_of(9, range(8))


def test_zero_frame_and_one_frame_videos(tmp_path):
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        container.start_encoding()
    empty = segment_sample("v1", 0, buf.getvalue())
    one = segment_sample("v2", 0, encode(stamped_frames(2, 0, 1)))
    frames, _, errors = run([[empty, one], good_video()], tmp_path)
    e = only(errors, K.no_frames)
    assert e.video_id == "v1" and "v1" not in frames
    assert frames["v2"] == [(2, 0)] and frames["v9"] == frames_of(9, range(8))


def test_unsupported_codec(tmp_path):
    avi = encode(stamped_frames(0, 0, 4), "mpeg4", "avi")
    unknown = avi.replace(b"FMP4", b"ZZZ9")  # a FourCC no FFmpeg decoder claims
    frames, _, errors = run([[segment_sample("v0", 0, unknown, ext="avi")], good_video()], tmp_path)
    e = only(errors, K.unsupported_codec)
    assert e.video_id == "v0" and "no decoder" in e.message and "libx264" in e.hint
    assert frames["v9"] == frames_of(9, range(8))


# --- frame size changes ---------------------------------------------------------------


def test_segment_of_another_size(tmp_path):
    big = segment_sample("v0", 1, encode(stamped_frames(0, 4, 4, height=128, width=160)), start_frame=4, frames=4)
    frames, resets, errors = run([[seg(0, 0), big, seg(0, 2)]], tmp_path)
    kinds = [(e.kind, e.frame_index) for e in errors]
    assert kinds == [(K.frame_size_changed, 4), (K.frame_size_changed, 8)]
    assert frames["v0"] == frames_of(0, range(12)) and resets["v0"] == [0, 4, 8]


def test_size_change_inside_one_segment(tmp_path):
    small, large = stamped_frames(0, 0, 3), stamped_frames(0, 3, 3, height=128, width=160)
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.codec_context.qscale = 2
        for f in small:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode(None))
        second = av.CodecContext.create("mpeg4", "w")  # a new sequence header mid-stream
        second.width, second.height, second.pix_fmt = 160, 128, "yuv420p"
        second.time_base, second.framerate, second.qscale = Fraction(1, 12), Fraction(12), 2
        for i, f in enumerate(large):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts, frame.time_base = 3 + i, second.time_base
            for packet in [*second.encode(frame)]:
                packet.stream = stream
                container.mux(packet)
        for packet in second.encode(None):
            packet.stream = stream
            container.mux(packet)
    frames, resets, errors = run([[segment_sample("v0", 0, buf.getvalue(), ext="mkv")]], tmp_path)
    e = only(errors, K.frame_size_changed)
    assert (e.segment_index, e.frame_index) == (0, 3) and "160x128" in e.message
    assert frames["v0"] == frames_of(0, range(6)) and resets["v0"] == [0, 3]


def test_frame_of_another_size_in_a_sequence(tmp_path):
    samples = [frame_sample("v0", i, encode_image(stamped_frames(0, i, 1)[0])) for i in range(5)]
    samples[2] = frame_sample("v0", 2, encode_image(stamped_frames(0, 2, 1, height=128, width=160)[0]))
    frames, resets, errors = run([samples], tmp_path)
    assert [(e.kind, e.frame_index) for e in errors] == [(K.frame_size_changed, 2), (K.frame_size_changed, 3)]
    assert frames["v0"] == frames_of(0, range(5)) and resets["v0"] == [0, 2, 3]


# --- images that are not 8-bit RGB, or not images -------------------------------------


def test_grayscale_rgba_and_16_bit_frames_are_converted_and_reported(tmp_path):
    rgb = stamped_frames(0, 0, 6)
    wide = io.BytesIO()
    Image.fromarray(rgb[4, ..., 0].astype(np.uint16) * 257).save(wide, format="png")  # 16-bit grey
    images = [
        encode_image(rgb[0]),
        encode_image(rgb[1], "png", "L"),
        encode_image(rgb[2], "png", "L"),
        encode_image(rgb[3], "png", "RGBA"),
        wide.getvalue(),
        encode_image(rgb[5], "png", "P"),
    ]
    frames, resets, errors = run([[frame_sample("v0", i, d, "png") for i, d in enumerate(images)]], tmp_path)
    assert [(e.kind, e.frame_index) for e in errors] == [(K.bad_image_format, i) for i in (1, 3, 4, 5)]
    assert [e.message.split(" (")[0][10:] for e in errors] == ["mode L", "mode RGBA", "mode I;16", "mode P"]
    assert frames["v0"] == frames_of(0, range(6)) and resets["v0"] == [0]  # converted: nothing missing


def png16(pixels: np.ndarray, pix_fmt: str) -> bytes:
    """A PNG of 16 bits per channel from uint16 [H, W, C] (C = 1: grey with alpha; 3: RGB; 4: RGBA),
    written by FFmpeg's PNG encoder: Pillow cannot write 16-bit colour."""
    source = {1: "gray16le", 3: "rgb48le", 4: "rgba64le"}[pixels.shape[2]]
    frame = av.VideoFrame.from_ndarray(pixels[..., 0] if source == "gray16le" else pixels, format=source)
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = pixels.shape[1], pixels.shape[0], pix_fmt
    return b"".join(bytes(p) for p in [*codec.encode(frame.reformat(format=pix_fmt)), *codec.encode(None)])


@pytest.mark.parametrize(
    "channels, pix_fmt, mode", [(3, "rgb48be", "RGB;16"), (4, "rgba64be", "RGBA;16"), (1, "ya16be", "LA;16")]
)
def test_16_bit_colour_frames_are_scaled_by_1_257_and_reported(tmp_path, channels, pix_fmt, mode):
    wide = np.random.default_rng(7).integers(0, 65536, (96, 128, channels), dtype=np.uint16)
    image = decode_image(png16(wide, pix_fmt))
    expected = ((wide[..., :3].astype(np.uint32) + 128) // 257).astype(np.uint8)  # the 1/257 rule, rounded
    assert image.converted_from == mode
    assert np.array_equal(image.rgb, np.broadcast_to(expected, (96, 128, 3)))  # not Pillow's high bytes
    stamped = stamped_frames(0, 0, 3).astype(np.uint16) * 257  # exact in 16 bits: the stamps survive
    opaque = np.full((3, 96, 128, 1), 65535, np.uint16)
    pixels = {1: stamped[..., :1], 3: stamped, 4: np.concatenate([stamped, opaque], axis=3)}[channels]
    pngs = [png16(p, pix_fmt) for p in pixels]
    frames, resets, errors = run([[frame_sample("v0", i, d, "png") for i, d in enumerate(pngs)]], tmp_path)
    e = only(errors, K.bad_image_format)
    assert e.frame_index == 0 and f"mode {mode} " in e.message  # once per video and mode
    assert frames["v0"] == frames_of(0, range(3)) and resets["v0"] == [0]


def test_an_unreadable_image_is_described_without_python_object_reprs():
    with pytest.raises(DecodeError) as info:
        decode_image(b"this is a text file, not a JPEG")
    assert "object at 0x" not in str(info.value) and "<" not in str(info.value)
    assert str(info.value) == "not a readable image (cannot identify the image format: PNG/JPEG expected)"


def test_non_image_members(tmp_path):
    samples = [frame_sample("v0", i, encode_image(stamped_frames(0, i, 1)[0])) for i in range(5)]
    samples[1] = frame_sample("v0", 1, b"this is a text file, not a JPEG")
    samples[3]["txt"] = b"notes"  # an unknown member inside a sample
    frames, resets, errors = run([samples, [{"__key__": "README", "md": b"# shards"}]], tmp_path)
    kinds = sorted((e.kind.value, e.member) for e in errors)
    assert kinds == [
        ("corrupt_member", "v0/000001.jpg"),
        ("unknown_member", "README.md"),
        ("unknown_member", "v0/000003.txt"),
    ]
    assert frames["v0"] == frames_of(0, [0], range(2, 5)) and resets["v0"] == [0, 2]


def test_unsafe_member_names(tmp_path):
    good = [(f"v0/{i:06d}.jpg", encode_image(stamped_frames(0, i, 1)[0])) for i in range(3)]
    evil = [
        ("../escape/000000.jpg", good[0][1]),
        ("/etc/v5/000001.jpg", good[1][1]),
        ("v6/../../000002.jpg", good[2][1]),
    ]
    frames, _, errors = run([raw_tar(good[:2] + evil + good[2:])], tmp_path)
    assert sorted(e.member for e in errors if e.kind == K.unsafe_member_name) == sorted(n for n, _ in evil)
    assert len(errors) == 3 and set(frames) == {"v0"} and frames["v0"] == frames_of(0, range(3))


# --- keys, metadata, chains -----------------------------------------------------------


def test_duplicate_keys(tmp_path):
    first, again, other = seg(0, 0), seg(0, 1), seg(0, 1)
    again["__key__"] = first["__key__"]  # the same key further on in the shard
    frames, resets, errors = run([[first, seg(0, 2), again], [other, seg(0, 2)]], tmp_path)
    kinds = [(e.kind, e.url.rsplit("/", 1)[1], e.segment_index) for e in errors]
    assert (K.duplicate_key, "shard-0.tar", None) in kinds  # key repeated inside a shard
    assert (K.duplicate_key, "shard-1.tar", 2) in kinds  # segment 2 of v0 in two shards
    assert len(errors) == 2
    assert frames["v0"] == frames_of(0, range(12)) and resets["v0"] == [0]


def test_a_member_repeated_inside_a_sample_is_reported_and_the_first_kept(tmp_path):
    jpg = [encode_image(f) for f in stamped_frames(0, 0, 2)]
    meta = json.dumps({"video_id": "v0", "frame_index": 0}).encode()
    repeated = [
        ("v0/000000.jpg", jpg[0]),
        ("v0/000000.json", meta),
        ("v0/000000.jpg", jpg[1]),
        ("v0/000000.json", b"{}"),
    ]
    frames, _, errors = run([raw_tar([*repeated, ("v0/000001.jpg", jpg[1])])], tmp_path)
    reported = [(K.duplicate_key, "v0/000000.jpg"), (K.duplicate_key, "v0/000000.json")]
    assert sorted((e.kind, e.member) for e in errors) == reported
    assert frames["v0"] == frames_of(0, range(2))
    streamed: list[InputError] = []
    got = list(stream_shard(str(tmp_path / "shard-0.tar"), Store(), streamed.append))
    assert got[0].members == {"jpg": jpg[0], "json": meta} and [(e.kind, e.member) for e in streamed] == reported


def test_bad_json(tmp_path):
    broken = seg(1, 0)
    broken["json"] = b'{"video_id": "v1", "segment_index": '
    no_id = seg(2, 0)
    no_id["json"] = json.dumps({"segment_index": 0}).encode()
    negative = seg(3, 0)
    negative["json"] = json.dumps({"video_id": "v3", "segment_index": -1}).encode()
    frames, _, errors = run([[broken, no_id, negative], good_video()], tmp_path)
    assert [e.kind for e in errors] == [K.bad_metadata] * 3
    assert "does not parse" in errors[0].message and "video_id" in errors[1].message
    assert "segment_index" in errors[2].message and errors[0].member == "v1/000000.json"
    assert set(frames) == {"v9"} and frames["v9"] == frames_of(9, range(8))


def test_json_nested_too_deep_to_parse_costs_only_its_sample(tmp_path):
    deep = seg(1, 0)
    deep["json"] = b"[" * 100_000  # json.loads raises RecursionError, not JSONDecodeError
    frames, _, errors = run([[deep, *good_video()]], tmp_path)
    e = only(errors, K.bad_metadata)
    assert e.member == "v1/000000.json" and "does not parse" in e.message
    assert frames == {"v9": frames_of(9, range(8))}


def test_frame_without_json_or_matching_key(tmp_path):
    samples = [frame_sample("v0", i, encode_image(stamped_frames(0, i, 1)[0])) for i in range(3)]
    samples.append({"__key__": "loose-frame", "jpg": samples[0]["jpg"]})
    frames, _, errors = run([samples], tmp_path)
    e = only(errors, K.bad_metadata)
    assert e.member == "loose-frame.jpg" and "--key-pattern" in e.hint
    assert frames["v0"] == frames_of(0, range(3))


def test_missing_segment_splits_the_video(tmp_path):
    frames, resets, errors = run([[seg(0, 0), seg(0, 1), seg(0, 3)], good_video()], tmp_path)
    e = only(errors, K.missing_segment)
    assert (e.video_id, e.segment_index) == ("v0", 2) and "restarts at segment 3" in e.message
    assert frames["v0"] == frames_of(0, range(8), range(12, 16)) and resets["v0"] == [0, 12]


# --- URLs -----------------------------------------------------------------------------


def test_unreachable_forbidden_and_missing_urls(s3, tmp_path):
    bucket = s3.make_bucket("bad-urls")
    fs = s3.filesystem()
    fs.pipe(f"{bucket}/good.tar", tar_bytes(good_video()))
    fs.pipe(f"{bucket}/secret.tar", tar_bytes(good_video(8)))
    with fault_proxy(s3.endpoint_url) as proxy:
        store = Store({**s3.storage_options, "client_kwargs": {"endpoint_url": proxy.url}}, FAST)
        proxy.inject("403")  # the first read of the first shard is refused
        frames, _, errors = run(
            [], tmp_path, store, urls=[f"{bucket}/secret.tar", f"{bucket}/gone.tar", f"{bucket}/good.tar"], workers=1
        )
    kinds = {(e.kind, e.url.rsplit("/", 1)[1]) for e in errors}
    assert kinds == {(K.forbidden, "secret.tar"), (K.not_found, "gone.tar")}
    assert frames == {"v9": frames_of(9, range(8))}
    dead = Store({**s3.storage_options, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}, FAST)
    _, _, errors = run([], tmp_path, dead, urls=[f"{bucket}/good.tar"])
    assert [e.kind for e in errors] == [K.unreachable] and "AWS_ENDPOINT_URL" in errors[0].hint


def test_shard_lost_after_indexing_is_reported_at_read_time(s3, tmp_path):
    bucket = s3.make_bucket("lost-after-index")
    fs = s3.filesystem()
    fs.pipe(f"{bucket}/a.tar", tar_bytes([seg(0, 0)]))
    fs.pipe(f"{bucket}/b.tar", tar_bytes([seg(0, 1), *good_video()]))
    store = Store(s3.storage_options, FAST)
    runs, _ = plan_videos(build_index([f"{bucket}/{{a,b}}.tar"], store).table)
    fs.rm(f"{bucket}/a.tar")
    errors: list[InputError] = []
    got = {}
    for chunk in iter_videos(runs, store, errors.append, ResizeRule(scale=None)):
        got.setdefault(chunk.video_id, []).extend(read_stamp(f) for f in chunk.frames)
    e = only(errors, K.not_found)
    assert (e.stage, e.video_id, e.segment_index) == ("read", "v0", 0)
    assert got == {"v0": frames_of(0, range(4, 8)), "v9": frames_of(9, range(8))}


# --- parser failures nobody foresaw ---------------------------------------------------
# Every known bad input is handled before it can raise, so these tests put a bug in on purpose
# (one sample's parse raises): the guard around a shard must still turn it into one record.


def test_an_unexpected_error_in_one_shard_is_one_record_and_the_other_shards_are_indexed(tmp_path, monkeypatch):
    real = index_module.identify

    def buggy(key, *args):
        if key.startswith("v1/"):
            raise ZeroDivisionError("a parser bug")
        return real(key, *args)

    monkeypatch.setattr(index_module, "identify", buggy)
    frames, _, errors = run([[seg(0, 0), seg(1, 0), seg(0, 1)], good_video()], tmp_path)
    e = only(errors, K.corrupt_member)
    assert e.stage == "index" and e.url.endswith("shard-0.tar") and e.member is None
    assert "ZeroDivisionError: a parser bug" in e.message and "re-create" in e.hint
    assert frames == {"v0": frames_of(0, range(4)), "v9": frames_of(9, range(8))}  # what came before it is kept


def test_an_unexpected_error_while_streaming_a_shard_is_one_record(tmp_path, monkeypatch):
    real = fetch_module.split_name
    monkeypatch.setattr(fetch_module, "split_name", lambda name: 1 / 0 if name.startswith("v1/") else real(name))
    path = tmp_path / "s.tar"
    path.write_bytes(tar_bytes([seg(0, 0), seg(0, 1), seg(1, 0)]))
    errors: list[InputError] = []
    got = [s.key for s in stream_shard(str(path), Store(), errors.append)]
    assert got == ["v0/000000"]  # v0/000001 is lost with the look-ahead that failed
    assert [(e.kind, e.stage) for e in errors] == [(K.corrupt_member, "read")]
    assert "ZeroDivisionError: division by zero" in errors[0].message and "re-create" in errors[0].hint


# --- names and values the index cannot store ------------------------------------------


def tar_of(members: list[tuple[str, bytes]], fmt: int) -> bytes:
    """A tar in `fmt` whose names may hold raw bytes that are not UTF-8 (written from surrogates)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_member_names_that_are_not_utf8_are_reported_and_skipped(tmp_path):
    jpg = [encode_image(f) for f in stamped_frames(0, 0, 6)]
    long_name = "v0/" + "d" * 120 + "\udcff.jpg"
    shards = [  # raw 0xff in a ustar name, in a GNU long-name record, in a pax path; good frames around it
        tar_of([("v0/000000.jpg", jpg[0]), ("v0/\udcff.jpg", jpg[0]), ("v0/000001.jpg", jpg[1])], tarfile.USTAR_FORMAT),
        tar_of([("v0/000002.jpg", jpg[2]), (long_name, jpg[0]), ("v0/000003.jpg", jpg[3])], tarfile.GNU_FORMAT),
        tar_of(
            [("v0/000004.jpg", jpg[4]), ("v0/\u00fc\udcff.jpg", jpg[0]), ("v0/000005.jpg", jpg[5])], tarfile.PAX_FORMAT
        ),
    ]
    frames, _, errors = run(shards, tmp_path)
    assert [(e.kind, e.member) for e in errors] == [
        (K.unsafe_member_name, "v0/\\xff.jpg"),
        (K.unsafe_member_name, "v0/" + "d" * 120 + "\\xff.jpg"),
        (K.unsafe_member_name, "v0/\u00fc\\xff.jpg"),
    ]
    assert "UTF-8" in errors[0].message and "UTF-8" in errors[0].hint
    assert frames == {"v0": frames_of(0, range(6))}
    result = build_index([str(tmp_path / "shard-*.tar")], Store())
    write_table(result.table, str(tmp_path / "index.parquet"), Store())  # both files are written: nothing
    write_errors(result.errors, str(tmp_path / "index.errors.parquet"), Store())  # holds text Arrow refuses
    streamed: list[InputError] = []
    keys = [s.key for s in stream_shard(str(tmp_path / "shard-0.tar"), Store(), streamed.append)]
    assert keys == ["v0/000000", "v0/000001"] and [(e.kind, e.member) for e in streamed] == [
        (errors[0].kind, errors[0].member)
    ]


def test_json_values_the_index_cannot_store_are_reported(tmp_path):
    huge = seg(1, 0)
    huge["json"] = json.dumps({"video_id": "v1", "segment_index": 2**70}).encode()
    surrogate = frame_sample("v2", 0, encode_image(stamped_frames(2, 0, 1)[0]))
    surrogate["json"] = b'{"camera": "front\\udcff"}'  # valid JSON; not text UTF-8 (or Arrow) can hold
    frames, _, errors = run([[huge, surrogate, *good_video()]], tmp_path)
    assert sorted((e.kind, e.member) for e in errors) == [
        (K.bad_metadata, "v1/000000.json"),
        (K.bad_metadata, "v2/000000.json"),
    ]
    assert all("cannot be stored" in e.message for e in errors)
    assert frames == {"v9": frames_of(9, range(8))}
