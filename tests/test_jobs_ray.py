"""Jobs on a real Ray cluster of several nodes: node loss, driver loss, cancel, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
import yaml

from tv3s.jobs.actor import FAULT_PAUSE, make_worker
from tv3s.jobs.runner import JobRunner, open_output, plan_job, read_status
from tv3s.pipeline.storage import Store

from .jobdata import assert_same_output, job_spec, table_rows, write_archive
from .raycluster import node_with_id, ray_cluster


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("archive"))


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory):
    """The same job labeled without Ray, in one uninterrupted pass per chain, with the actors' one
    thread (float reductions over more threads can differ in the last bit)."""
    spec = job_spec(archive, str(tmp_path_factory.mktemp("ref") / "out"))
    chains, _ = plan_job(spec, Store())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        worker = make_worker(spec, torch.device("cpu"))
        for chain in chains:
            worker.process(chain)
    finally:
        torch.set_num_threads(threads)
    return open_output(spec)


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster(worker_nodes=2, cpus_per_node=2) as (c, address):
        yield c, address


def spec_for(archive, tmp_path, **kw):
    return job_spec(archive, str(tmp_path / "out"), resources={"actors": 2, "chunk_frames": 4}, **kw)


def run_in_thread(spec) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target() -> None:
        try:
            box["summary"] = JobRunner(spec, progress=False).run()
        except BaseException as exc:  # reported by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def wait_for(path, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path):
            return open(path).read()
        time.sleep(0.1)
    raise TimeoutError(f"{path} did not appear in {timeout}s")


def test_a_job_on_two_actors_equals_the_uninterrupted_reference(cluster, archive, reference, tmp_path):
    spec = spec_for(archive, tmp_path)
    summary = JobRunner(spec, progress=False).run()
    assert summary.state == "finished" and summary.units_committed == 3 * 3 + 3 and summary.retries == 0
    assert_same_output(reference, open_output(spec))
    assert read_status(open_output(spec), spec.name)["state"] == "finished"
    again = JobRunner(spec, progress=False).run()  # finished: nothing new
    assert again.units_committed == 0 and again.units_already_done == 12


@pytest.mark.parametrize("step,nth", [("before_write", 1), ("after_commit", 2), ("mid_write", 2)],
                         ids=["before-first-commit", "between-commits", "during-a-commit"])
def test_losing_the_node_of_an_actor_mid_video_changes_nothing(cluster, archive, reference, tmp_path, monkeypatch,
                                                               step, nth):
    c, _ = cluster
    marker = tmp_path / "paused"
    monkeypatch.setenv(FAULT_PAUSE, f"{step}:{nth}:{marker}")
    spec = spec_for(archive, tmp_path)
    thread, box = run_in_thread(spec)
    node_id = wait_for(marker)
    c.remove_node(node_with_id(c, node_id), allow_graceful=False)
    thread.join(timeout=300)
    c.add_node(num_cpus=2, node_ip_address="127.0.0.1")  # back to two workers for the next test
    assert not thread.is_alive() and "error" not in box, box.get("error")
    summary = box["summary"]
    assert summary.state == "finished" and summary.retries >= 1
    assert_same_output(reference, open_output(spec))


def run_cli(spec, address: str, tmp_path, extra_env: dict | None = None) -> subprocess.Popen:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    env = {**os.environ, **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "tv3s", "run", str(path), "--address", address, "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killing_the_driver_mid_job_then_running_again_completes_it(cluster, archive, reference, tmp_path):
    _, address = cluster
    spec = spec_for(archive, tmp_path)
    marker = tmp_path / "paused"
    driver = run_cli(spec, address, tmp_path, {FAULT_PAUSE: f"after_commit:2:{marker}"})
    try:
        wait_for(marker)
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.wait(timeout=60)
    partial = table_rows(open_output(spec), "frames")
    assert 0 < len(partial) < 55
    summary = JobRunner(spec, progress=False).run()
    assert summary.state == "finished" and summary.units_already_done >= 2
    assert_same_output(reference, open_output(spec))


def test_cancel_then_resume(cluster, archive, reference, tmp_path):
    _, address = cluster
    spec = spec_for(archive, tmp_path)
    marker = tmp_path / "paused"
    driver = run_cli(spec, address, tmp_path, {FAULT_PAUSE: f"after_commit:1:{marker}:3"})
    wait_for(marker)
    from tv3s.cli import main

    assert main(["cancel", spec.output, "--job", spec.name]) == 0
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == 3, out
    assert read_status(open_output(spec), spec.name)["state"] == "cancelled"
    assert len(table_rows(open_output(spec), "frames")) < 55
    summary = JobRunner(spec, progress=False).run()
    assert summary.state == "finished"
    assert_same_output(reference, open_output(spec))
