"""The Python face of tv3s: submit a job, keep a handle to it, read its tables as Arrow.

    import tv3s

    spec = tv3s.load_job_spec("job.yaml")                 # or tv3s.JobSpec.model_validate({...})
    job = tv3s.submit(spec)                               # its driver in a child process, on a local Ray
    job = tv3s.submit(spec, address="http://head:8265")   # or on a cluster, through the Ray Jobs API
    job.status()                                          # videos / units / frames done, state, eta
    job.wait()                                            # until the driver ends: the final status
    job.cancel()                                          # actors stop after their unit; submit again resumes
    job.table("videos")                                   # this job's rows as a pyarrow.Table
    job.query("SELECT video_id, mean_confidence FROM videos ORDER BY 2 LIMIT 10")

    job = tv3s.label(["s3://bucket/footage/"], "model.pth", "s3://bucket/labels")   # one call, waited

The driver never runs in the caller's process: a job is hours of work that must outlive a
notebook cell, and Ray's driver wants a process of its own. Everything a handle reports is
read from the job's output (its plan, status and units ledger), so a handle made later for
the same spec (`tv3s.Job(spec)`) follows a job it did not start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .jobs.label_spec import label_spec, spec_location, spec_yaml
from .jobs.preflight import check_checkpoint, check_inputs, check_same_labeling
from .jobs.runner import SUBMITTED_ENV, open_output, read_status, request_cancel
from .jobs.status import job_progress
from .pipeline.outputs.commit import utc_now
from .pipeline.outputs.query import connect, run_query
from .pipeline.storage import Store
from .schemas.job import JobSpec
from .schemas.manifest import TABLES

SPEC_ENV = "TV3S_JOB_SPEC"
_ENDED = ("finished", "cancelled", "failed")


class JobFailed(RuntimeError):
    """The job's driver ended without recording an end state (it crashed); the message says where to look."""


@dataclass
class _Driver:
    """Where a job's driver runs: a local child process, or a Ray Jobs API submission."""

    process: subprocess.Popen | None = None
    log_path: str | None = None  # the local driver's stdout and stderr
    client: object | None = None  # ray.job_submission.JobSubmissionClient
    submission: str | None = None

    def state(self) -> str | None:
        """The Ray Jobs API's word (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED), RUNNING or SUCCEEDED/
        FAILED for a local driver, None without a driver."""
        if self.process is not None:
            code = self.process.poll()
            return "RUNNING" if code is None else ("SUCCEEDED" if code == 0 else "FAILED")
        if self.client is not None:
            return str(self.client.get_job_status(self.submission)).rsplit(".", 1)[-1]
        return None

    def running(self) -> bool:
        return self.state() not in (None, "SUCCEEDED", "FAILED", "STOPPED")

    def tail(self) -> str:
        if self.log_path is not None:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        if self.client is not None:
            return self.client.get_job_logs(self.submission)[-2000:]
        return ""


