"""Compaction (Delta optimize + checkpoint + vacuum): the same rows before and after, for any Delta reader."""

from __future__ import annotations

import os
import time
import uuid

import polars as pl
import pytest

from tv3s.pipeline.outputs.commit import Output
from tv3s.pipeline.outputs.compact import compact, merge_small_files, vacuum_states

from ..support.manifest_data import (
    Crash,
    crash_at,
    expected_keys,
    frame_keys,
    read_visible,
    run_info,
    sample_job,
    sorted_rows,
    write_job,
)

RUN = run_info()


@pytest.fixture(scope="module")
def job():
    return sample_job(RUN, videos=2, segments=3, per_segment=2)


@pytest.fixture(scope="module")
def bucket(s3):
    return s3.make_bucket("tv3s-compact")


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path, job):
    """An output holding the job's committed results."""
    if request.param == "local":
        out = Output(str(tmp_path / "out"))
    else:
        s3 = request.getfixturevalue("s3")
        out = Output(f"{request.getfixturevalue('bucket')}/{uuid.uuid4().hex}", s3.storage_options)
    write_job(out, RUN, job)
    return out


def snapshot_of(output: Output) -> dict[str, list[dict]]:
    return {table: sorted_rows(read_visible(output, table)) for table in ("frames", "videos", "errors")}


def data_files(output: Output, table: str) -> int:
    return len(output.table(table).file_uris())


def test_compaction_changes_no_row_and_rerunning_the_job_writes_nothing(output, job):
    before = snapshot_of(output)
    assert data_files(output, "frames") == 6  # one per unit
    report = compact(output, grace_s=0)
    assert {t.table: (t.files_in, t.files_out) for t in report.tables}["frames"] == (6, 1)
    assert data_files(output, "frames") == 1
    assert snapshot_of(output) == before
    assert report.deleted >= 6  # the replaced files are gone (no grace)
    versions = {t: output.table(t).version() for t in ("frames", "videos", "errors", "units")}
    write_job(output, RUN, job)  # every unit is done: the ledger says so, after compaction too
    assert {t: output.table(t).version() for t in versions} == versions
    assert snapshot_of(output) == before


def test_polars_reads_exactly_the_committed_rows_after_compaction(output):
    """A reader that knows nothing of tv3s (polars over delta-rs) sees each frame once."""
    compact(output, grace_s=0)
    frames = pl.read_delta(output.table_uri("frames"), storage_options=output.delta_options() or None)
    keys = frames.select("job_id", "video_id", "frame_index")
    assert keys.height == keys.unique().height == 12


def test_the_grace_period_keeps_replaced_files_for_readers_already_running(output):
    before = snapshot_of(output)
    snapshot = output.table("frames").to_pyarrow_dataset()  # a reader that opened the table before
    compact(output, grace_s=3600)
    assert data_files(output, "frames") == 1
    assert sorted_rows(snapshot.to_table()) == before["frames"]  # its old files are all still there


def test_resume_points_no_unit_names_are_vacuumed_after_the_grace_period(tmp_path, job):
    output = Output(str(tmp_path / "out"))
    write_job(output, RUN, job)
    orphan = "state/job-1/v/s000009-000009.dead.safetensors"
    output.write_once(orphan, b"left by a crashed attempt")
    assert vacuum_states(output, grace_s=3600) == []
    old = time.time() - 7200
    os.utime(output.full(orphan), (old, old))
    assert vacuum_states(output, grace_s=3600) == [orphan]


def test_a_unit_retried_after_its_frames_were_merged_is_not_appended_twice(tmp_path, job):
    """A running job merges small files while units are half done: the merge rewrites a unit's
    frames into another file, and the unit's retry must still find them committed (the
    application transaction is in the log, not in the file)."""
    output = Output(str(tmp_path / "out"))
    with pytest.raises(Crash):
        write_job(output, RUN, job, observer=crash_at("after_write", occurrence=3))
    assert merge_small_files(output) >= 3
    assert data_files(output, "frames") == 1
    write_job(output, RUN, job)
    assert frame_keys(read_visible(output, "frames")) == expected_keys(RUN, job)
    assert merge_small_files(output) > 0 and data_files(output, "frames") == 1
    assert frame_keys(read_visible(output, "frames")) == expected_keys(RUN, job)
