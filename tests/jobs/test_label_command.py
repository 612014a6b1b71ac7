"""`tv3s label`: files in, a job on a local Ray, its spec beside the output, and the next commands printed."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
import yaml

from tv3s import DEMO_CHECKPOINT
from tv3s.cli import main
from tv3s.pipeline.outputs.commit import Output

from ..support.datagen import encode, stamped_frames
from ..support.jobdata import H, W, table_rows

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def tv3s(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_TMPDIR": "/tmp"}
    return subprocess.run(
        [sys.executable, "-m", "tv3s", *args], env=env, capture_output=True, text=True, timeout=400, check=False
    )


def test_label_runs_a_job_over_a_folder_writes_its_spec_and_says_what_to_run_next(tmp_path, capsys):
    footage = tmp_path / "footage"
    (footage / "drive").mkdir(parents=True)
    (footage / "solo.mp4").write_bytes(encode(stamped_frames(0, 0, 6, H, W)))
    (footage / "drive" / "0.mp4").write_bytes(encode(stamped_frames(1, 0, 4, H, W)))
    (footage / "drive" / "1.mp4").write_bytes(encode(stamped_frames(1, 4, 4, H, W)))
    (footage / "broken.mp4").write_bytes(b"\x00" * 4000)
    out = tmp_path / "labels"
    done = tv3s(
        "label", str(footage), "--checkpoint", str(DEMO_CHECKPOINT), "--out", str(out), "--every", "2", "--quiet"
    )
    assert done.returncode == 0, done.stderr
    spec_path = tmp_path / "labels.job.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    assert spec["name"] == "labels" and spec["inputs"]["shards"] == [str(footage)]
    assert spec["inputs"]["frame_stride"] == 2 and spec["output"] == str(out)
    assert "job labels: finished - 2 videos" in done.stdout and "1 errors" in done.stdout

    frames = table_rows(Output(str(out)), "frames")
    assert [(r["video_id"], r["frame_index"], r["frame_stride"]) for r in frames] == [
        ("drive", t, 2) for t in (0, 2, 4, 6)
    ] + [("solo", t, 2) for t in (0, 2, 4)]
    errors = table_rows(Output(str(out)), "errors")
    assert [(e["kind"], os.path.basename(e["url"])) for e in errors] == [("corrupt_member", "broken.mp4")]

    commands = [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("tv3s ")]
    query, render, resume = commands
    assert main(shlex.split(query)[1:]) == 0 and "drive" in capsys.readouterr().out
    assert "--video drive" in render and "--job labels" in render
    assert resume.startswith(f"tv3s run {spec_path}")
    again = tv3s("run", str(spec_path), "--quiet")  # the spec resumes the job: nothing is labelled twice
    assert again.returncode == 0, again.stderr
    assert "0 units committed now (3 were done)" in again.stdout

    # the next day: one more video in the folder; the same command labels it alone
    (footage / "late.mp4").write_bytes(encode(stamped_frames(2, 0, 4, H, W)))
    grown = tv3s(
        "label", str(footage), "--checkpoint", str(DEMO_CHECKPOINT), "--out", str(out), "--every", "2", "--quiet"
    )
    assert grown.returncode == 0, grown.stderr
    assert "1 units committed now (3 were done)" in grown.stdout
    assert sorted({r["video_id"] for r in table_rows(Output(str(out)), "frames")}) == ["drive", "late", "solo"]

    # another setting under the same name is refused before anything is written, with the way out
    written = spec_path.read_text()
    other = tv3s("label", str(footage), "--checkpoint", str(DEMO_CHECKPOINT), "--out", str(out), "--every", "3")
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert "--name labels-v2" in other.stderr and spec_path.read_text() == written
