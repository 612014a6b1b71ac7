"""The job spec: what `tv3s run job.yaml` labels, with which model, where results go.

Validated by pydantic with unknown keys rejected, so a typo is an error naming the
field rather than a setting silently ignored. `tv3s schema job` prints the JSON schema
for editors. Example::

    name: dashcam-2026-11
    inputs:
      shards: ["s3://archive/dashcam/shard-{000000..000999}.tar"]
    model:
      checkpoint: s3://models/tv3s-b1-vspw.pth
      mode: stream
      precision: bf16
      device: auto
    output: s3://labels/dashcam-2026-11
    resources: {actors: 8, gpus_per_actor: 1}
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,99}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class InputsSpec(_Strict):
    """Where the videos are: shard URLs/globs/brace ranges to index, or an index already built."""

    shards: list[str] = Field(default_factory=list, description="WebDataset shard URLs, globs or {a..b} ranges")
    index: str | None = Field(
        None,
        description="an index written by `tv3s index` (instead of shards): a Parquet file, or a folder of partitions",
    )
    key_pattern: str | None = Field(
        None,
        description="template naming video and frame in the keys of frame samples without json, e.g. "
        "{video_id}_{frame:06d} (default {video_id}/{frame}); not a regex",
    )
    resize: Literal["official", "none"] = Field(
        "official", description="official: the TV3S test size rule (853x480, multiples of 32); none: source size"
    )
    frame_stride: int = Field(
        1,
        ge=1,
        description="label every Nth frame of each video (frames 0, N, 2N, ...; the state is carried over them); "
        "the rows record N",
    )

    @model_validator(mode="after")
    def _one_source(self) -> InputsSpec:
        if bool(self.shards) == (self.index is not None):
            raise ValueError(
                "give exactly one of inputs.shards (a list of shard URLs or globs) or inputs.index "
                "(an index Parquet from `tv3s index`)"
            )
        return self


class ModelSpec(_Strict):
    """Which weights, how to run them."""

    preset: str | None = Field(None, description="a preset name (random weights unless checkpoint is given too)")
    checkpoint: str | None = Field(None, description="checkpoint path or URL (official mmseg or tv3s train)")
    random_weights: bool = Field(False, description="allow a preset without a checkpoint (tests, benchmarks)")
    mode: Literal["stream", "clip"] = Field(
        "stream", description="stream: state carried over each video; clip: the paper's t-9/t-6/t-3/t clips"
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="bf16/fp16: autocast on CUDA (the scan and the state stay fp32); CPU runs fp32"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: a GPU when the actor has one")

    @model_validator(mode="after")
    def _weights(self) -> ModelSpec:
        if self.checkpoint is None and self.preset is None:
            raise ValueError("give model.checkpoint (a .pth path or URL), or model.preset with random_weights: true")
        if self.checkpoint is None and not self.random_weights:
            raise ValueError(
                f"model.preset {self.preset!r} without model.checkpoint would label with random "
                "weights; add model.checkpoint, or random_weights: true if that is what you want"
            )
        return self


class ResourcesSpec(_Strict):
    """How many actors and what each one holds."""

    actors: int = Field(1, ge=1, description="model replicas (one per GPU on GPU clusters)")
    gpus_per_actor: float = Field(1.0, ge=0, description="used when the cluster has GPUs; 0 forces CPU")
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs reserved per actor (decoding runs beside the model)")
    max_actors_per_node: int | None = Field(None, ge=1, description="spread actors (CPU clusters)")
    prefetch_chunks: int = Field(2, ge=1, le=64, description="decoded chunks an actor keeps ready ahead of the model")
    chunk_frames: int = Field(8, ge=1, le=256, description="frames per forward pass")
    videos_per_batch: int = Field(
        1,
        ge=1,
        le=64,
        description="stream mode: videos an actor labels side by "
        "side, their frames batched into one forward pass (each with its own state): fewer, larger "
        "kernels (1.16x with 4 videos on 2 CPU cores, demo model)",
    )
    cuda_graphs: bool = Field(
        False,
        description="stream mode on a GPU: replay each repeated step shape from a CUDA graph (one launch "
        "a step instead of ~700 for B1; same numbers); off until benchmarks/gpu.py has measured it",
    )
    autoscale_max_actors: int | None = Field(
        None, ge=1, description="ask the Ray autoscaler for up to this many actors' resources while chains wait"
    )


class StateSpec(_Strict):
    """How temporal state is carried, checkpointed and (optionally) approximated."""

    policy: Literal["exact", "split"] = Field(
        "exact",
        description="exact: one chain per video, state carried across every segment; split: videos "
        "longer than split_frames become parallel chains, each warmed up on warmup_frames earlier frames "
        "(recorded as warmed_up: approximate)",
    )
    split_frames: int = Field(3000, ge=1, description="with policy split: frames per chain")
    warmup_frames: int = Field(32, ge=0, description="with policy split: frames re-run before a chain's first")
    checkpoint_every: int = Field(
        1,
        ge=1,
        description="save the state with every Nth unit commit (a resume replays at most N-1 units to rebuild it)",
    )
    frames_per_unit: int = Field(
        64,
        ge=1,
        description="frame-sequence videos: frames per commit unit (video-file samples commit one segment per unit)",
    )


class RetrySpec(_Strict):
    chain_attempts: int = Field(3, ge=1, description="attempts per chain when its actor or node is lost")


class JobSpec(_Strict):
    """A labeling job: inputs -> model -> output."""

    name: str = Field(
        description="job id: letters, digits and . _ = - (names the job in the output; running "
        "the same name again resumes it)"
    )
    inputs: InputsSpec
    model: ModelSpec
    output: str = Field(description="output folder or s3://bucket/prefix")
    endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint for inputs, model and output "
        "(credentials come from the environment, never the spec)",
    )
    resources: ResourcesSpec = ResourcesSpec()
    state: StateSpec = StateSpec()
    retries: RetrySpec = RetrySpec()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not JOB_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid job name: use letters, digits and . _ = - "
                "(at most 100 characters, starting with a letter or digit)"
            )
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value and "@" in value.split("://", 1)[-1].split("/", 1)[0]:
            raise ValueError(
                "put no credentials in endpoint_url: export AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY (or use a profile or role) instead"
            )
        return value

    def storage_options(self) -> dict:
        return {"client_kwargs": {"endpoint_url": self.endpoint_url}} if self.endpoint_url else {}

    def fingerprint(self) -> str:
        """What must not change while a job's name stays: the model and how it labels (resize, frame
        stride, key pattern, state policy). The input list may: a job run again over a grown archive
        labels only the videos that are new or changed (see `tv3s.jobs.plan.video_contents`)."""
        keep = self.model_dump(include={"inputs", "model", "state"})
        for where in ("shards", "index"):
            keep["inputs"].pop(where)
        keep["state"].pop("checkpoint_every", None)
        if keep["inputs"]["frame_stride"] == 1:  # as before the field existed: such jobs resume
            del keep["inputs"]["frame_stride"]
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


class JobSpecError(ValueError):
    """A job spec that cannot be used; the message names each bad field and the fix."""


def load_job_spec(source: str | Path | dict, where: str | None = None) -> JobSpec:
    """Parse and validate a job spec from a YAML/JSON file, YAML text or a dict.

    A Path is always a file; a str is a file when it names one (no newline, a .yaml/.yml/.json
    suffix or an existing file), else YAML text; `where` names text read elsewhere (a URL) in
    messages. Every failure is a JobSpecError that names the file and what is wrong with it.
    """
    if isinstance(source, dict):
        return _validated(source, where or "job spec")
    text = str(source)
    if where is None and (isinstance(source, Path) or _names_a_file(text)):
        where = text
        text = _read_spec_file(Path(text))
    where = where or "job spec"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise JobSpecError(
            f"{where} is not valid YAML ({_yaml_problem(exc)}); a job spec is a YAML mapping (`tv3s schema job`)"
        ) from exc
    if not isinstance(data, dict):
        raise JobSpecError(
            f"{where} is not a job spec: it holds {type(data).__name__ if data is not None else 'nothing'} where "
            "a mapping of the fields name, inputs, model, output is expected (`tv3s schema job` lists them)"
        )
    return _validated(data, where)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What and where, on one line (PyYAML's own text spans several, with a caret)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def _names_a_file(text: str) -> bool:
    return "\n" not in text and (Path(text).suffix.lower() in (".yaml", ".yml", ".json") or Path(text).is_file())


def _read_spec_file(path: Path) -> str:
    """The text of a spec file; a missing, unreadable or binary file said plainly."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise JobSpecError(f"{path}: no such file; pass the path of a job spec (YAML), e.g. job.yaml") from None
    except IsADirectoryError:
        raise JobSpecError(f"{path} is a folder; pass the path of a job spec file (YAML), e.g. job.yaml") from None
    except OSError as exc:
        raise JobSpecError(f"cannot read the job spec {path} ({exc.strerror or exc}); check its permissions") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JobSpecError(f"{path} is not a text file; a job spec is YAML text (`tv3s schema job`)") from None


def _validated(data: dict, where: str) -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise JobSpecError(f"{where} is invalid:\n{_explain(exc)}") from exc


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {field}: unknown field (check the spelling; `tv3s schema job` lists the fields)")
        elif err["type"] == "missing":
            lines.append(f"  {field}: required")
        else:
            lines.append(f"  {field}: {err['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def job_json_schema() -> dict:
    return JobSpec.model_json_schema()
