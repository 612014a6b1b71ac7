"""The driver: plan the job, hand chains to actors, re-queue what a failure lost, report progress.

Data flows one way: spec -> plan (chains) -> actors (ChainWorker) -> commit protocol ->
manifest. The driver holds no result: everything it knows is in the output, so a driver
that dies loses nothing, and running the job again plans the same chains, skips what is
committed and resumes the rest from their resume points. Job bookkeeping lives beside
the results::

    _tv3s/jobs/<name>/plan.json     spec, its fingerprint, the chains (written once)
    _tv3s/jobs/<name>/status.json   state (running/finished/cancelled/failed) and counts
    _tv3s/jobs/<name>/cancel        present while a cancel is requested (tv3s cancel)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from ..pipeline.ingest.inputs import index_inputs
from ..pipeline.ingest.partitions import partition_loaders
from ..pipeline.ingest.scan_tasks import JOB_RAY_FROM
from ..pipeline.outputs.commit import META_DIR, Output, utc_now
from ..pipeline.outputs.compact import MERGE_EVERY_UNITS, merge_small_files
from ..pipeline.outputs.manifest import ManifestWriter, RunInfo, encode_parquet
from ..pipeline.storage import Store
from ..schemas.errors import ErrorKind, InputError
from ..schemas.job import JobSpec, StateSpec
from .plan import Chain, ChainPlan
from .worker import ChainOutcome

log = logging.getLogger(__name__)
JOBS_DIR = f"{META_DIR}/jobs"
CANCEL_CHECK_S = 2.0  # how often the driver looks for a cancel request
# When a job was handed to a driver started for it (tv3s.submit): a cancel asked since counts.
SUBMITTED_ENV = "TV3S_SUBMITTED_AT"


class JobError(RuntimeError):
    """The job cannot run as specified; the message says what to change."""


ANOTHER_VERSION = (
    "To add this model's labels to the same output as a new model version, give the job another name "
    "(`tv3s label --name {name}-v2`, or `name:` in the spec); or label into another output."
)


def _inputs_unit(errors: list[InputError]) -> str:
    """The unit name of a run's input errors: the same errors (a resume) are one unit, committed once;
    a run over other inputs (a grown archive) commits its own."""
    text = json.dumps(sorted(e.model_dump_json() for e in errors))
    return f"inputs-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def check_recorded(spec: JobSpec, output: Output) -> dict:
    """The plan a job of this name recorded in the output before ({} if none), once it is sure the spec
    labels the same way: another model or other labeling settings under the same name are refused (the
    output would mix labelings). Other inputs are welcome: only what is new or changed is labelled."""
    path = output.full(job_paths(spec.name)["plan"])
    if not output.fs.exists(path):
        return {}
    before = json.loads(output.fs.cat_file(path))
    if _fingerprint_of(before) != spec.fingerprint():
        was = (before.get("spec") or {}).get("model") or {}
        raise JobError(
            f"job {spec.name!r} in {output.url} labelled with other model settings or labeling settings "
            f"(model {was.get('checkpoint') or was.get('preset')}, mode {was.get('mode')}, precision "
            f"{was.get('precision')}; or resize, frame stride, key pattern, state policy). "
            + ANOTHER_VERSION.format(name=spec.name)
        )
    return before


def _fingerprint_of(plan: dict) -> str | None:
    """The fingerprint of a recorded plan's spec as this tv3s computes it (a plan recorded by an older
    tv3s holds a fingerprint of its own, which covered the input list too); the recorded one when the
    spec no longer parses."""
    try:
        return JobSpec.model_validate(plan["spec"]).fingerprint()
    except (KeyError, TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        return plan.get("fingerprint")


@dataclass
class JobSummary:
    name: str
    state: str  # finished | cancelled | failed
    videos: int
    chains: int
    units: int
    units_committed: int = 0  # by this run
    units_already_done: int = 0
    frames: int = 0
    errors: int = 0
    chain_failures: list[str] = field(default_factory=list)
    retries: int = 0
    seconds: float = 0.0
    labeling_seconds: float = 0.0  # from the first actor ready (model loaded) to the last chain done

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def job_paths(name: str) -> dict[str, str]:
    base = f"{JOBS_DIR}/{name}"
    return {
        "plan": f"{base}/plan.json",  # the spec and its fingerprint
        "chains": f"{base}/chains",  # a Parquet table per index partition: a row a chain (video, units, weight)
        "status": f"{base}/status.json",
        "cancel": f"{base}/cancel",
    }


def open_output(spec: JobSpec) -> Output:
    """The job's output location, with the spec's endpoint and retry settings."""
    return Output(spec.output, spec.storage_options())


def job_partitions(
    spec: JobSpec, store: Store, progress: bool = False
) -> tuple[list[Callable[[], pa.Table]], list[InputError]]:
    """The job's index as one loader per partition, and the errors met indexing.

    A partitioned index (`tv3s index --partitions`) is read one partition at a time; shards and
    raw media given directly are indexed here, in memory, as one partition (shards by Ray tasks
    on the job's cluster when this process is connected to one and there are many of them).
    """
    if spec.inputs.index is not None:
        return partition_loaders(spec.inputs.index, store), []
    kwargs = {"key_pattern": spec.inputs.key_pattern} if spec.inputs.key_pattern else {}
    # Connected only if Ray was imported: planning without Ray installed (the GPU machines of
    # benchmarks/device, where Ray is too big to carry) must not need it
    ray = sys.modules.get("ray")
    ray_from = JOB_RAY_FROM if ray is not None and ray.is_initialized() else None
    result = index_inputs(spec.inputs.shards, store, progress=progress, ray_from=ray_from, **kwargs)
    return [lambda: result.table], list(result.errors)


def plan_job(spec: JobSpec, store: Store, progress: bool = False) -> tuple[ChainPlan, list[InputError]]:
    """The whole job's chains in one plan (for tests and tools; a job plans partition by partition)."""
    partitions, errors = job_partitions(spec, store, progress)
    plan, plan_errors = ChainPlan.build(pa.concat_tables([load() for load in partitions]), spec.state)
    return plan, errors + plan_errors


def request_cancel(output: Output, name: str) -> None:
    """Ask the job's driver to stop after the current units: a marker holding when it was asked."""
    path = output.full(job_paths(name)["cancel"])
    output.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    output.fs.pipe_file(path, utc_now().encode())


def _clear_stale_cancel(output: Output, name: str, started: str) -> None:
    """A cancel asked before this run started was for an earlier run: running again resumes a cancelled
    job. One asked since (a job cancelled while it starts) stands."""
    path = output.full(job_paths(name)["cancel"])
    if output.fs.exists(path) and output.fs.cat_file(path).decode(errors="replace") < started:
        output.fs.rm_file(path)


def read_status(output: Output, name: str) -> dict | None:
    path = output.full(job_paths(name)["status"])
    return json.loads(output.fs.cat_file(path)) if output.fs.exists(path) else None


@dataclass
class _PlanTotals:
    """What planning every partition found: counts, planning errors, the videos cut into several chains."""

    videos: int = 0
    chains: int = 0
    units: int = 0
    errors: list[InputError] = field(default_factory=list)
    split_videos: list[str] = field(default_factory=list)

    def add(self, plan: ChainPlan, errors: list[InputError]) -> None:
        self.videos, self.chains, self.units = (
            self.videos + plan.videos,
            self.chains + len(plan),
            self.units + plan.units,
        )
        self.errors += errors
        self.split_videos += plan.split_videos()


def _plans(first: ChainPlan, others: list[Callable[[], pa.Table]], state: StateSpec) -> Iterator[ChainPlan]:
    """The plan already made first, then the other partitions', each made when it is needed."""
    yield first
    del first
    for load in others:
        yield ChainPlan.build(load(), state)[0]


class _Pending:
    """Chains waiting for an actor: partition by partition, each heaviest first, planned when the
    one before is handed out and made into `Chain`s only as they go; chains to retry go first.

    Chains of videos already finished (`finished`: video id -> the content its latest labelling is of;
    a resumed job, or one run again over a grown archive) are never handed out: they are passed to
    `skipped` (video id, units) instead, so a run costs what remains or changed, not what is done.
    """

    def __init__(
        self,
        plans: Iterator[ChainPlan],
        total: int,
        finished: Mapping[str, str] = MappingProxyType({}),
        skipped: Callable[[str, int], None] = lambda video_id, units: None,
    ) -> None:
        self.plans, self.left, self.finished, self.skipped = plans, total, finished, skipped
        self.plan: ChainPlan | None = None
        self.order, self.next = np.zeros(0, np.int64), 0
        self.retries: deque[tuple[Chain, int]] = deque()

    def __len__(self) -> int:
        return len(self.retries) + self.left

    def popleft(self) -> tuple[Chain, int]:
        if self.retries:
            return self.retries.popleft()
        while self.next >= len(self.order):
            self._next_plan()
        k = int(self.order[self.next])
        self.next += 1
        self.left -= 1
        return self.plan.chain(k), 1

    def _next_plan(self) -> None:
        """The next partition's chains, less those of finished videos (counted as skipped)."""
        self.plan = next(self.plans)
        order = self.plan.order()
        if self.finished:
            videos = self.plan.chain_video[order]
            ids = self.plan.video_ids(videos).to_pylist()
            contents = self.plan.content.take(pa.array(videos)).to_pylist()
            done = np.array([self.finished.get(v) == c for v, c in zip(ids, contents)], bool)
            units = (self.plan.stop - self.plan.first)[order]
            for video_id, n in zip(np.array(ids, object)[done].tolist(), units[done].tolist()):
                self.skipped(video_id, n)
            self.left -= int(done.sum())
            order = order[~done]
        self.order, self.next = order, 0

    def __bool__(self) -> bool:
        """Something is left to hand out (finished videos of partitions not yet read are skipped here)."""
        while not self.retries and self.left > 0 and self.next >= len(self.order):
            self._next_plan()
        return bool(self.retries) or self.next < len(self.order)

    def appendleft(self, item: tuple[Chain, int]) -> None:
        self.retries.appendleft(item)


@dataclass
class _Flight:
    """The driver's view of the work in flight (mutable, owned by one `_schedule` call)."""

    pending: _Pending  # (chain, attempt), heaviest first
    idle: deque  # actors free for the next chains
    live: list  # actors not retired by scale-down (their progress is polled)
    running: dict = field(default_factory=dict)  # ObjectRef -> (actor, [(chain, attempt), ...])
    pings: dict = field(default_factory=dict)  # ObjectRef -> actor that lost a chain, until Ray has it back


class _Progress:
    """The job's progress bar, the queue-depth metric and the outcome totals of the summary."""

    def __init__(self, name: str, summary: JobSummary, split_videos: list[str], enabled: bool) -> None:
        from ray.util.metrics import Gauge

        self.summary = summary
        # a video is done when all its chains are: counted for the videos cut into several (split policy)
        self.chains_left = Counter(split_videos)
        self.videos_done = 0
        self.bar = tqdm(total=summary.units, unit="unit", desc=f"job {name}", disable=not enabled)
        self.gauge = Gauge("tv3s_job_queue_depth", "chains waiting for an actor", tag_keys=("job",))
        self.gauge.set_default_tags({"job": name})
        self.started = self.last_report = time.monotonic()
        self.frames_seen = 0
        self.queued = 0

    def queue_depth(self, waiting: int) -> None:
        self.queued = waiting
        self.gauge.set(waiting)

    def count(self, outcome: ChainOutcome) -> None:
        s = self.summary
        s.units_committed += outcome.units_committed
        s.units_already_done += outcome.units_already_done
        s.frames += outcome.frames
        s.errors += outcome.errors
        self.bar.update(outcome.units_committed + outcome.units_already_done)
        if outcome.cancelled:
            s.state = "cancelled"
        elif outcome.video_id not in self.chains_left:
            self.videos_done += 1
        else:
            self.chains_left[outcome.video_id] -= 1
            self.videos_done += self.chains_left[outcome.video_id] == 0

    def show(self, frames: int) -> None:
        self.frames_seen = frames
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.bar.set_postfix(
            {
                "videos": f"{self.videos_done}/{self.summary.videos}",
                "frames": frames,
                "fps": f"{frames / elapsed:.1f}",
                "errors": self.summary.errors,
                "queued": self.queued,
            }
        )

    def close(self, waiting: int) -> None:
        self.queue_depth(waiting)
        self.show(max(self.frames_seen, self.summary.frames))
        self.bar.close()


class JobRunner:
    """Runs one job on the Ray cluster the process is connected to (see `run_job`)."""

    def __init__(
        self, spec: JobSpec, progress: bool = True, poll_s: float = 0.5, started_at: str | None = None
    ) -> None:
        """`started_at`: when this run began (UTC, as `utc_now`; default now): a cancel asked since counts
        for it, an older one was for an earlier run."""
        self.spec, self.progress, self.poll_s = spec, progress, poll_s
        self._started_at = os.environ.get(SUBMITTED_ENV) or started_at or utc_now()
        self.store = Store(spec.storage_options())
        self.output = open_output(spec)
        self.paths = {k: self.output.full(v) for k, v in job_paths(spec.name).items()}
        self._merged_at = 0  # units committed when the tables' small files were last merged
        self._merge: threading.Thread | None = None

    def run(self) -> JobSummary:
        import ray

        started = self._started = time.perf_counter()
        spec = self.spec
        partitions, input_errors = job_partitions(spec, self.store, self.progress)
        totals, last = self._plan_and_record(partitions)
        input_errors += totals.errors
        _clear_stale_cancel(self.output, spec.name, self._started_at)
        summary = JobSummary(spec.name, "running", totals.videos, totals.chains, totals.units)
        self._write_status(summary)
        wanted = spec.resources.autoscale_max_actors or spec.resources.actors
        actors = self._start_actors(min(wanted, max(1, totals.chains)))
        self._request(len(actors))
        try:
            run_info = ray.get(actors[0].run_info.remote())
            self._check_model(run_info)
            ready = time.perf_counter()
            writer = ManifestWriter(self.output, run_info)
            if input_errors:
                writer.commit_errors(_inputs_unit(input_errors), input_errors)
            summary.errors += len(input_errors)
            pending = _Pending(_plans(last, partitions[:-1], spec.state), totals.chains, writer.finished_videos())
            del last  # the generator holds it until its chains are handed out
            self._schedule(pending, totals.split_videos, actors, summary, writer)
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)
            self._request(0)
        if summary.units_committed:
            self._merge_small_files(summary, wait=True)
        summary.seconds = time.perf_counter() - started
        summary.labeling_seconds = time.perf_counter() - ready
        if summary.state == "running":
            summary.state = "failed" if summary.chain_failures else "finished"
        self._write_status(summary)
        return summary

    # ------------------------------------------------------------------ scheduling
    def _schedule(
        self, pending: _Pending, split_videos: list[str], actors: list, summary: JobSummary, writer: ManifestWriter
    ) -> None:
        """Hand chains to idle actors until every chain is done, failed for good, or cancelled."""
        import ray

        flight = _Flight(pending, deque(actors), list(actors))
        progress = _Progress(self.spec.name, summary, split_videos, self.progress)
        pending.skipped = lambda video_id, units: progress.count(
            ChainOutcome(f"{video_id}@done", video_id, units_already_done=units)
        )
        cancel_url = self.output.uri(job_paths(self.spec.name)["cancel"])
        next_cancel_check = 0.0
        try:
            while flight.pending or flight.running:
                if time.monotonic() >= next_cancel_check:  # a HEAD (and LIST) on S3: on a timer, not per call
                    next_cancel_check = time.monotonic() + CANCEL_CHECK_S
                    if self.output.fs.exists(self.paths["cancel"]):
                        self._stop_for_cancel(flight, summary)
                        return
                self._dispatch(flight, cancel_url)
                progress.queue_depth(len(flight.pending))
                waiting = [*flight.running, *flight.pings]
                done, rest = ray.wait(waiting, num_returns=1, timeout=self.poll_s)
                if done and rest:  # drain everything else that has finished too
                    done += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
                for ref in done:
                    if ref in flight.pings:
                        self._ping_answered(ref, flight)
                    else:
                        self._call_returned(ref, flight, summary, writer, progress)
                self._report(flight, summary, progress)
                if not flight.idle and not flight.running and flight.pending and not flight.pings:
                    raise JobError("no actor is left to run the remaining chains")
        finally:
            progress.close(len(flight.pending))

    def _stop_for_cancel(self, flight: _Flight, summary: JobSummary) -> None:
        """A cancel was requested: actors stop after their current unit; wait for them (bounded)."""
        import ray

        summary.state = "cancelled"
        if flight.running:
            ray.wait(list(flight.running), num_returns=len(flight.running), timeout=60)

    def _dispatch(self, flight: _Flight, cancel_url: str) -> None:
        """Every idle actor gets the next chains (`videos_per_batch` of them in stream mode)."""
        per_call = self.spec.resources.videos_per_batch if self.spec.model.mode == "stream" else 1
        while flight.pending and flight.idle:
            batch = []
            while len(batch) < per_call and flight.pending:
                batch.append(flight.pending.popleft())
            actor = flight.idle.popleft()
            flight.running[actor.process.remote([c for c, _ in batch], cancel_url)] = (actor, batch)

    def _ping_answered(self, ref, flight: _Flight) -> None:
        """An actor that lost a chain answered (Ray restarted it): it is idle again; if not yet, ask again."""
        import ray

        actor = flight.pings.pop(ref)
        try:
            ray.get(ref)
            flight.idle.append(actor)
        except Exception:  # still restarting (its node is gone): ask again shortly
            time.sleep(self.poll_s)
            flight.pings[actor.progress.remote()] = actor

    def _call_returned(
        self, ref, flight: _Flight, summary: JobSummary, writer: ManifestWriter, progress: _Progress
    ) -> None:
        """A `process` call ended: count its outcomes, or re-queue its chains if the actor was lost."""
        import ray

        actor, batch = flight.running.pop(ref)
        try:
            outcomes = ray.get(ref)
        except Exception as exc:  # actor, node or worker lost, or a bug: the chains resume
            flight.pings[actor.progress.remote()] = actor
            for chain, attempt in reversed(batch):
                self._retry(chain, attempt, exc, flight.pending, summary, writer)
            return
        if flight.pending or not self.spec.resources.autoscale_max_actors:
            flight.idle.append(actor)
        else:  # nothing left for it: let the autoscaler take its node back
            ray.kill(actor, no_restart=True)
            flight.live.remove(actor)
            self._request(len(flight.running))
        for outcome in outcomes:
            progress.count(outcome)

    def _report(self, flight: _Flight, summary: JobSummary, progress: _Progress) -> None:
        """Every 2 s: live frame counts on the progress bar and the driver's status record; every
        MERGE_EVERY_UNITS units committed, the tables' small files merged."""
        if time.monotonic() - progress.last_report <= 2:
            return
        progress.last_report = time.monotonic()
        if summary.units_committed - self._merged_at >= MERGE_EVERY_UNITS:
            self._merge_small_files(summary)
        if self.progress:
            progress.show(self._live_frames(flight.live, progress.frames_seen))
        summary.seconds = time.perf_counter() - self._started  # so far: `tv3s status` rates from it
        self._write_status(summary)

    def _retry(
        self, chain: Chain, attempt: int, exc: Exception, pending: _Pending, summary: JobSummary, writer: ManifestWriter
    ) -> None:
        reason = failure_reason(exc)
        if attempt < self.spec.retries.chain_attempts:
            log.warning("chain %s lost on attempt %d (%s); resuming it from its last commit", chain.id, attempt, reason)
            summary.retries += 1
            pending.appendleft((chain, attempt + 1))
            return
        summary.chain_failures.append(f"{chain.id}: {reason}")
        record = InputError(
            kind=ErrorKind.model_error,
            stage="model",
            url=self.spec.output,
            video_id=chain.video_id,
            segment_index=chain.units[0].index if chain.sample_type == "segment" else None,
            message=f"chain {chain.id} failed {attempt} times, last: {reason}",
            hint="see the actor logs (ray logs / dashboard); run the job again to resume it",
        )
        writer.commit_errors(f"chain-{chain.id}-failed", [record])
        summary.errors += 1

    def _live_frames(self, actors: list, previous: int) -> int:
        import ray

        refs = [a.progress.remote() for a in actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=1)
        total = 0
        for ref in ready:
            try:
                total += ray.get(ref)[0]
            except Exception:  # an actor being restarted: its count starts again
                continue
        return max(total, previous)

    # ------------------------------------------------------------------ actors
    def _actor_gpus(self) -> float:
        """GPUs per actor: the spec's where the cluster has GPUs, or may get them (autoscaling from zero)."""
        import ray

        res = self.spec.resources
        may_have = ray.cluster_resources().get("GPU", 0) or res.autoscale_max_actors
        return res.gpus_per_actor if may_have and self.spec.model.device != "cpu" else 0

    def _request(self, actors: int) -> None:
        """Tell the autoscaler what the job needs now (actors' bundles), so it adds workers for pending
        actors up to the cap and removes them once released; a no-op without autoscaling."""
        if not self.spec.resources.autoscale_max_actors:
            return
        from ray.autoscaler.sdk import request_resources

        bundle = {"CPU": self.spec.resources.cpus_per_actor}
        if gpus := self._actor_gpus():
            bundle["GPU"] = gpus
        request_resources(bundles=[bundle] * actors)

    def _start_actors(self, count: int) -> list:
        import ray

        from .actor import FAULT_PAUSE, LabelActor

        res = self.spec.resources
        gpus = self._actor_gpus()
        env = {FAULT_PAUSE: os.environ[FAULT_PAUSE]} if os.environ.get(FAULT_PAUSE) else {}
        remote = ray.remote(LabelActor).options(
            num_cpus=res.cpus_per_actor,
            num_gpus=gpus,
            max_restarts=-1,
            max_task_retries=0,
            max_concurrency=2,
            runtime_env={"env_vars": env} if env else None,
        )
        spec_json = self.spec.model_dump_json()
        return [remote.remote(spec_json) for _ in range(count)]

    # ------------------------------------------------------------------ bookkeeping
    def _merge_small_files(self, summary: JobSummary, wait: bool = False) -> None:
        """Merge the tables' small files in a thread of its own (on S3, 500 files take a minute of
        requests: the driver keeps dispatching meanwhile), one merge at a time; `wait` for the last."""
        if self._merge is not None and self._merge.is_alive():
            if not wait:
                return
            self._merge.join()
        self._merged_at = summary.units_committed
        self._merge = threading.Thread(target=self._merge_files, name="tv3s-merge", daemon=True)
        self._merge.start()
        if wait:
            self._merge.join()

    def _merge_files(self) -> None:
        """An optimisation, so a failure (a conflict with another compaction) is logged and the job goes on."""
        try:
            merge_small_files(self.output)
        except Exception as exc:  # deltalake's errors, or the store's: nothing is lost by skipping
            log.warning("merging the tables' small files failed (%s); the job goes on", failure_reason(exc))

    def _plan_and_record(self, partitions: list[Callable[[], pa.Table]]) -> tuple[_PlanTotals, ChainPlan]:
        """Plan every partition once, for the totals and the planning errors, and record the plan (the
        spec, then a chain table per partition). It is recorded at every run: a job run again over a
        grown archive has a new plan, and `tv3s status` counts against the latest. One partition's
        plan is held at a time; the last one's is returned, to be handed out first rather than planned
        again (with one partition, nothing is planned twice)."""
        before = check_recorded(self.spec, self.output)
        totals = _PlanTotals()
        plan = None
        for p, load in enumerate(partitions):
            plan = None  # one partition at a time
            plan = self._plan_partition(p, load(), totals)
        self._drop_stale_chains(len(partitions))
        body = {
            "name": self.spec.name,
            "fingerprint": self.spec.fingerprint(),
            "spec": json.loads(self.spec.model_dump_json()),
            "created_at": before.get("created_at") or utc_now(),
            "planned_at": utc_now(),
            "model_id": before.get("model_id"),
            **{k: getattr(totals, k) for k in ("videos", "chains", "units")},
        }
        self.output.fs.pipe_file(self.paths["plan"], json.dumps(body, indent=1).encode())
        return totals, plan

    def _plan_partition(self, p: int, table: pa.Table, totals: _PlanTotals) -> ChainPlan:
        plan, errors = ChainPlan.build(table, self.spec.state)
        totals.add(plan, errors)
        self.output.fs.makedirs(self.paths["chains"], exist_ok=True)
        self.output.fs.pipe_file(f"{self.paths['chains']}/part-{p:05d}.parquet", encode_parquet(plan.table()))
        return plan

    def _drop_stale_chains(self, partitions: int) -> None:
        """Chain tables of an earlier plan with more partitions than this one."""
        fs, folder = self.output.fs, self.paths["chains"]
        fs.invalidate_cache(folder)
        stale = [f for f in fs.find(folder) if f.rsplit("/", 1)[-1] >= f"part-{partitions:05d}.parquet"]
        if stale:
            fs.rm(stale)

    def _check_model(self, run_info: RunInfo) -> None:
        """The model the actors loaded is the one this job labelled with before (a checkpoint file
        replaced under the same name is another model); the first run records it."""
        plan = json.loads(self.output.fs.cat_file(self.paths["plan"]))
        if plan.get("model_id") not in (None, run_info.model_id):
            raise JobError(
                f"job {self.spec.name!r} in {self.output.url} labelled with model {plan['model_id']}, and "
                f"{self.spec.model.checkpoint or self.spec.model.preset} is now {run_info.model_id}. "
                + ANOTHER_VERSION.format(name=self.spec.name)
            )
        if plan.get("model_id") is None:
            plan["model_id"] = run_info.model_id
            self.output.fs.pipe_file(self.paths["plan"], json.dumps(plan, indent=1).encode())

    def _write_status(self, summary: JobSummary) -> None:
        body = {**asdict(summary), "updated_at": utc_now(), "frames_per_second": summary.frames_per_second}
        self.output.fs.pipe_file(self.paths["status"], json.dumps(body, indent=1).encode())


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_reason(exc: BaseException) -> str:
    """The real cause of a failed actor call, in one line.

    Ray raises a task's exception wrapped in a RayTaskError whose text starts with Ray's own
    (coloured) header, `ray::LabelActor.process() (pid=...)`, which says nothing of the
    cause; its `cause` is the exception the actor raised. A lost actor or node (no cause)
    is named by Ray's exception type and first line.
    """
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("ray::")]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def run_job(
    spec: JobSpec,
    address: str | None = None,
    progress: bool = True,
    num_cpus: int | None = None,
    dashboard: bool = False,
) -> JobSummary:
    """Run `spec` on the Ray cluster at `address`, or on a local Ray started (and stopped) here."""
    import ray

    from .local_ray import start_local_ray, stop_local_ray

    started_at = utc_now()  # before Ray starts: a cancel asked meanwhile is for this run
    local = connected = None
    if not ray.is_initialized():
        if address is None:
            local = start_local_ray(num_cpus, dashboard)
        else:
            connected = ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    try:
        return JobRunner(spec, progress=progress, started_at=started_at).run()
    finally:
        if local is not None:
            stop_local_ray(local)
        elif connected is not None:
            ray.shutdown()
