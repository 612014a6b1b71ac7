"""The JOB.yaml argument of `tv3s run` and `tv3s submit`: a local file of any name, or a URL.

`tv3s label` writes its spec beside the output, which may be in object storage, so a spec
is read through the data plane's `Store` when it is a URL (endpoint and credentials from
the environment, as always).
"""

from __future__ import annotations

from pathlib import Path

from ..pipeline.storage import StorageError, Store
from ..schemas.job import JobSpec, JobSpecError, load_job_spec


def load_spec_argument(where: str) -> JobSpec:
    """The spec named on the command line; every failure is a JobSpecError naming the file and the fix."""
    if "://" not in where:
        return load_job_spec(Path(where))
    try:
        raw = Store().read_all(where)
    except StorageError as exc:
        raise JobSpecError(f"cannot read the job spec {where}: {exc.record.message}; {exc.record.hint}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JobSpecError(f"{where} is not a text file; a job spec is YAML text (`tv3s schema job`)") from None
    return load_job_spec(text, where=where)
