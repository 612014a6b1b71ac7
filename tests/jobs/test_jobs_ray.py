"""Jobs on a real Ray cluster of several nodes: node loss, driver loss, cancel, bad input."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time

import pytest
import yaml

from tv3s.jobs.actor import FAULT_PAUSE
from tv3s.jobs.runner import JobRunner, open_output, read_status
from tv3s.pipeline.outputs.compact import compact

from ..support.datagen import encode, segment_sample, stamped_frames, tar_bytes
from ..support.jobdata import H, W, assert_same_output, job_spec, label_reference, table_rows, write_archive
from ..support.raycluster import node_with_id, ray_cluster

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("archive"))


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory):
    """The same job labeled without Ray, in one uninterrupted pass per chain."""
    return label_reference(job_spec(archive, str(tmp_path_factory.mktemp("ref") / "out")))


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


def test_a_job_on_two_actors_equals_the_uninterrupted_reference(cluster, archive, reference, tmp_path, capsys):
    spec = spec_for(archive, tmp_path)
    summary = JobRunner(spec, progress=False).run()
    assert summary.state == "finished" and summary.units_committed == 3 * 3 + 3 and summary.retries == 0
    assert_same_output(reference, open_output(spec))
    assert read_status(open_output(spec), spec.name)["state"] == "finished"
    again = JobRunner(spec, progress=False).run()  # finished: nothing new
    assert again.units_committed == 0 and again.units_already_done == 12
    from tv3s.cli import main

    assert main(["status", spec.output, "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert (report["state"], report["videos_done"], report["units_done"], report["frames"]) == ("finished", 4, 12, 55)


@pytest.mark.parametrize(
    "step,nth",
    [("before_write", 1), ("after_commit", 2), ("mid_write", 2)],
    ids=["before-first-commit", "between-commits", "during-a-commit"],
)
def test_losing_the_node_of_an_actor_mid_video_changes_nothing(
    cluster, archive, reference, tmp_path, monkeypatch, step, nth
):
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
    return subprocess.Popen(
        [sys.executable, "-m", "tv3s", "run", str(path), "--address", address, "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


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
    compact(open_output(spec), grace_s=0)
    assert_same_output(reference, open_output(spec))
    assert_other_engines_see_each_frame_once(open_output(spec), reference)


def assert_other_engines_see_each_frame_once(output, reference) -> None:
    """Readers that know nothing of tv3s: polars' read_delta, and DuckDB over deltalake's dataset."""
    import duckdb
    import polars as pl
    from deltalake import DeltaTable

    frames, videos = len(table_rows(reference, "frames")), len(table_rows(reference, "videos"))
    keys = pl.read_delta(output.table_uri("frames")).select("job_id", "video_id", "frame_index")
    assert keys.height == keys.unique().height == frames
    summaries = DeltaTable(output.table_uri("videos")).to_pyarrow_dataset()  # noqa: F841 (DuckDB reads it by name)
    assert duckdb.sql("SELECT count(*), sum(frames) FROM summaries").fetchall() == [(videos, frames)]


def test_cancel_then_resume(cluster, archive, reference, tmp_path):
    _, address = cluster
    spec = spec_for(archive, tmp_path)
    marker = tmp_path / "paused"
    driver = run_cli(spec, address, tmp_path, {FAULT_PAUSE: f"after_commit:1:{marker}:3"})
    wait_for(marker)
    from tv3s.cli import main

    assert main(["cancel", spec.output, "--job", spec.name]) == 0
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == 0 and "cancelled" in out, out
    assert read_status(open_output(spec), spec.name)["state"] == "cancelled"
    assert len(table_rows(open_output(spec), "frames")) < 55
    summary = JobRunner(spec, progress=False).run()
    assert summary.state == "finished"
    assert_same_output(reference, open_output(spec))


def test_every_kind_of_bad_input_is_recorded_and_the_other_videos_complete(cluster, tmp_path):
    """Corrupt and undecodable members, a truncated and an empty shard, a missing segment, a frame size
    change, bad json, a duplicate key and a shard that does not exist, all in one job."""

    def seg(video: str, index: int, frames=None, **meta) -> dict:
        frames = stamped_frames(7, index * 4, 4, H, W) if frames is None else frames
        return segment_sample(video, index, encode(frames), start_frame=index * 4, frames=4, fps=12, **meta)

    good = [seg("good", i) for i in range(3)]
    damaged = [seg("dmg", 0), segment_sample("dmg", 1, b"\x00garbage" * 300, start_frame=4, frames=4), seg("dmg", 2)]
    gappy = [seg("gap", 0), seg("gap", 2)]
    resized = [seg("big", 0), seg("big", 1, stamped_frames(8, 4, 4, 96, 128)), seg("big", 2)]
    bad_json = [{"__key__": "bj/000000", "mp4": encode(stamped_frames(9, 0, 4, H, W)), "json": b"{not json"}]
    duplicate = [seg("dup", 0), seg("dup", 0)]
    truncated = tar_bytes([seg("cut", 0), seg("cut", 1)])
    with tarfile.open(fileobj=io.BytesIO(truncated)) as tar:
        cut_at = tar.getmember("cut/000001.mp4").offset_data + 100
    paths = []
    for i, data in enumerate(
        [tar_bytes(good + damaged + gappy), tar_bytes(resized + bad_json + duplicate), truncated[:cut_at], b""]
    ):
        (tmp_path / f"s{i}.tar").write_bytes(data)
        paths.append(str(tmp_path / f"s{i}.tar"))
    spec = job_spec(paths + [str(tmp_path / "missing.tar")], str(tmp_path / "out"), resources={"actors": 2})
    summary = JobRunner(spec, progress=False).run()
    assert summary.state == "finished"
    out = open_output(spec)
    kinds = {r["kind"] for r in table_rows(out, "errors")}
    assert {
        "corrupt_member",
        "truncated_tar",
        "empty_shard",
        "missing_segment",
        "frame_size_changed",
        "bad_metadata",
        "duplicate_key",
        "not_found",
    } <= kinds, kinds
    frames = table_rows(out, "frames")
    per_video = {v: sum(r["video_id"] == v for r in frames) for v in {r["video_id"] for r in frames}}
    assert per_video["good"] == 12 and per_video["dmg"] == 8 and per_video["gap"] == 8 and per_video["big"] == 12
    assert per_video["cut"] == 4 and per_video["dup"] == 4
    big = [r for r in frames if r["video_id"] == "big"]
    assert [r["state_reset_reason"] for r in big if r["temporal_state"] == "reset"] == [
        "video_start",
        "frame_size_changed",
        "frame_size_changed",
    ]
    assert {v["video_id"] for v in table_rows(out, "videos")} >= {"good", "dmg", "gap", "big", "dup"}


def test_an_actor_labels_several_videos_per_forward_pass(cluster, archive, tmp_path):
    spec = job_spec(archive, str(tmp_path / "out"), resources={"actors": 1, "videos_per_batch": 3})
    summary = JobRunner(spec, progress=False).run()
    assert summary.state == "finished" and summary.frames == 55
    assert [v["video_id"] for v in table_rows(open_output(spec), "videos")] == ["cam0", "cam1", "cam2", "stills"]


def test_a_job_over_a_partitioned_index_equals_the_reference(cluster, archive, reference, tmp_path):
    """Chains planned and handed out partition by partition: the same rows as the one-table plan."""
    from tv3s.cli import main

    index = str(tmp_path / "index")
    assert main(["index", *archive, "--out", index, "--partitions", "3", "--no-progress"]) == 0
    spec = spec_for(archive, tmp_path)
    spec = spec.model_copy(update={"inputs": spec.inputs.model_copy(update={"shards": [], "index": index})})
    summary = JobRunner(spec, progress=False).run()
    assert summary.state == "finished" and summary.chains == 4 and summary.units == 3 * 3 + 3
    assert_same_output(reference, open_output(spec))
    assert read_status(open_output(spec), spec.name)["state"] == "finished"
