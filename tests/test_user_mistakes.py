"""A user's likely first mistakes end in a message with the fix and exit 1, never in a traceback."""

from __future__ import annotations

import socket
import time

import pyarrow.parquet as pq
import pytest
import yaml

from tv3s import DEMO_CHECKPOINT
from tv3s.cli import main
from tv3s.jobs.runner import JobRunner
from tv3s.pipeline.outputs.commit import Output

from .jobs.test_plan import index_table
from .support.datagen import encode, stamped_frames
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


def spec_file(tmp_path, checkpoint: str = str(DEMO_CHECKPOINT), name: str = "job.yaml") -> str:
    path = tmp_path / name
    path.write_text(
        yaml.safe_dump(
            {
                "name": "j",
                "inputs": {"shards": [str(tmp_path / "x.tar")]},
                "model": {"checkpoint": checkpoint},
                "output": str(tmp_path / "out"),
            }
        )
    )
    return str(path)


def test_a_ray_address_nothing_answers_at_fails_in_seconds(tmp_path, capsys):
    spec = spec_file(tmp_path)
    address = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    assert main(["run", spec, "--address", address]) == 1
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert f"no Ray cluster answers at {address}" in err and "HOST:PORT" in err and "leave --address" in err
    assert main(["run", spec, "--address", "http://127.0.0.1:8265"]) == 1
    assert "is a Ray dashboard URL, which `tv3s submit` takes" in capsys.readouterr().err
    video = tmp_path / "clip.mp4"
    video.write_bytes(encode(stamped_frames(0, 0, 2, 64, 96)))
    assert main(["label", str(video), "--checkpoint", str(DEMO_CHECKPOINT), "--out", "o", "--address", "head"]) == 1
    assert "--address head is not HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("job.spec", b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not a text file; a job spec is YAML text"),
        ("job.spec", b"labels for the dashcam videos", "is not a job spec: it holds str where a mapping"),
        ("job.yaml", b"name: [unclosed\n", "is not valid YAML"),
        ("job.yaml", None, "job.yaml: no such file; pass the path of a job spec"),
        ("specs", "folder", "specs is a folder; pass the path of a job spec file"),
    ],
)
def test_a_spec_file_that_is_no_spec_is_named_with_the_fix(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_missing_or_not_a_checkpoint_is_named_before_ray_starts(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    video.write_bytes(encode(stamped_frames(0, 0, 2, 64, 96)))
    text = tmp_path / "model.pth"
    text.write_text("not weights")
    missing = str(tmp_path / "nope.pth")
    started = time.monotonic()
    assert main(["run", spec_file(tmp_path, missing)]) == 1
    assert f"checkpoint {missing}: no such file; check the path" in capsys.readouterr().err
    assert main(["run", spec_file(tmp_path, str(text))]) == 1
    assert f"{text} is not a TV3S checkpoint" in capsys.readouterr().err
    assert main(["label", str(video), "--checkpoint", missing, "--out", str(tmp_path / "labels")]) == 1
    assert "nope.pth: no such file" in capsys.readouterr().err
    assert time.monotonic() - started < 30, "no Ray was started"
    assert main(["segment", str(video), "--checkpoint", str(text), "--out", str(tmp_path / "seg")]) == 1
    assert "model.pth could not be read as a PyTorch weights file" in capsys.readouterr().err


def test_label_of_inputs_naming_nothing_fails_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "labels"
    assert main(["label", str(tmp_path / "footage"), "--checkpoint", str(DEMO_CHECKPOINT), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "nothing to label" in err and "footage" in err and "nor a folder" in err
    assert not out.exists() and not (tmp_path / "labels.job.yaml").exists()


def test_index_without_credentials_says_credentials_not_network(s3, no_aws_credentials, tmp_path, capsys):
    bucket = s3.make_bucket("index-no-credentials")
    out = tmp_path / "index.parquet"
    argv = ["index", f"{bucket}/shard-000000.tar", "--out", str(out), "--endpoint-url", s3.endpoint_url]
    assert main([*argv, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "first forbidden" in err and "no credentials for the object store: set AWS_ACCESS_KEY_ID" in err
    (record,) = pq.read_table(tmp_path / "index.errors.parquet").to_pylist()
    assert record["kind"] == "forbidden" and "AWS_ACCESS_KEY_ID" in record["hint"] and "network" not in record["hint"]


def test_debug_shows_the_traceback_of_a_mistake_wherever_it_is_written(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    argv = ["status", "s3://labels/dashcam", "--endpoint-url", f"http://127.0.0.1:{closed_port()}"]
    assert main(argv) == 1
    for debug in (["--debug", *argv], [*argv, "--debug"]):
        with pytest.raises(Exception, match="127.0.0.1"):
            main(debug)
