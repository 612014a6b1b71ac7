"""A user's likely first mistakes end in a message with the fix and exit 1, never in a traceback."""

from __future__ import annotations

import socket

import pytest

from tv3s.cli import main
from tv3s.jobs.runner import JobRunner
from tv3s.pipeline.outputs.commit import Output

from .jobs.test_plan import index_table
from .support.jobdata import job_spec
from .support.manifest_data import run_info, sample_job, write_job


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    from s3fs import S3FileSystem

    S3FileSystem.clear_instance_cache()  # fsspec reuses filesystems made with the same options
    yield
    S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize("command", [["status"], ["query", "SELECT 1"]])
def test_a_wrong_endpoint_is_named_with_the_fix(command, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    argv = [command[0], "s3://labels/dashcam", *command[1:], "--endpoint-url", endpoint]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"cannot connect to the object store at {endpoint}" in err and "--endpoint-url" in err


def test_missing_credentials_are_named_with_the_fix(s3, no_aws_credentials, capsys):
    bucket = s3.make_bucket("no-credentials")
    assert main(["status", f"{bucket}/out", "--endpoint-url", s3.endpoint_url]) == 1
    assert "no credentials for the object store: set AWS_ACCESS_KEY_ID" in capsys.readouterr().err


def test_a_job_that_is_not_there_is_named_with_the_jobs_that_are(tmp_path, capsys):
    out = str(tmp_path / "out")
    run = run_info()
    write_job(Output(out), run, sample_job(run))
    spec = job_spec(["/data/s.tar"], out, name=run.job_id)
    JobRunner(spec, progress=False)._plan_and_record([lambda: index_table([("v", "segment", 0)])])
    assert main(["status", out, "--job", "nope"]) == 1
    assert f"no job 'nope' in {out} (jobs: {run.job_id})" in capsys.readouterr().err
    assert main(["cancel", out, "--job", "nope"]) == 1
    assert "no job 'nope'" in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("cancel")), "no cancel marker is left for a job that is not there"


def test_an_unreachable_dashboard_is_named_with_the_fix(tmp_path, capsys):
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: j\ninputs: {shards: [x.tar]}\nmodel: {preset: tv3s-demo, random_weights: true}\noutput: out\n"
    )
    address = f"http://127.0.0.1:{closed_port()}"
    assert main(["submit", str(spec), "--address", address]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach {address}" in err and "--address" in err
