"""The control plane: a job spec becomes chains of commit units labelled by stateful actors.

spec (`tv3s.schemas.job`) -> `plan_chains` (one chain per video, or per part of a long
video under the split policy) -> `JobRunner` hands chains to Ray actors (`actor`), each
holding one model and running a `ChainWorker` (`worker`) that reads a chain's units in
order, carries the stream state and commits every unit exactly once with its
`ResumePoint` -> the output's tables. `run_job` runs a spec to the end (resuming whatever
was committed before); `job_progress` reads where a job stands; `request_cancel` stops it
after the current units. `preflight` checks what it can before Ray starts (inputs, address,
checkpoint). `k8s` renders a spec as a KubeRay RayJob.
"""

from .plan import Chain, Unit, plan_chains
from .preflight import PreflightError, check_checkpoint, check_inputs, check_ray_address
from .resume_point import ResumePoint, ResumePointError
from .runner import JobError, JobSummary, open_output, plan_job, request_cancel, run_job
from .status import job_names, job_progress
from .worker import ChainOutcome, ChainWorker, WorkerOptions

__all__ = [
    "Chain",
    "ChainOutcome",
    "ChainWorker",
    "JobError",
    "JobSummary",
    "PreflightError",
    "ResumePoint",
    "ResumePointError",
    "Unit",
    "WorkerOptions",
    "check_checkpoint",
    "check_inputs",
    "check_ray_address",
    "job_names",
    "job_progress",
    "open_output",
    "plan_chains",
    "plan_job",
    "request_cancel",
    "run_job",
]
