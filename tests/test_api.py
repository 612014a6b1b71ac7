"""The Python API: submit a job, follow it through its handle, cancel and resume it, read its tables."""

from __future__ import annotations

import pytest

import tv3s

from .support.jobdata import job_spec, write_archive


@pytest.mark.ray
@pytest.mark.slow
def test_submit_cancel_resubmit_and_read_the_tables(tmp_path):
    spec = job_spec(write_archive(tmp_path / "archive"), str(tmp_path / "out"), name="api-job")
    job = tv3s.submit(spec, num_cpus=2)
    job.cancel()  # at once: the driver stops before or after some units, never mid-unit
    first = job.wait(timeout=600)
    assert first["state"] in ("cancelled", "finished"), job.log()

    job = tv3s.submit(spec, num_cpus=2)  # resumes
    final = job.wait(timeout=600)
    assert final["state"] == "finished" and final["videos_done"] == final["videos"] == 4, job.log()
    frames = job.table("frames", columns=["video_id", "frame_index"])
    keys = list(zip(frames["video_id"].to_pylist(), frames["frame_index"].to_pylist()))
    assert len(keys) == len(set(keys)) == final["frames"] == 55
    assert job.query("SELECT count(*) AS n FROM videos WHERE job_id = 'api-job'").to_pylist() == [{"n": 4}]
    assert tv3s.Job(spec).status() == final  # a handle made later reads the same output
    with pytest.raises(ValueError, match="no table 'masks'"):
        job.table("masks")


@pytest.mark.ray
@pytest.mark.slow
def test_label_in_one_call_writes_the_spec_that_resumes_it(tmp_path):
    out = tmp_path / "labels"
    job = tv3s.label(write_archive(tmp_path / "archive"), str(tv3s.DEMO_CHECKPOINT), str(out), resize="none")
    assert job.status()["state"] == "finished" and job.table("videos").num_rows == 4
    spec = tv3s.load_job_spec(str(out) + ".job.yaml")
    assert spec == job.spec and spec.name == "labels"
    again = tv3s.label(
        write_archive(tmp_path / "archive"), str(tv3s.DEMO_CHECKPOINT), str(out), resize="none", wait=False
    )
    assert again.wait()["frames"] == 55  # found done: nothing labelled twice
    assert job.table("frames").num_rows == 55


def test_a_mistake_in_the_call_raises_before_anything_starts(tmp_path):
    from tv3s.jobs.preflight import PreflightError

    with pytest.raises(PreflightError, match="nothing|no such"):
        tv3s.label([str(tmp_path / "missing.mp4")], str(tv3s.DEMO_CHECKPOINT), str(tmp_path / "out"))
    assert not (tmp_path / "out.job.yaml").exists()
