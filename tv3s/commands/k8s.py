"""`tv3s k8s render job.yaml`: a job spec as a KubeRay RayJob, printed for `kubectl apply -f -`.

Rendering only: nothing here reads a kubeconfig or talks to a cluster, so the output can be
reviewed, committed or piped. The RayJob brings up its own autoscaling Ray cluster and deletes
it when the job ends (see tv3s/jobs/k8s.py for why each field is what it is).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import positive_int

NAME = "k8s"


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..jobs.k8s import DEFAULT_DEADLINE_S, DEFAULT_SECRET

    parser = subparsers.add_parser(
        NAME,
        help="Kubernetes (KubeRay) manifests for jobs",
        description="Manifests for running jobs on Kubernetes with the KubeRay operator; infra/README.md is the guide.",
    )
    commands = parser.add_subparsers(dest="k8s_command", required=True, metavar="COMMAND")
    render = commands.add_parser(
        "render",
        help="print a RayJob for a job spec (pipe it to `kubectl apply -f -`)",
        description="A RayJob that brings up an autoscaling Ray cluster (GPU workers from zero, or CPU workers "
        "with --cpu), runs `tv3s run` on it with the spec embedded, and deletes the cluster when the job ends. "
        "Credentials come from a Secret (--secret), never from the manifest. Applying it again after the "
        "RayJob is gone resumes the job.",
    )
    render.add_argument("spec", metavar="JOB.yaml", help="the job spec (validated here, as `tv3s run` would)")
    render.add_argument(
        "--image",
        metavar="IMG",
        help="the tv3s image built from infra/docker (default: tv3s:VERSION-gpu, or tv3s:VERSION-cpu with --cpu)",
    )
    render.add_argument("--cpu", action="store_true", help="CPU worker pods instead of GPU ones")
    render.add_argument("--namespace", metavar="NS", help="metadata.namespace (default: kubectl's current)")
    render.add_argument(
        "--secret",
        metavar="NAME",
        default=DEFAULT_SECRET,
        help=f"Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default {DEFAULT_SECRET})",
    )
    render.add_argument("--name", metavar="NAME", help="RayJob name (default: tv3s-<job name>, made a valid name)")
    render.add_argument(
        "--deadline",
        type=positive_int,
        metavar="SECONDS",
        default=DEFAULT_DEADLINE_S,
        help=f"activeDeadlineSeconds: fail the RayJob after this long (default {DEFAULT_DEADLINE_S}; "
        "applying it again resumes the job)",
    )
    render.add_argument(
        "--worker-cpus",
        type=positive_int,
        metavar="N",
        help="CPUs per worker pod (default: enough for its actors, at least 4)",
    )
    render.add_argument(
        "--worker-memory",
        metavar="QTY",
        help="memory per worker pod, e.g. 48Gi (default 32Gi for GPU pods, 8Gi for CPU pods)",
    )
    render.add_argument("--out", type=Path, metavar="FILE", help="write the YAML here instead of stdout")
    render.set_defaults(run=run_render)


def run_render(args: argparse.Namespace) -> int:
    from ..jobs.k8s import default_image, render_rayjob, to_yaml
    from ..schemas.job import JobSpecError, load_job_spec

    try:
        spec = load_job_spec(args.spec)
    except JobSpecError as exc:
        print(f"tv3s {NAME} render: error: {exc}", file=sys.stderr)
        return 2
    gpu = not args.cpu
    try:
        rayjob = render_rayjob(
            spec,
            args.image or default_image(gpu),
            gpu,
            args.namespace,
            secret=args.secret,
            name=args.name,
            active_deadline_s=args.deadline,
            worker_cpus=args.worker_cpus,
            worker_memory=args.worker_memory,
        )
    except ValueError as exc:
        print(f"tv3s {NAME} render: error: {exc}", file=sys.stderr)
        return 2
    name = rayjob["metadata"]["name"]
    header = (
        f"RayJob {name} for tv3s job {spec.name} (tv3s k8s render {args.spec}).\n"
        f"Needs the Secret {args.secret} in the namespace (infra/README.md). Follow: kubectl get rayjob {name}\n"
        f"Progress: tv3s status {spec.output}"
    )
    text = to_yaml(rayjob, header)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}: kubectl apply -f {args.out}", file=sys.stderr)
    return 0