class Job:
    """A handle to a job: its spec, and the driver this process started, if any."""

    def __init__(self, spec: JobSpec, driver: _Driver | None = None) -> None:
        self.spec = spec
        self.output = open_output(spec)
        self._driver = driver or _Driver()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def submission(self) -> str | None:
        """The Ray Jobs API submission id (a job submitted to a cluster), else None."""
        return self._driver.submission

    def driver_state(self) -> str | None:
        """How the driver this handle started is doing, in the Ray Jobs API's words (None: not started here)."""
        return self._driver.state()

    def status(self) -> dict:
        """Where the job stands, read from its output (`tv3s status --json` gives the same)."""
        try:
            return job_progress(self.output, self.name)
        except FileNotFoundError:  # the driver has not recorded the plan yet
            return {"name": self.name, "state": "starting"}

    def wait(self, timeout: float | None = None, poll_s: float = 1.0) -> dict:
        """Block until the job's driver ends (or `timeout` seconds pass: TimeoutError); its final status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._driver.running():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.name} still running after {timeout} s: {self.status()}")
            time.sleep(poll_s)
        status = self.status()
        if (read_status(self.output, self.name) or {}).get("state") not in _ENDED:
            raise JobFailed(f"job {self.name}'s driver ended without finishing it; the end of its log:\n{self.log()}")
        return status

    def log(self) -> str:
        """The end of the driver's log (local: its output; cluster: the Ray job's logs)."""
        return self._driver.tail()

    def cancel(self) -> None:
        """Ask the job to stop: its actors finish their current unit; submitting it again resumes it."""
        request_cancel(self.output, self.name)

    def dataset(self, name: str) -> ds.Dataset:
        """A table of the output (every job's rows) as a lazy Arrow dataset: filter and project before reading."""
        if name not in TABLES:
            raise ValueError(f"no table {name!r}; the tables are {', '.join(TABLES)}")
        return self.output.dataset(name, TABLES[name])

    def table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """This job's rows of a table (`frames`, `videos`, `errors`, `units`)."""
        return self.dataset(name).to_table(columns=columns, filter=pc.field("job_id") == self.name)

    def query(self, sql: str) -> pa.Table:
        """A read-only SQL query over the output's tables (all jobs': filter on job_id)."""
        return run_query(connect(self.output), sql)


def label(
    sources: Sequence[str],
    checkpoint: str,
    out: str,
    *,
    mode: str = "stream",
    actors: int = 1,
    every: int = 1,
    resize: str = "official",
    name: str | None = None,
    endpoint_url: str | None = None,
    address: str | None = None,
    wait: bool = True,
) -> Job:
    """Label video files, folders, s3:// prefixes or shards into `out` in one call, as `tv3s label`
    does: the inputs and checkpoint are checked first (a mistake raises PreflightError before anything
    starts), the spec is written beside the output (OUTPUT.job.yaml: `tv3s run` on it resumes), and the
    job runs (`address`: a cluster's dashboard, as for `submit`). Waits for the end unless `wait=False`;
    calling it again with the same arguments resumes, or finds everything done."""
    spec = label_spec(sources, checkpoint, out, mode, actors, every, resize, name, endpoint_url)
    store = Store(spec.storage_options())
    check_inputs(spec, store)
    check_checkpoint(spec, store)
    check_same_labeling(spec)
    store.write(spec_location(spec.output), spec_yaml(spec).encode())
    job = submit(spec, address)
    if wait:
        job.wait()
    return job


def submit(spec: JobSpec, address: str | None = None, num_cpus: int | None = None) -> Job:
    """Start `spec`: on a local Ray in a child process, or on the cluster whose dashboard is at
    `address` (http://head:8265) through the Ray Jobs API. Returns at once with a handle."""
    if address is None:
        return Job(spec, _local_driver(spec, num_cpus))
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    submission = client.submit_job(
        entrypoint=f"tv3s run --spec-from-env {SPEC_ENV} --quiet",
        runtime_env={"env_vars": {SPEC_ENV: spec.model_dump_json(), SUBMITTED_ENV: utc_now()}},
        submission_id=f"tv3s-{spec.name}-{uuid.uuid4().hex[:8]}",
        metadata={"tv3s_job": spec.name, "output": spec.output},
    )
    return Job(spec, _Driver(client=client, submission=submission))


def _local_driver(spec: JobSpec, num_cpus: int | None) -> _Driver:
    """`tv3s run` on the spec in a child process, its output to a log file (a pipe nobody reads would
    stop it once full)."""
    command = [sys.executable, "-m", "tv3s", "run", "--spec-from-env", SPEC_ENV, "--quiet"]
    if num_cpus is not None:
        command += ["--num-cpus", str(num_cpus)]
    with tempfile.NamedTemporaryFile("wb", prefix=f"tv3s-{spec.name}-", suffix=".log", delete=False) as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, SPEC_ENV: spec.model_dump_json(), SUBMITTED_ENV: utc_now()},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return _Driver(process=process, log_path=log.name)
