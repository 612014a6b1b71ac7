"""A local Ray started by `tv3s run` leaves no process behind when its driver is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tv3s.jobs.actor import FAULT_PAUSE
from tv3s.jobs.local_ray import REGISTRY_ENV, reap_orphans, session_processes

from ..support.jobdata import job_spec, write_archive

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not happen in {timeout}s")


def test_processes_of_a_killed_driver_are_reaped_by_the_next_start(tmp_path):
    shards = write_archive(tmp_path / "archive", videos=1, segments=2, frame_video_frames=2)
    spec = job_spec(shards, str(tmp_path / "out"))
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    registry, marker = tmp_path / "registry", tmp_path / "paused"
    env = {**os.environ, REGISTRY_ENV: str(registry), FAULT_PAUSE: f"after_commit:1:{marker}", "RAY_TMPDIR": "/tmp"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "tv3s", "run", str(path), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: marker.exists(), 180, "the job's first commit")
        (record,) = registry.glob("*.json")
        session = json.loads(record.read_text())["session_dir"]
        assert session_processes(session), "the local Ray runs under its session folder"
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.wait(timeout=60)
    time.sleep(5)  # what Ray cleans up itself after a lost driver, it has cleaned by now
    left = session_processes(session)  # seen: the dashboard and runtime-env agents (not every time)
    os.environ[REGISTRY_ENV] = str(registry)
    try:
        reaped = reap_orphans()  # what the next `tv3s run` does first
    finally:
        del os.environ[REGISTRY_ENV]
    assert set(left) <= set(reaped)
    assert not session_processes(session), "every process of the killed driver's Ray is gone"
    assert not list(registry.glob("*.json"))
