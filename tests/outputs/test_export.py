"""`tv3s export`: selected frames as training shards, read back by the training reader."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import uuid

import numpy as np
import pytest
from PIL import Image

from tv3s.pipeline.ingest.decode import decode_image
from tv3s.pipeline.outputs import export as export_module
from tv3s.pipeline.outputs.commit import Output
from tv3s.pipeline.outputs.export import ExportError, export, sample_key
from tv3s.pipeline.outputs.query import connect
from tv3s.pipeline.storage import Store
from tv3s.pipeline.synthetic.training_data import Augment, ClipSampler, read_training_shards

from ..support.manifest_data import (
    SCENE_FRAMES,
    Crash,
    commit_scene_output,
    local_scene_output,
    run_info,
    scene_frames,
    scene_sources,
)

RUN = run_info()
OTHER = run_info("job-2")


def exported_rows(shards: list[str]) -> list[dict]:
    """The .json rows of every sample in the shards, duplicates kept."""
    rows = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            rows += [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    return rows


def decoded(sample_bytes: bytes) -> np.ndarray:
    return decode_image(sample_bytes).rgb


@pytest.fixture()
def labeled(tmp_path):
    """A committed output whose sources (an .mp4, a tar of PNGs) sit on local disk."""
    return local_scene_output(tmp_path, RUN)


def test_every_frame_comes_back_with_its_source_pixels_exact_mask_and_row(labeled, tmp_path):
    out, masks, _ = labeled
    dest = str(tmp_path / "export")
    result = export(connect(out), RUN.job_id, "true", dest, Store(), shard_frames=5, progress=False)
    assert result.frames_selected == result.samples_written == 2 * SCENE_FRAMES
    assert len(result.shards) == 3 and result.shards_written == 3 and not result.skipped
    videos = read_training_shards(result.shards)
    assert sorted(videos) == ["clip", "still"]
    sources = scene_frames()
    for video_id, samples in videos.items():
        assert [s.frame_index for s in samples] == list(range(SCENE_FRAMES))
        for s in samples:
            mask = np.asarray(Image.open(io.BytesIO(s.mask)))
            assert np.array_equal(mask, masks[video_id][s.frame_index])  # the committed mask, bit for bit
            error = np.abs(decoded(s.image).astype(int) - sources[s.frame_index].astype(int)).mean()
            assert error < (6 if video_id == "clip" else 2)  # H.264 source / PNG source, both through JPEG q95


def test_json_carries_the_row_and_keys_follow_the_training_layout(labeled, tmp_path):
    out, _, _ = labeled
    result = export(connect(out), RUN.job_id, "video_id = 'still'", str(tmp_path / "e"), Store(), progress=False)
    with tarfile.open(result.shards[0]) as tar:
        names = tar.getnames()
        row = json.loads(tar.extractfile(f"{sample_key('still', 4)}.json").read())
    assert sorted(names[:3]) == ["still/000000.jpg", "still/000000.json", "still/000000.png"]
    assert row["video_id"] == "still" and row["frame_index"] == 4 and row["job_id"] == RUN.job_id
    assert row["source_member"] == "still/000004.png" and "mask_png" not in row
    assert len(row["class_histogram"]) == 5 and 0 < row["mean_confidence"] <= 1
    assert sample_key("cam.front.v2", 7) == "cam.front.v2/000007"
    assert sample_key("../a b", 7).startswith("a_b-") and sample_key("../a b", 7) != sample_key("a b", 7)


def test_the_predicate_selects_and_training_clips_sample_from_the_export(labeled, tmp_path):
    out, _, _ = labeled
    where = "frame_index % 2 = 0 AND mean_confidence > 0"
    result = export(connect(out), RUN.job_id, where, str(tmp_path / "e"), Store(), progress=False)
    videos = read_training_shards(result.shards)
    assert {v: [s.frame_index for s in ss] for v, ss in videos.items()} == {"clip": [0, 2, 4], "still": [0, 2, 4]}
    frames, labels = ClipSampler(videos, Augment(crop=(32, 32), scale=(1.0, 1.0))).batch(2)
    assert frames.shape == (2, 4, 32, 32, 3) and labels.shape == (2, 4, 32, 32)


def test_an_interrupted_export_resumes_and_writes_only_what_is_missing(labeled, tmp_path, monkeypatch):
    out, _, _ = labeled
    dest = str(tmp_path / "e")
    real = export_module._write_shard
    calls = []

    def crash_on_second_shard(*args, **kwargs):
        calls.append(args[6])
        if len(calls) == 2:
            raise Crash()
        return real(*args, **kwargs)

    monkeypatch.setattr(export_module, "_write_shard", crash_on_second_shard)
    with pytest.raises(Crash):
        export(connect(out), RUN.job_id, "true", dest, Store(), shard_frames=4, progress=False)
    assert sorted(p.name for p in (tmp_path / "e").glob("*.tar")) == ["shard-00000.tar"]  # no partial shard
    assert not list((tmp_path / "e").glob("*.tmp"))
    monkeypatch.setattr(export_module, "_write_shard", real)
    resumed = export(connect(out), RUN.job_id, "true", dest, Store(), shard_frames=4, progress=False)
    assert resumed.shards_written == 2 and resumed.samples_written == 2 * SCENE_FRAMES
    again = export(connect(out), RUN.job_id, "true", dest, Store(), shard_frames=4, progress=False)
    assert again.shards_written == 0  # finished: nothing is written twice
    whole = export(connect(out), RUN.job_id, "true", str(tmp_path / "w"), Store(), shard_frames=4, progress=False)
    ours, theirs = read_training_shards(resumed.shards), read_training_shards(whole.shards)
    assert ours == theirs


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_exported_files_get_the_usual_mode_for_the_umask(labeled, tmp_path, umask):
    out, _, _ = labeled
    dest = tmp_path / "e"
    before = os.umask(umask)
    try:
        export(connect(out), RUN.job_id, "true", str(dest), Store(), shard_frames=5, progress=False)
    finally:
        os.umask(before)
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    assert len(files) == 7  # 3 shards, their 3 records and the plan
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o666 & ~umask for p in files}


def test_a_lost_source_skips_its_frames_names_them_and_the_rest_is_exported(labeled, tmp_path):
    out, _, urls = labeled
    (tmp_path / "clip.mp4").unlink()
    dest = tmp_path / "e"
    result = export(connect(out), RUN.job_id, "true", str(dest), Store(), progress=False)
    assert result.samples_written == SCENE_FRAMES and len(result.skipped) == SCENE_FRAMES
    assert {s["video_id"] for s in result.skipped} == {"clip"}
    assert "clip.mp4" in result.skipped[0]["error"] and "restore the source" in result.skipped[0]["error"]
    record = json.loads((dest / "_export" / "shard-00000.json").read_text())
    assert len(record["skipped"]) == SCENE_FRAMES
    assert list(read_training_shards(result.shards)) == ["still"]


def test_refusals_name_the_fix(labeled, tmp_path):
    out, _, _ = labeled
    con = connect(out)
    dest = str(tmp_path / "e")
    with pytest.raises(ExportError, match="does not work on the frames table"):
        export(con, RUN.job_id, "no_such_column > 1", dest, Store(), progress=False)
    with pytest.raises(ExportError, match="does not work on the frames table"):
        export(con, RUN.job_id, "true; DELETE FROM frames", dest, Store(), progress=False)
    with pytest.raises(ExportError, match="selects no frames"):
        export(con, RUN.job_id, "frame_index > 1000", dest, Store(), progress=False)
    export(con, RUN.job_id, "video_id = 'clip'", dest, Store(), progress=False)
    with pytest.raises(ExportError, match="another selection"):
        export(con, RUN.job_id, "video_id = 'still'", dest, Store(), progress=False)


@pytest.fixture()
def two_jobs(tmp_path):
    """The scene labeled twice into one output, as jobs job-1 and job-2 (same videos, same frame numbers)."""
    out, _, urls = local_scene_output(tmp_path, RUN)
    commit_scene_output(out, OTHER, urls)
    return out


@pytest.mark.parametrize(
    "where, refusal",
    [
        ("1=1) OR (1=1", "cannot parse"),
        ("true) UNION SELECT video_id, frame_index FROM frames WHERE (true", "cannot parse"),
        ("true UNION SELECT * FROM frames", "UNION, INTERSECT or EXCEPT"),
        ("true; DELETE FROM frames", "2 statements"),
        ("true ORDER BY frame_index LIMIT 1", "ORDER BY"),
        ("true GROUP BY video_id", "GROUP BY"),
        ("frame_index IN (SELECT frame_index FROM frames)", "subquery"),
        ("video_id IN (SELECT video_id FROM videos)", "subquery"),
        ("EXISTS (SELECT * FROM read_parquet('/etc/passwd'))", "subquery"),
        ("frame_index = ?", "parameter"),
        ("job_id = $1", "parameter"),
        ("  ", "empty"),
    ],
)
def test_a_predicate_is_one_condition_on_a_frame_or_refused_before_anything_is_written(
    two_jobs, tmp_path, where, refusal
):
    dest = tmp_path / "e"
    with pytest.raises(ExportError, match=refusal):
        export(connect(two_jobs), RUN.job_id, where, str(dest), Store(), progress=False)
    assert not dest.exists()  # no plan listing frames that were never going to be written


def test_the_predicate_narrows_the_frames_of_the_job_asked_for_and_no_other(two_jobs, tmp_path):
    for where in ("true", "job_id = 'job-2' OR true", "mean_confidence >= 0 -- a comment"):
        dest = tmp_path / where.split()[0].replace("'", "")
        result = export(connect(two_jobs), RUN.job_id, where, str(dest), Store(), progress=False)
        rows = exported_rows(result.shards)
        assert result.frames_selected == result.samples_written == len(rows) == 2 * SCENE_FRAMES
        assert {r["job_id"] for r in rows} == {RUN.job_id}
        assert len({(r["video_id"], r["frame_index"]) for r in rows}) == len(rows)  # each frame once


def test_sources_and_destination_on_the_object_store(s3, tmp_path):
    bucket = s3.make_bucket("tv3s-export")
    store = Store(s3.storage_options)
    urls = {}
    for name, data in scene_sources().items():
        urls[name] = f"{bucket}/src/{name}"
        store.write(urls[name], data)
    out = Output(f"{bucket}/out-{uuid.uuid4().hex}", s3.storage_options)
    masks = commit_scene_output(out, RUN, urls)
    dest = f"{bucket}/export-{uuid.uuid4().hex}"
    result = export(connect(out), RUN.job_id, "frame_index >= 3", dest, store, shard_frames=4, progress=False)
    assert result.samples_written == 6 and result.shards[0].startswith("s3://")
    videos = read_training_shards(result.shards, s3.storage_options)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(videos["still"][0].mask))), masks["still"][3])


def test_the_command_line(labeled, tmp_path, capsys):
    from tv3s.cli import main

    out, _, _ = labeled
    dest = str(tmp_path / "cli")
    assert main(["export", out.url, "--where", "video_id = 'clip'", "--to", dest, "--shard-frames", "4"]) == 0
    assert f"6 of 6 selected frames in 2 shard(s) under {dest}" in capsys.readouterr().out
    assert main(["export", out.url, "--where", "nope(", "--to", dest]) == 2
    assert "--where predicate" in capsys.readouterr().err


def test_the_command_line_refuses_an_escaping_predicate_without_a_traceback(two_jobs, tmp_path):
    dest = tmp_path / "cli"
    for where in ("1=1) OR (1=1", "true) UNION SELECT video_id, frame_index FROM frames WHERE (true"):
        args = ["export", two_jobs.url, "--job", RUN.job_id, "--where", where, "--to", str(dest)]
        done = subprocess.run([sys.executable, "-m", "tv3s", *args], capture_output=True, text=True)
        assert done.returncode == 2, done.stdout
        assert done.stderr.startswith("tv3s export: error: the --where predicate") and "Traceback" not in done.stderr
        assert not dest.exists()
