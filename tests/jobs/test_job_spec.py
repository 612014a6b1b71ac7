"""Job specs: strict validation with errors that name the field and the fix; the JSON schema."""

from __future__ import annotations

import json

import pytest

from tv3s.cli import main
from tv3s.schemas.job import JobSpecError, load_job_spec

from ..support.cli import run_into_closed_pipe

GOOD = """
name: dashcam-1
inputs:
  shards: ["s3://archive/shard-{000..009}.tar"]
model:
  checkpoint: s3://models/tv3s-b1.pth
  precision: bf16
output: s3://labels/dashcam-1
resources: {actors: 4}
"""


def test_a_good_spec_and_its_defaults():
    spec = load_job_spec(GOOD)
    assert spec.model.mode == "stream" and spec.model.device == "auto" and spec.state.policy == "exact"
    assert spec.resources.actors == 4 and spec.state.checkpoint_every == 1
    assert spec.fingerprint() == load_job_spec(GOOD.replace("actors: 4", "actors: 9")).fingerprint()
    assert spec.fingerprint() != load_job_spec(GOOD.replace("bf16", "fp32")).fingerprint()


@pytest.mark.parametrize(
    "change,message",
    [
        (("resources: {actors: 4}", "resources: {actorz: 4}"), "resources.actorz: unknown field"),
        (("resources: {actors: 4}", "resources: {actors: 0}"), "resources.actors: Input should be greater than"),
        (("  precision: bf16", "  precision: fp8"), "model.precision: Input should be 'fp32', 'bf16' or 'fp16'"),
        (("name: dashcam-1", "name: ../etc"), "not a valid job name"),
        (("  checkpoint: s3://models/tv3s-b1.pth\n", "  preset: tv3s-b1-vspw\n"), "random weights"),
        (
            ('  shards: ["s3://archive/shard-{000..009}.tar"]', "  index: idx.parquet\n  shards: [a.tar]"),
            "exactly one of inputs.shards",
        ),
        (("output: s3://labels/dashcam-1\n", ""), "output: required"),
    ],
)
def test_errors_name_the_field_and_the_fix(change, message):
    with pytest.raises(JobSpecError, match="invalid") as info:
        load_job_spec(GOOD.replace(*change))
    assert message in str(info.value)


def test_credentials_are_refused_in_the_spec():
    with pytest.raises(JobSpecError, match="no credentials in endpoint_url"):
        load_job_spec(GOOD + "endpoint_url: http://key:secret@minio:9000\n")


def test_files_and_bad_yaml(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(GOOD)
    assert load_job_spec(str(path)).name == "dashcam-1"
    with pytest.raises(JobSpecError, match="nope.yaml: no such file"):
        load_job_spec(str(tmp_path / "nope.yaml"))
    with pytest.raises(JobSpecError, match="not valid YAML"):
        load_job_spec("name: [unclosed\n")


def test_schema_command_prints_the_json_schema(capsys):
    assert main(["schema", "job"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["required"]) == {"name", "inputs", "model", "output"}
    assert "checkpoint_every" in json.dumps(schema)


def test_a_reader_that_stops_early_ends_the_command_quietly():
    done = run_into_closed_pipe("schema", "job")
    assert (done.returncode, done.stderr) == (141, "")


def test_run_refuses_a_bad_spec_before_starting_anything(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(GOOD.replace("actors: 4", "actors: -1"))
    assert main(["run", str(path)]) == 2
    assert "resources.actors" in capsys.readouterr().err
