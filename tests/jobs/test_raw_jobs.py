"""A job whose inputs are video files (a glob), not shards: labelled exactly as the same videos packed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tv3s.jobs.runner import open_output, plan_job
from tv3s.pipeline.ingest.pack import pack
from tv3s.pipeline.storage import Store

from ..support.datagen import encode, stamped_frames
from ..support.jobdata import H, W, job_spec, label_reference, table_rows

SOURCE_COLUMNS = ("source_url", "source_member", "job_id")


def footage(root: Path) -> Path:
    """a.mp4 (7 frames), b.mp4 (5 frames) and a corrupt c.mp4."""
    root.mkdir(parents=True)
    (root / "a.mp4").write_bytes(encode(stamped_frames(0, 0, 7, H, W)))
    (root / "b.mp4").write_bytes(encode(stamped_frames(1, 0, 5, H, W)))
    (root / "c.mp4").write_bytes(b"\x00\x01" * 3000)
    return root


def test_a_glob_of_video_files_is_labelled_like_the_same_files_packed(tmp_path):
    src = footage(tmp_path / "footage")
    spec = job_spec([str(src / "*.mp4")], str(tmp_path / "raw"), name="raw")
    _, errors = plan_job(spec, Store())
    assert [(e.kind.value, Path(e.url).name) for e in errors] == [("corrupt_member", "c.mp4")]
    raw = table_rows(label_reference(spec), "frames", drop=SOURCE_COLUMNS)
    assert [(r["video_id"], r["frame_index"]) for r in raw] == [("a", t) for t in range(7)] + [
        ("b", t) for t in range(5)
    ]
    files = table_rows(open_output(spec), "frames")
    assert {r["source_url"] for r in files} == {str(src / "a.mp4"), str(src / "b.mp4")}
    assert {r["source_member"] for r in files} == {None}  # the file itself, no tar member

    packed = pack(str(src), str(tmp_path / "shards"), Store())
    shards_spec = job_spec(packed.shards, str(tmp_path / "packed"), name="raw")
    assert table_rows(label_reference(shards_spec), "frames", drop=SOURCE_COLUMNS) == raw  # masks and statistics


def test_a_stride_labels_every_nth_frame_carrying_the_state_and_says_so(tmp_path):
    src = footage(tmp_path / "footage")
    spec = job_spec([str(src / "a.mp4")], str(tmp_path / "out"), inputs={"frame_stride": 3})
    rows = table_rows(label_reference(spec), "frames")
    assert [(r["frame_index"], r["frame_stride"], r["temporal_state"]) for r in rows] == [
        (0, 3, "reset"),
        (3, 3, "carried"),
        (6, 3, "carried"),
    ]
    assert [r["source_frame_index"] for r in rows] == [0, 3, 6]
    assert [r["timestamp_s"] for r in rows] == pytest.approx([0, 3 / 12, 6 / 12])
    # agreement with the previous labeled frame (3 frames back), not with a frame never labeled
    assert rows[0]["temporal_agreement"] is None and None not in [r["temporal_agreement"] for r in rows[1:]]
    assert spec.fingerprint() != job_spec([str(src / "a.mp4")], str(tmp_path / "out")).fingerprint()
