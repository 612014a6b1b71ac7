"""`tv3s status` from the output alone: every error record of the job is counted, in videos' units or not."""

from __future__ import annotations

import json

from tv3s.cli import main
from tv3s.jobs.runner import JobRunner
from tv3s.jobs.status import job_progress
from tv3s.pipeline.outputs.commit import Output
from tv3s.pipeline.outputs.query import connect, run_query
from tv3s.schemas.errors import ErrorKind, InputError

from ..support.jobdata import job_spec
from ..support.manifest_data import decode_error, run_info, sample_job, write_job
from .test_plan import index_table

RUN = run_info()


def labeled_job(root: str) -> Output:
    """A planned job of two videos whose units are committed with one error each in segment 1, plus
    errors outside any video's units: an unreadable shard (2 records) and a chain that failed (1)."""
    spec = job_spec(["/data/shard-0000.tar"], root, name=RUN.job_id)
    job = sample_job(RUN)
    index = index_table([(video, "segment", s) for video in job for s in range(2)])
    _, plan = JobRunner(spec, progress=False)._plan_and_record([lambda: index])
    out = Output(root)
    writer = write_job(out, RUN, job, contents={chain.video_id: chain.content for chain in plan})
    shard = "file:///data/shard-0000.tar"
    writer.commit_errors("inputs", [decode_error("video 0/x", 5).model_copy(update={"url": shard})] * 2)
    failed = InputError(kind=ErrorKind.model_error, stage="model", url=root, message="chain failed 3 times", hint="")
    writer.commit_errors("chain-video 1/x@0-failed", [failed])
    return out


def test_status_counts_every_error_record_and_says_where_they_were_met(tmp_path, capsys):
    out = labeled_job(str(tmp_path / "out"))
    (errors,) = run_query(connect(out), "SELECT count(*) AS n FROM errors").column("n").to_pylist()
    report = job_progress(out, RUN.job_id)
    assert (
        (report["errors"], report["errors_in_videos"], report["errors_outside_videos"]) == (errors, 2, 3) == (5, 2, 3)
    )
    assert main(["status", out.url]) == 0
    assert "errors 5 (2 in videos' units, 3 outside them: unreadable inputs, failed chains)" in capsys.readouterr().out
    assert main(["status", out.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["errors_outside_videos"] == 3
