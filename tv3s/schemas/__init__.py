"""The project's contracts, as types: what a user writes and what the system stores.

- `job` — the job spec (pydantic, unknown keys rejected, errors naming the field and fix).
- `index` — the index's Arrow schema and the sample metadata a shard's json may carry.
- `manifest` — the versioned Arrow schemas of the ``frames``, ``videos`` and ``errors``
  tables (`SCHEMA_VERSION`; a reader refuses other versions).
- `errors` — `InputError`, the one record of anything that went wrong with an input.
- `classes` — class names and palettes of the datasets the model is trained on.
"""

from .classes import ClassSet, classes_for
from .errors import ErrorKind, InputError
from .index import INDEX_SCHEMA, INDEX_VERSION
from .job import JobSpec, JobSpecError, job_json_schema, load_job_spec
from .manifest import ERRORS_SCHEMA, FRAMES_SCHEMA, SCHEMA_VERSION, TABLES, VIDEOS_SCHEMA, ResetReason, TemporalState

__all__ = [
    "ERRORS_SCHEMA",
    "FRAMES_SCHEMA",
    "INDEX_SCHEMA",
    "INDEX_VERSION",
    "SCHEMA_VERSION",
    "TABLES",
    "VIDEOS_SCHEMA",
    "ClassSet",
    "ErrorKind",
    "InputError",
    "JobSpec",
    "JobSpecError",
    "ResetReason",
    "TemporalState",
    "classes_for",
    "job_json_schema",
    "load_job_spec",
]
