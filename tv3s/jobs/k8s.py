"""A job as one self-contained KubeRay RayJob: `tv3s k8s render job.yaml | kubectl apply -f -`.

The RayJob brings up its own autoscaling RayCluster (a head that takes no work and one worker
group that starts at zero pods), submits `tv3s run` to it and deletes the cluster when the job
ends, so a Kubernetes cluster with the KubeRay operator needs no standing Ray cluster. These
are pure functions: nothing here talks to a cluster. Each choice answers a known failure:

* **The spec rides in the head container's environment** (``TV3S_JOB_SPEC``). Ray Jobs runs
  the driver of an entrypoint that asks for no resources on the head node, where it inherits
  the head container's environment. The submitter pod's environment never reaches the driver,
  and ``runtimeEnvYAML`` is pasted by the submitter into a shell command line, where a ``$`` or
  a backquote in a spec value (a key_pattern regex, say) would be expanded.
* **GPU workers scale from zero** only if the autoscaler can plan a pod it has never seen
  (ray-project/kuberay#2071): the group's ``rayStartParams`` say ``num-gpus`` and its container
  has ``nvidia.com/gpu`` limits. (Not also the group's ``resources`` field: KubeRay rejects a
  group that sets resources in both places.)
* **A head restart can leave a RayJob "Running" forever** (ray-project/kuberay#3903):
  ``submissionMode: K8sJobMode``, a bounded ``activeDeadlineSeconds``, ``backoffLimit`` retries
  (each on a fresh cluster), ``shutdownAfterJobFinishes`` and a TTL. Retrying is safe because a
  job resumes from its committed units: a retry or a re-submission labels nothing twice.
* **No credentials**: pods read them from a Secret named here (``envFrom``), never a value.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from .. import __version__
from ..schemas.job import JobSpec

#: The Ray in the images (infra/docker/requirements-gpu.txt pins the same). KubeRay reads it
#: to pick probes (HTTP health checks from Ray 2.53 on, so the image needs no wget).
RAY_VERSION = "2.60.0"
SPEC_ENV = "TV3S_JOB_SPEC"
#: No shell syntax here: KubeRay pastes the entrypoint into the submitter's shell command line.
ENTRYPOINT = f"tv3s run --spec-from-env {SPEC_ENV} --quiet"
DEFAULT_SECRET = "tv3s-s3"
GPU_RESOURCE = "nvidia.com/gpu"
#: KubeRay appends 6 characters to a RayJob's name for its RayCluster, whose names must stay
#: within 53 so that the longest service name ("<cluster>-serve-svc") fits a 63-character label.
MAX_RAYJOB_NAME = 47
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

DEFAULT_DEADLINE_S = 24 * 3600
DEFAULT_BACKOFF_LIMIT = 2
DEFAULT_TTL_S = 600  # keep the finished cluster 10 minutes for `kubectl logs` and the dashboard
HEAD_CPUS, HEAD_MEMORY = "2", "8Gi"  # the driver indexes the inputs and schedules chains on the head
GPU_POD_MIN_CPUS, GPU_POD_MEMORY = 4, "32Gi"  # decoding, prefetch and the CUDA context beside the model
CPU_POD_CPUS, CPU_POD_MEMORY = 4, "8Gi"
#: GPU nodes are commonly tainted so that only pods that ask for GPUs land there.
GPU_TOLERATIONS = ({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},)


def default_image(gpu: bool) -> str:
    """The tag the build commands in infra/README.md give the image of this version."""
    return f"tv3s:{__version__}-{'gpu' if gpu else 'cpu'}"


def rayjob_name(job_name: str) -> str:
    """A RayJob name for a job name: a DNS-1035 label of at most 47 characters, ``tv3s-<name>``.

    Job names may hold upper case and ``. _ =``, which Kubernetes names may not. A name that
    had to be changed or shortened gets 8 hex digits of the original's hash, so two jobs
    whose names differ only there never share (and overwrite) one RayJob.
    """
    slug = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", job_name.lower())).strip("-")
    name = f"tv3s-{slug}" if slug else "tv3s"
    if name == f"tv3s-{job_name}" and len(name) <= MAX_RAYJOB_NAME:
        return name
    digest = hashlib.sha256(job_name.encode()).hexdigest()[:8]
    return f"{name[: MAX_RAYJOB_NAME - len(digest) - 1].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class WorkerShape:
    """The job's worker group: one pod's size, how many actors it holds, how many pods at most."""

    group: str  # "gpu" or "cpu"
    gpus: int
    cpus: int
    memory: str
    actors_per_pod: int
    max_replicas: int


def worker_shape(spec: JobSpec, gpu: bool, cpus: int | None = None, memory: str | None = None) -> WorkerShape:
    """Size the worker pods from ``spec.resources`` so that the autoscaler's plan matches the actors.

    A GPU pod holds ``ceil(gpus_per_actor)`` GPUs (at least one) and as many actors as fit on
    them; a CPU pod holds ``cpus`` CPUs (default 4). ``max_actors_per_node`` caps actors per
    pod either way. ``maxReplicas`` is the pods needed for ``autoscale_max_actors`` (or
    ``actors``) actors. Raises ValueError for a spec that cannot use the chosen kind of pod.
    """
    res = spec.resources
    if gpu:
        if spec.model.device == "cpu" or res.gpus_per_actor == 0:
            raise ValueError(
                "this job runs its model on CPU (model.device: cpu or resources.gpus_per_actor: 0): "
                "render it with --cpu instead of asking for GPU nodes it would not use"
            )
        gpus = max(1, math.ceil(res.gpus_per_actor))
        per_pod = max(1, math.floor(gpus / res.gpus_per_actor + 1e-9))
    else:
        if spec.model.device == "cuda":
            raise ValueError(
                "model.device is cuda: a CPU-only cluster cannot run this job; render it without "
                "--cpu, or set model.device to auto or cpu"
            )
        gpus = 0
        per_pod = max(1, math.floor((cpus or CPU_POD_CPUS) / res.cpus_per_actor + 1e-9))
    if res.max_actors_per_node:
        per_pod = min(per_pod, res.max_actors_per_node)
    needed = math.ceil(per_pod * res.cpus_per_actor - 1e-9)
    if cpus is None:
        cpus = max(GPU_POD_MIN_CPUS if gpu else CPU_POD_CPUS, needed)
    elif cpus < needed:
        raise ValueError(
            f"{cpus} CPUs per pod cannot hold {per_pod} actor(s) of resources.cpus_per_actor "
            f"{res.cpus_per_actor:g}; give at least {needed}"
        )
    max_actors = res.autoscale_max_actors or res.actors
    return WorkerShape(
        group="gpu" if gpu else "cpu",
        gpus=gpus,
        cpus=cpus,
        memory=memory or (GPU_POD_MEMORY if gpu else CPU_POD_MEMORY),
        actors_per_pod=per_pod,
        max_replicas=math.ceil(max_actors / per_pod),
    )


def render_rayjob(
    spec: JobSpec,
    image: str,
    gpu: bool = True,
    namespace: str | None = None,
    *,
    secret: str = DEFAULT_SECRET,
    name: str | None = None,
    active_deadline_s: int = DEFAULT_DEADLINE_S,
    backoff_limit: int = DEFAULT_BACKOFF_LIMIT,
    ttl_after_finished_s: int = DEFAULT_TTL_S,
    worker_cpus: int | None = None,
    worker_memory: str | None = None,
    ray_version: str = RAY_VERSION,
) -> dict[str, Any]:
    """A RayJob (``ray.io/v1``) that runs ``spec`` on its own autoscaling RayCluster.

    ``gpu`` picks the worker group: ``gpu`` pods (``nvidia.com/gpu`` limits, ``num-gpus``) or
    ``cpu`` pods; either starts at zero pods and grows to the ``maxReplicas`` that
    :func:`worker_shape` derives from the spec. ``secret`` names the Secret whose keys
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optionally AWS_ENDPOINT_URL) become the head's
    and workers' environment. ``name`` defaults to :func:`rayjob_name` of the job's name.
    The result is a plain dict: write it with :func:`to_yaml`.
    """
    _check_lifetime(active_deadline_s, backoff_limit, ttl_after_finished_s)
    name = _checked_name(name or rayjob_name(spec.name))
    shape = worker_shape(spec, gpu, worker_cpus, worker_memory)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": _metadata(spec, name, namespace),
        "spec": {
            "entrypoint": ENTRYPOINT,
            "submissionMode": "K8sJobMode",
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": active_deadline_s,
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": ttl_after_finished_s,
            "rayClusterSpec": cluster_spec(
                image, shape, secret, ray_version, head_env=[{"name": SPEC_ENV, "value": _embedded_spec(spec)}]
            ),
        },
    }


def _check_lifetime(active_deadline_s: int, backoff_limit: int, ttl_after_finished_s: int) -> None:
    """Refuse a RayJob that could run forever, or a negative retry count or TTL."""
    if active_deadline_s <= 0:
        raise ValueError(
            "active_deadline_s must be positive: an unbounded RayJob can hang forever after a head "
            "restart (kuberay#3903)"
        )
    if backoff_limit < 0 or ttl_after_finished_s < 0:
        raise ValueError("backoff_limit and ttl_after_finished_s must not be negative")


def _checked_name(name: str) -> str:
    """``name``, if Kubernetes and KubeRay accept it as a RayJob's name (see MAX_RAYJOB_NAME)."""
    if len(name) > MAX_RAYJOB_NAME or not DNS1035_LABEL.fullmatch(name):
        raise ValueError(
            f"RayJob name {name!r} must be a DNS-1035 label (a-z, 0-9, -; starting with a letter) "
            f"of at most {MAX_RAYJOB_NAME} characters"
        )
    return name


