"""Compaction: the same rows before and after, exactly once under injected crashes, then vacuum."""

from __future__ import annotations

import uuid

import pytest

from tv3s.pipeline.outputs.commit import STEPS, DataFile, Output
from tv3s.pipeline.outputs.compact import compact, plan_bins, vacuum

from ..support.manifest_data import Crash, crash_at, read_visible, run_info, sample_job, sorted_rows, write_job

RUN = run_info()


@pytest.fixture(scope="module")
def job():
    return sample_job(RUN, videos=2, segments=3, per_segment=2)


@pytest.fixture(scope="module")
def bucket(s3):
    return s3.make_bucket("tv3s-compact")


@pytest.fixture(params=["local", "s3"])
def place(request, tmp_path, job):
    """(an output holding the job's committed results, its filesystem for fault injection on S3)."""
    if request.param == "local":
        output, raw = Output(str(tmp_path / "out")), None
    else:
        s3 = request.getfixturevalue("s3")
        output = Output(f"{request.getfixturevalue('bucket')}/{uuid.uuid4().hex}", s3.storage_options)
        raw = output.fs
    write_job(output, RUN, job)
    return output, raw


def snapshot_of(output: Output) -> dict[str, list[dict]]:
    return {table: sorted_rows(read_visible(output, table)) for table in ("frames", "videos", "errors")}


def test_bins_group_small_files_per_table_in_path_order():
    files = [DataFile("frames", f"frames/j/v/s{i}", 1, size) for i, size in enumerate([40, 40, 40, 90, 10, 10])]
    files.append(DataFile("errors", "errors/j/v/s0", 1, 5))
    files.append(DataFile("errors", "errors/j/v/s1", 1, 5))
    bins = plan_bins(files, target=100)
    assert [[f.path for f in b] for b in bins] == [
        ["errors/j/v/s0", "errors/j/v/s1"],
        ["frames/j/v/s0", "frames/j/v/s1"],
        ["frames/j/v/s2", "frames/j/v/s4", "frames/j/v/s5"],  # s3 is already large (>= half the target)
    ]
    assert plan_bins(files[:1], target=100) == []


def test_compaction_changes_no_row_and_rerunning_the_job_writes_nothing(place, job):
    output, _ = place
    before = snapshot_of(output)
    files_before = len(output.view().files)
    report = compact(output, grace_s=0)
    assert report.files_in == files_before and report.files_out == 3  # one file per table
    assert report.deleted == files_before  # grace 0: replaced files go at once
    view = output.view()
    assert len(view.files) == 3 and all("/_compacted/" in f.path for f in view.files)
    assert snapshot_of(output) == before
    listing = [f.path for f in output.list("")]
    write_job(output, RUN, job)  # the records are still there: nothing is redone
    assert [f.path for f in output.list("")] == listing
    assert compact(output, grace_s=0).files_in == 0  # nothing small left


def test_new_commits_after_a_compaction_are_seen_and_compacted_again(place):
    output, _ = place
    before = snapshot_of(output)
    compact(output, grace_s=0)
    other = run_info("job-2")
    write_job(output, other, sample_job(other, videos=1, segments=2, per_segment=2))
    seen = snapshot_of(output)
    assert len(seen["frames"]) == len(before["frames"]) + 4
    report = compact(output, grace_s=0)
    # the 3 earlier compacted files and the new job's 4 parts (2 frames, 1 errors, 1 videos)
    assert report.files_in == 3 + 4 and snapshot_of(output) == seen


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_keeps_every_row_once_and_a_rerun_completes(place, step):
    output, raw = place
    before = snapshot_of(output)
    with pytest.raises(Crash):
        compact(output, grace_s=0, observer=crash_at(step, occurrence=1, raw_fs=raw))
    assert snapshot_of(output) == before
    compact(output, grace_s=0)
    assert snapshot_of(output) == before
    assert all("/_compacted/" in f.path for f in output.view().files)
    stored = {f.path for f in output.list("") if not f.path.startswith("_tv3s/")}
    assert stored == {f.path for f in output.view().files}  # the crashed attempt's files were vacuumed


def test_vacuum_waits_for_the_grace_period(place):
    output, _ = place
    compact(output, grace_s=3600)
    replaced = [f for f in output.list("frames") if "/_compacted/" not in f.path]
    assert replaced  # still there for readers that started before the snapshot
    assert vacuum(output, grace_s=3600) == []
    deleted = vacuum(output, grace_s=3600, now=max(f.modified for f in output.list("")) + 3601)
    assert {f.path for f in replaced} <= set(deleted)
    assert not [f for f in output.list("frames") if "/_compacted/" not in f.path]


def test_the_command_line(tmp_path, job, capsys):
    from tv3s.cli import main

    output = Output(str(tmp_path / "out"))
    write_job(output, RUN, job)
    before = snapshot_of(output)
    assert main(["compact", output.url, "--grace-minutes", "0", "--target-mb", "1"]) == 0
    assert "into 3" in capsys.readouterr().out
    assert snapshot_of(output) == before
    assert main(["compact", output.url]) == 0
    assert "nothing to merge" in capsys.readouterr().out
