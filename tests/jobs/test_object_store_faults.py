"""A job against an S3 server that fails about 5% of requests gives exactly a clean run's output."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tv3s.jobs.runner import open_output

from ..support.faultproxy import fault_proxy
from ..support.jobdata import assert_same_output, job_spec, label_reference, table_rows, write_archive

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TRANSIENT = ("500", "503", "slowdown", "drop", "cut")  # short reads are `cut`


def test_a_job_under_transient_storage_faults_equals_a_clean_run(s3, tmp_path, monkeypatch):
    bucket = s3.make_bucket("faulty-job")
    fs = s3.filesystem()
    shards = []
    for local in write_archive(tmp_path / "archive"):
        url = f"{bucket}/archive/{os.path.basename(local)}"
        fs.put(local, url)
        shards.append(url)
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)

    clean = label_reference(job_spec(shards, f"{bucket}/clean", endpoint_url=s3.endpoint_url))

    with fault_proxy(s3.endpoint_url) as proxy:
        proxy.random_faults(0.05, TRANSIENT, seed=1)
        faulty = job_spec(shards, f"{bucket}/faulty", endpoint_url=proxy.url, resources={"actors": 2})
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(faulty.model_dump(mode="json")))
        run = subprocess.run(
            [sys.executable, "-m", "tv3s", "run", str(path), "--quiet"],
            env={**os.environ, **s3.env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        struck = [f for _, _, f in proxy.log if f != "ok"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(struck) >= 10, f"only {len(struck)} faults struck: the test would prove nothing"
    direct = job_spec(shards, f"{bucket}/faulty", endpoint_url=s3.endpoint_url)
    assert len(table_rows(open_output(direct), "frames")) == 3 * 15 + 10
    assert_same_output(clean, open_output(direct))