def _metadata(spec: JobSpec, name: str, namespace: str | None) -> dict[str, Any]:
    """The RayJob's metadata: tv3s's labels, and the job's name and output as annotations."""
    metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    metadata["labels"] = {
        "app.kubernetes.io/name": "tv3s",
        "app.kubernetes.io/component": "job",
        "app.kubernetes.io/managed-by": "tv3s",
    }
    # The job's own name and output, which label values (no "=", no "/") cannot always hold.
    metadata["annotations"] = {"tv3s/job": spec.name, "tv3s/output": spec.output}
    return metadata


def _embedded_spec(spec: JobSpec) -> str:
    """The job spec as YAML for the head's environment: only the fields it sets, as validated here.

    The image's tv3s fills in its defaults and validates again. (Spelling out every default
    would make an image one field older refuse it.)
    """
    if spec.resources.autoscale_max_actors is None:  # the cluster autoscales: let the job ask it to
        resources = spec.resources.model_copy(update={"autoscale_max_actors": spec.resources.actors})
        resources.model_fields_set.add("autoscale_max_actors")
        spec = spec.model_copy(update={"resources": resources})
        spec.model_fields_set.add("resources")
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_unset=True), sort_keys=False)


def cluster_spec(
    image: str,
    shape: WorkerShape,
    secret: str = DEFAULT_SECRET,
    ray_version: str = RAY_VERSION,
    head_env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A RayClusterSpec: autoscaling head that takes no work, and one worker group starting at zero.

    ``replicas`` is left out on purpose: the autoscaler owns it, and a value here would reset
    a scaled-up group whenever the object is applied again.
    """
    head = _container("ray-head", image, secret, HEAD_CPUS, HEAD_MEMORY, env=head_env)
    head["ports"] = [
        {"containerPort": 6379, "name": "gcs-server"},
        {"containerPort": 8265, "name": "dashboard"},
        {"containerPort": 10001, "name": "client"},
        {"containerPort": 8080, "name": "metrics"},
    ]
    worker = _container("ray-worker", image, secret, str(shape.cpus), shape.memory, shape.gpus)
    pod: dict[str, Any] = {"containers": [worker]}
    start_params: dict[str, str] = {}
    if shape.gpus:
        # kuberay#2071: with zero pods the autoscaler only knows what this spec says.
        start_params["num-gpus"] = str(shape.gpus)
        pod["tolerations"] = [dict(t) for t in GPU_TOLERATIONS]
    return {
        "rayVersion": ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": 60},
        "headGroupSpec": {
            # num-cpus 0: no actor lands on the head, so losing a worker never takes the driver with it.
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": {"spec": {"containers": [head]}},
        },
        "workerGroupSpecs": [
            {
                "groupName": shape.group,
                "minReplicas": 0,
                "maxReplicas": shape.max_replicas,
                "rayStartParams": start_params,
                "template": {"spec": pod},
            }
        ],
    }


def _container(
    name: str, image: str, secret: str, cpus: str, memory: str, gpus: int = 0, env: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A Ray container: credentials from the Secret, requests equal to limits (what Ray sizes itself by)."""
    limits: dict[str, Any] = {"cpu": cpus, "memory": memory}
    if gpus:
        limits[GPU_RESOURCE] = gpus
    container: dict[str, Any] = {"name": name, "image": image}
    if env:
        container["env"] = env
    container["envFrom"] = [{"secretRef": {"name": secret}}]
    container["resources"] = {"requests": dict(limits), "limits": limits}
    return container


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the embedded job spec) as readable ``|`` blocks."""


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_presenter)


def to_yaml(docs: dict[str, Any] | list[dict[str, Any]], header: str | None = None) -> str:
    """YAML for kubectl: one document per object, an optional ``#`` comment header first."""
    items = docs if isinstance(docs, list) else [docs]
    body = yaml.dump_all(items, Dumper=_BlockDumper, sort_keys=False, explicit_start=True, width=120)
    if header:
        body = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + body
    return body
