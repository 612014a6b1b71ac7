"""Exactly-once commits to Delta tables, on local disk and on a real S3 server, under injected crashes."""

from __future__ import annotations

import uuid

import pytest

from tv3s.pipeline.outputs.commit import STEPS, CommitError, Output
from tv3s.pipeline.outputs.manifest import ManifestWriter, UnitKey

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
    assert all_files(output) == before  # not even a log entry
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


def units_with_frames(output: Output) -> set[tuple[str, int]]:
    table = read_visible(output, "frames")
    if not table.num_rows:
        return set()
    return set(zip(table.column("video_id").to_pylist(), table.column("unit_index").to_pylist()))


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_any_step_leaves_no_partial_or_duplicate_rows_and_a_rerun_completes(place, job, step):
    output, raw_fs = place
    with pytest.raises(Crash):
        write_job(output, RUN, job, observer=crash_at(step, occurrence=2, raw_fs=raw_fs))
    seen = frame_keys(read_visible(output, "frames"))
    assert max(seen.values(), default=1) == 1  # never a duplicate
    committed = {(v, s) for v, segs in job.items() for s in segs if ManifestWriter(output, RUN).is_committed(v, s, s)}
    # the crashed unit is done only if the crash came after its ledger row
    assert len(committed) == (2 if step == "after_commit" else 1)
    # a unit's frames are all there or none (its own Delta commit), and there for every unit that is done
    with_frames = units_with_frames(output)
    assert committed <= with_frames
    assert seen == expected_keys(RUN, {v: {s: job[v][s] for s in job[v] if (v, s) in with_frames} for v in job})
    assert read_visible(output, "videos").num_rows == 0  # no video has all its units yet

    write_job(output, RUN, job)  # the retry
    assert frame_keys(read_visible(output, "frames")) == expected_keys(RUN, job)
    assert read_visible(output, "errors").num_rows == len(job)
    assert read_visible(output, "videos").num_rows == len(job)
    versions = {t: output.table(t).version() for t in ("frames", "errors", "videos", "units")}
    write_job(output, RUN, job)
    assert {t: output.table(t).version() for t in versions} == versions  # a third run commits nothing


def test_racing_attempts_of_one_unit_leave_one_copy(place, job):
    """Attempt B commits the whole unit while attempt A is between its rows and its ledger row."""
    output, _ = place
    rows = job["video 0/x"][0]
    b = ManifestWriter(output, RUN)

    def interleave(step: str, path: str) -> None:
        if step == "after_write":
            assert b.commit_units("video 0/x", 0, 0, rows) is True  # B finds the unit not done yet

    a = ManifestWriter(output, RUN, interleave)
    assert a.commit_units("video 0/x", 0, 0, rows) is False  # A is told its attempt does not count
    assert frame_keys(read_visible(output, "frames")) == expected_keys(RUN, {"video 0/x": {0: rows}})
    assert read_visible(output, "units").num_rows == 1


def test_concurrent_writers_of_one_unit_commit_it_once(place, job):
    """Eight threads commit the same unit at once: Delta's transaction conflict lets exactly one win."""
    from concurrent.futures import ThreadPoolExecutor

    output, _ = place
    rows = job["video 1/x"][0]
    ManifestWriter(output, RUN).commit_errors("warm-up: create the tables", [job_error()])

    def attempt(_: int) -> bool:
        return ManifestWriter(Output(output.url, output.storage_options), RUN).commit_units("video 1/x", 0, 0, rows)

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(attempt, range(8)))
    assert sum(won) <= 1
    assert frame_keys(read_visible(output, "frames")) == expected_keys(RUN, {"video 1/x": {0: rows}})
    assert read_visible(output, "units").num_rows == 2


def test_rows_must_belong_to_the_unit(place, job):
    output, _ = place
    writer = ManifestWriter(output, RUN)
    rows = job["video 0/x"]
    writer.commit_units("video 0/x", 0, 0, rows[0])
    assert writer.committed_units("video 0/x") == {0}
    with pytest.raises(ValueError, match="does not belong"):
        writer.commit_units("video 0/x", 1, 1, rows[0])


def test_an_output_of_the_per_unit_record_layout_is_refused(tmp_path):
    (tmp_path / "old" / "_tv3s" / "commits").mkdir(parents=True)
    with pytest.raises(CommitError, match="older tv3s"):
        ManifestWriter(Output(str(tmp_path / "old")), RUN).finished_videos()


def test_summary_waits_for_every_segment_and_errors_commit_once(place, job):
    output, _ = place
    writer = ManifestWriter(output, RUN)
    rows = job["video 0/x"]
    writer.commit_units("video 0/x", 1, 1, rows[1], units_expected=2)
    assert read_visible(output, "videos").num_rows == 0  # segment 0 is missing
    writer.commit_units("video 0/x", 0, 0, rows[0], units_expected=2)
    assert read_visible(output, "videos").column("frames").to_pylist() == [6]
    error = [job_error()]
    assert writer.commit_errors("s3://bucket/shard-0007.tar", error) is True
    assert writer.commit_errors("s3://bucket/shard-0007.tar", error) is False
    assert read_visible(output, "errors").column("url").to_pylist() == ["s3://bucket/shard-0007.tar"]


def job_error():
    from tv3s.schemas.errors import ErrorKind, InputError

    return InputError(
        kind=ErrorKind.truncated_tar, stage="index", url="s3://bucket/shard-0007.tar", message="ends early"
    )


ODD_IDS = ["a'b", "c\\'d", "e\\", "f%_", 'g"h', "x' OR '1'='1", "ünï", "tab\tx", "nl\nx", "j' AND video_id = 'a'b"]


def test_replacing_a_videos_rows_touches_that_video_only_whatever_its_id(tmp_path):
    """The predicate of a replacement is built from ids (file names, user text): quotes, backslashes
    and SQL in an id must still name exactly that video's rows."""
    import pyarrow as pa

    from tv3s.pipeline.outputs.commit import video_predicate

    output = Output(str(tmp_path / "out"))
    schema = pa.schema([("job_id", pa.string()), ("video_id", pa.string()), ("v", pa.int64())])
    n = len(ODD_IDS)
    output.append_once("t", pa.table([["j"] * n, ODD_IDS, list(range(n))], schema=schema), "seed")
    for k, video in enumerate(ODD_IDS):
        new = pa.table([["j"], [video], [100 + k]], schema=schema)
        assert output.replace_once("t", lambda new=new: new, schema, video_predicate("j", video), f"r{k}")
        assert not output.replace_once("t", lambda new=new: new, schema, video_predicate("j", video), f"r{k}")
    rows = sorted(output.table("t").to_pyarrow_table().to_pylist(), key=lambda r: r["v"])
    assert [(r["video_id"], r["v"]) for r in rows] == [(v, 100 + k) for k, v in enumerate(ODD_IDS)]
