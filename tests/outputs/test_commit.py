"""The exactly-once commit protocol, on local disk and on a real S3 server, under injected crashes."""

from __future__ import annotations

import uuid

import pytest

from tv3s.pipeline.outputs.commit import STEPS, CommitError, Output, Part, UnitKey
from tv3s.pipeline.outputs.manifest import ManifestWriter

from ..support.manifest_data import (
    Crash,
    crash_at,
    expected_keys,
    frame_keys,
    read_visible,
    run_info,
    sample_job,
    write_job,
)

RUN = run_info()


@pytest.fixture(scope="module")
def job():
    return sample_job(RUN)


@pytest.fixture(scope="module")
def bucket(s3):
    return s3.make_bucket("tv3s-commit")


@pytest.fixture(params=["local", "s3"])
def place(request, tmp_path):
    """(an empty output location, its filesystem for fault injection on S3, else None)."""
    if request.param == "local":
        return Output(str(tmp_path / "out")), None
    s3 = request.getfixturevalue("s3")
    output = Output(f"{request.getfixturevalue('bucket')}/{uuid.uuid4().hex}", s3.storage_options)
    return output, output.fs


def all_files(output: Output) -> list[str]:
    return [f.path for f in output.list("")]


def test_unit_keys_must_be_safe_path_segments():
    UnitKey("job-1", "_errors", "s000000-000001")
    for bad in [("../x", "v", "n"), ("j", "a/b", "n"), ("j", "v", ""), ("j", "v", ".hidden")]:
        with pytest.raises(ValueError, match="safe path segment"):
            UnitKey(*bad)


def test_a_finished_job_rerun_writes_nothing(place, job):
    output, _ = place
    write_job(output, RUN, job)
    before = all_files(output)
    writer = write_job(output, RUN, job)
    assert all_files(output) == before
    assert frame_keys(read_visible(output, "frames")) == expected_keys(RUN, job)
    assert all(writer.is_committed(v, s, s) for v, segs in job.items() for s in segs)
    videos = read_visible(output, "videos").to_pylist()
    assert sorted(v["video_id"] for v in videos) == sorted(job)
    for video in videos:
        rows = [r for segs in job[video["video_id"]].values() for r in segs]
        assert video["frames"] == len(rows) and video["units_committed"] == video["units_expected"] == 2
        assert video["class_histogram"] == [sum(r.class_histogram[c] for r in rows) for c in range(RUN.num_classes)]
        assert video["mean_confidence"] == pytest.approx(sum(r.mean_confidence for r in rows) / len(rows))
        assert video["errors"] == 1 and video["state_resets"] == 1
    assert read_visible(output, "errors").num_rows == len(job)


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_any_step_leaves_no_partial_or_duplicate_rows_and_a_rerun_completes(place, job, step):
    output, raw_fs = place
    with pytest.raises(Crash):
        write_job(output, RUN, job, observer=crash_at(step, occurrence=2, raw_fs=raw_fs))
    seen = frame_keys(read_visible(output, "frames"))
    assert max(seen.values(), default=1) == 1  # never a duplicate
    committed = {(v, s) for v, segs in job.items() for s in segs if ManifestWriter(output, RUN).is_committed(v, s, s)}
    assert seen == expected_keys(RUN, {v: {s: job[v][s] for s in job[v] if (v, s) in committed} for v in job})
    # the crashed unit was committed only if the crash came after its record
    assert len(committed) == (2 if step == "after_commit" else 1)

    write_job(output, RUN, job)  # the retry
    assert frame_keys(read_visible(output, "frames")) == expected_keys(RUN, job)
    assert read_visible(output, "errors").num_rows == len(job)
    assert read_visible(output, "videos").num_rows == len(job)
    before = all_files(output)
    write_job(output, RUN, job)
    assert all_files(output) == before


def test_racing_attempts_of_one_unit_leave_one_copy(place, job):
    """Attempt B commits while attempt A is between writing its data and its record."""
    output, _ = place
    key = UnitKey(RUN.job_id, "race", "u")
    rows = job["video 0/x"][0]

    def part() -> list[Part]:
        from tv3s.pipeline.outputs.manifest import encode_parquet
        from tv3s.schemas.manifest import frames_table

        return [Part("frames", encode_parquet(frames_table(rows)), len(rows))]

    def interleave(step: str, path: str) -> None:
        if step == "after_write":
            output.commit(key, part())  # B: sees no record yet (A has not written it)

    record, _ = output.commit(key, part(), observer=interleave)
    assert output.record(key) == record  # the caller is told which attempt counts
    assert frame_keys(read_visible(output, "frames")) == expected_keys(RUN, {"v": {0: rows}})


def test_overlapping_segment_ranges_are_refused(place, job):
    output, _ = place
    writer = ManifestWriter(output, RUN)
    rows = job["video 0/x"]
    writer.commit_units("video 0/x", 0, 0, rows[0])
    with pytest.raises(CommitError, match="overlap the committed unit 0..0"):
        writer.commit_units("video 0/x", 0, 1, rows[0] + rows[1])
    assert writer.committed_units("video 0/x") == {0}
    with pytest.raises(ValueError, match="does not belong"):
        writer.commit_units("video 0/x", 1, 1, rows[0])


def test_summary_waits_for_every_segment_and_errors_commit_once(place, job):
    output, _ = place
    writer = ManifestWriter(output, RUN)
    rows = job["video 0/x"]
    writer.commit_units("video 0/x", 1, 1, rows[1], units_expected=2)
    assert read_visible(output, "videos").num_rows == 0  # segment 0 is missing
    writer.commit_units("video 0/x", 0, 0, rows[0], units_expected=2)
    assert read_visible(output, "videos").column("frames").to_pylist() == [6]
    error = [job_error()]
    assert writer.commit_errors("s3://bucket/shard-0007.tar", error)[1] is True
    assert writer.commit_errors("s3://bucket/shard-0007.tar", error)[1] is False
    assert read_visible(output, "errors").column("url").to_pylist() == ["s3://bucket/shard-0007.tar"]


def job_error():
    from tv3s.schemas.errors import ErrorKind, InputError

    return InputError(
        kind=ErrorKind.truncated_tar, stage="index", url="s3://bucket/shard-0007.tar", message="ends early"
    )
