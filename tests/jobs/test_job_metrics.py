"""A job's Ray metrics reach the Prometheus endpoint: frames per actor, actor frames/s, queue depth."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

from tv3s.jobs.runner import JobRunner

from ..support.jobdata import job_spec, write_archive

pytestmark = pytest.mark.ray


@pytest.fixture()
def local_ray_with_metrics():
    import ray

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, _metrics_export_port=port, log_to_driver=False)
    try:
        yield port
    finally:
        ray.shutdown()


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ray_tv3s_") and 'job="metrics"' in line:
            name = line.split("{", 1)[0]
            values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values


def test_job_metrics_are_exported_in_prometheus_format(local_ray_with_metrics, tmp_path):
    port = local_ray_with_metrics
    spec = job_spec(write_archive(tmp_path / "archive"), str(tmp_path / "out"), name="metrics")
    summary = JobRunner(spec, progress=False).run()
    assert summary.frames == 55
    deadline = time.monotonic() + 30
    values: dict[str, float] = {}
    while time.monotonic() < deadline:
        values = scrape(port)
        if values.get("ray_tv3s_frames_labeled_total", 0) >= 55 and values.get("ray_tv3s_job_queue_depth") == 0:
            break  # (metrics are exported every few seconds: the last values may take a moment)
        time.sleep(1)
    assert values.get("ray_tv3s_frames_labeled_total") == 55, values
    assert values.get("ray_tv3s_actor_frames_per_second", 0) > 0, values
    assert values["ray_tv3s_job_queue_depth"] == 0, values
