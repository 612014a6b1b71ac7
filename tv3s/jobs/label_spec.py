"""The job spec of one labeling command (`tv3s label`, `tv3s.label`), and where it is kept.

One command labels sources into an output; the spec it runs is written beside the output
(`OUTPUT.job.yaml`), so `tv3s run` on that file resumes or repeats exactly this job, and the
same command run again finds its job by name (the output's folder name).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence

import yaml

from ..schemas.job import JobSpec, load_job_spec

DEFAULT_NAME = "label"


def label_spec(
    sources: Sequence[str],
    checkpoint: str,
    output: str,
    mode: str = "stream",
    actors: int = 1,
    every: int = 1,
    resize: str = "official",
    name: str | None = None,
    endpoint_url: str | None = None,
) -> JobSpec:
    """The spec of labeling `sources` into `output`; local paths made absolute, so it works from anywhere."""
    output = _absolute(output)
    return load_job_spec(
        {
            "name": name or _job_name(output),
            "inputs": {"shards": [_absolute(s) for s in sources], "resize": resize, "frame_stride": every},
            "model": {"checkpoint": _absolute(checkpoint), "mode": mode},
            "output": output,
            "endpoint_url": endpoint_url,
            "resources": {"actors": actors},
        }
    )


def spec_location(output: str) -> str:
    """Where the spec goes: beside the output, named after it."""
    return output.rstrip("/") + ".job.yaml"


def spec_yaml(spec: JobSpec) -> str:
    """The spec as YAML, with the fields that differ from their defaults."""
    return yaml.safe_dump(json.loads(spec.model_dump_json(exclude_defaults=True)), sort_keys=False)


def _absolute(where: str) -> str:
    return where if "://" in where else os.path.abspath(where)


def _job_name(output: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._=-]+", "-", os.path.basename(output.rstrip("/"))).strip("-._=")
    return name[:100] or DEFAULT_NAME
