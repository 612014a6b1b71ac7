"""GPU workers scale from zero for a job and back to zero after it, with Ray's own autoscaler.

The fake multi-node provider (what Ray's autoscaler tests use) starts and stops worker raylets on
this machine as the autoscaler asks. Its worker type advertises a GPU that is not a real one, so
the actors fall back to CPU (`model.device: auto`), and the job's manifest must still equal the
reference. Ray's `AutoscalingCluster` helper is not used: it is broken in Ray 2.60 and calls
`ray stop --force` (../shared/ENVIRONMENT.md); the head runs `--block` in its own process group
and everything it started is stopped by PID. The fake provider hard-codes GCS port 6379.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from tv3s.jobs.actor import make_worker
from tv3s.jobs.runner import JobRunner, open_output, plan_job
from tv3s.pipeline.storage import Store

from ..support.jobdata import assert_same_output, job_spec, write_archive
from ..support.raycluster import RAY_ENV

pytestmark = [pytest.mark.ray, pytest.mark.slow]

IDLE_MINUTES = 0.1


def fake_cluster_config() -> dict:
    return {
        "cluster_name": "tv3s-fake",
        "max_workers": 2,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "ray.worker.gpu": {
                "resources": {"CPU": 1, "GPU": 1, "object_store_memory": 150 * 2**20},
                "node_config": {},
                "min_workers": 0,
                "max_workers": 2,
            },
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_MINUTES,
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


def processes_under(path: str) -> list[int]:
    """PIDs whose command line mentions `path` (the cluster's own temp dir): what it started."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if path in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture()
def autoscaling_cluster():
    import ray

    temp = tempfile.mkdtemp(prefix="tv3sas", dir="/tmp")
    os.makedirs(f"{temp}/ray")
    config = Path(temp) / "autoscaler.json"
    config.write_text(json.dumps(fake_cluster_config()))
    env = {**os.environ, **RAY_ENV, "RAY_TMPDIR": temp, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    os.environ.update({k: env[k] for k in (*RAY_ENV, "RAY_TMPDIR")})
    ray_exe = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [
            ray_exe,
            "start",
            "--head",
            "--block",
            "--port=6379",
            "--num-cpus=0",
            f"--temp-dir={temp}/ray",
            "--include-dashboard=false",
            f"--autoscaling-config={config}",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (Path(temp) / "ray" / "session_latest" / "logs" / "monitor.log").exists():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the autoscaling head did not start")
            time.sleep(0.5)
        ray.init(address="127.0.0.1:6379", log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in {head.pid, *processes_under(temp)}:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig) if pid == head.pid else os.kill(pid, sig)
            time.sleep(1)
        head.wait(timeout=30)
        deadline = time.monotonic() + 15
        while processes_under(temp) and time.monotonic() < deadline:  # raylets exit a moment later
            time.sleep(0.5)
        shutil.rmtree(temp, ignore_errors=True)


def gpu_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) > 0)


def test_gpu_workers_scale_up_for_a_job_and_are_removed_after_it(autoscaling_cluster, tmp_path):
    archive = write_archive(tmp_path / "archive")
    spec = job_spec(archive, str(tmp_path / "out"), resources={"actors": 1, "autoscale_max_actors": 2})
    reference = job_spec(archive, str(tmp_path / "ref"))
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the actors run (cpus_per_actor 1)
    try:
        worker = make_worker(reference, torch.device("cpu"))
        for chain in plan_job(reference, Store())[0]:
            worker.process(chain)
    finally:
        torch.set_num_threads(torch_threads)
    assert gpu_nodes() == 0
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], gpu_nodes())
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    summary = JobRunner(spec, progress=False).run()
    done.set()
    watcher.join()
    assert summary.state == "finished" and summary.frames == 55
    assert peak[0] == 2, f"the GPU group grew to {peak[0]} nodes, expected the cap of 2"
    assert_same_output(open_output(reference), open_output(spec))  # the fake GPUs ran the model on CPU
    deadline = time.monotonic() + IDLE_MINUTES * 60 + 60
    while gpu_nodes() and time.monotonic() < deadline:
        time.sleep(1)
    assert gpu_nodes() == 0, "idle GPU workers were not removed"
