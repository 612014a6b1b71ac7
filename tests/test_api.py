"""The Python API: submit a job, follow it through its handle, cancel and resume it, read its tables."""

from __future__ import annotations

import pytest

import tv3s

from .support.jobdata import job_spec, write_archive

pytestmark = [pytest.mark.ray, pytest.mark.slow]


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
