"""The Ray actor: one model on one GPU (or CPU), labeling the chains the driver hands it.

The actor is a thin shell around `ChainWorker`; everything that matters for correctness
is in the worker and the commit protocol, so an actor can die at any instruction. It is
created with `max_restarts=-1`: when its node goes away Ray starts it again elsewhere
(a new constructor: the model is loaded again, no state is kept in the actor), and the
driver re-sends the lost chain, which resumes from its last committed resume point.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from ..model.loading import choose_device, load_model
from ..pipeline.ingest.resize import ResizeRule
from ..pipeline.outputs.manifest import ManifestWriter, RunInfo
from ..pipeline.storage import Store
from ..schemas.job import JobSpec
from .plan import Chain
from .runner import open_output
from .worker import ChainOutcome, ChainWorker, WorkerOptions

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def make_worker(spec: JobSpec, device: torch.device, observer=None) -> ChainWorker:
    """A ChainWorker for the spec (also used without Ray, by tests and benchmarks)."""
    if device.type == "cuda":  # fp32 means fp32: TF32 convolutions drift by ~1e-3 from the reference
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    store = Store(spec.storage_options())
    weights = None if spec.model.checkpoint is None else store.read_all(spec.model.checkpoint)
    model = load_model(weights, spec.model.preset, device)
    model.cuda_graphs = spec.resources.cuda_graphs
    precision = spec.model.precision if device.type == "cuda" else "fp32"
    run = RunInfo.from_model(model, spec.name, spec.model.mode, precision)
    output = open_output(spec)
    options = WorkerOptions(
        mode=spec.model.mode,
        chunk_frames=spec.resources.chunk_frames,
        prefetch_chunks=spec.resources.prefetch_chunks,
        checkpoint_every=spec.state.checkpoint_every,
        frames_per_unit=spec.state.frames_per_unit,
        resize=ResizeRule() if spec.inputs.resize == "official" else ResizeRule(scale=None),
        stride=spec.inputs.frame_stride,
        autocast=AUTOCAST.get(precision),
        # rows' PNGs and statistics beside the model: half the actor's CPUs (decoding has its own
        # thread). Even on a CPU actor, whose model uses every core, that measured 1.02x inline.
        row_threads=max(1, int(spec.resources.cpus_per_actor) // 2),
    )
    writer = ManifestWriter(output, run) if observer is None else ManifestWriter(output, run, observer)
    return ChainWorker(model, run, writer, store, options)


log = logging.getLogger(__name__)
FAULT_PAUSE = "TV3S_FAULT_PAUSE"


def fault_pause(setting: str | None):
    """Fault injection for the failure tests: ``STEP:N:MARKER[:SECONDS]`` makes the first actor that
    reaches commit step STEP for the Nth time create MARKER (holding its node id) and stall there
    (an hour by default), so a test can kill its node, its driver or cancel the job at that exact
    point. Only one actor ever stalls: MARKER is created exclusively."""
    if not setting:
        return None
    step, nth, marker, *seconds = setting.split(":")
    stall = float(seconds[0]) if seconds else 3600.0
    seen = 0

    def observer(reached: str, path: str) -> None:
        nonlocal seen
        if reached != step:
            return
        seen += 1
        if seen != int(nth):
            return
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        import ray

        with os.fdopen(fd, "w") as f:
            f.write(ray.get_runtime_context().get_node_id())
        time.sleep(stall)

    return observer


class LabelActor:
    """Wrapped with ray.remote by the driver (resources come from the job spec).

    The actor is threaded (`progress` answers while `process` runs), and Ray runs its calls
    on whichever of its pool threads is free. Every torch call therefore goes through one
    compute thread of the actor's own: libgomp gives each thread that starts parallel
    regions its own OpenMP team, and with more team threads than CPUs it stops
    spin-waiting between regions, which made the model 1.5x slower on 2 cores (measured:
    12.2 against 18.3 frames/s when calls alternated between two threads).
    """

    def __init__(self, spec_json: str) -> None:
        import ray

        spec = JobSpec.model_validate_json(spec_json)
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tv3s-compute")
        self.device = choose_device(spec.model.device, ray.get_gpu_ids())
        self.worker = self._compute.submit(self._make_worker, spec).result()
        self._lock = threading.Lock()
        self._metrics = _Metrics(spec.name)

    def _make_worker(self, spec: JobSpec) -> ChainWorker:
        torch.set_num_threads(max(1, int(spec.resources.cpus_per_actor)))  # OpenMP's count is per thread
        return make_worker(spec, self.device, fault_pause(os.environ.get(FAULT_PAUSE)))

    def process(self, chains: list[Chain], cancel_marker: str | None = None) -> list[ChainOutcome]:
        """Label the chains side by side (batched when the job asks for it); their outcomes."""
        with self._lock:  # one call at a time; progress() answers meanwhile

            def cancelled() -> bool:
                return cancel_marker is not None and self._exists(cancel_marker)

            before, busy = self.worker.frames_done, self.worker.seconds_busy
            try:
                outcomes = self._compute.submit(self.worker.process_many, chains, cancelled).result()
            except Exception:  # the traceback in the actor's log; the driver records the cause
                log.exception("chains %s failed", ", ".join(c.id for c in chains))
                raise
            self._metrics.record(self.worker.frames_done - before, self.worker.seconds_busy - busy)
            return outcomes

    def progress(self) -> tuple[int, float]:
        """(frames labeled so far, seconds busy): the driver's live progress."""
        return self.worker.frames_done, self.worker.seconds_busy

    def run_info(self) -> RunInfo:
        return self.worker.run

    def _exists(self, url: str) -> bool:
        fs, path = self.worker.store.filesystem(url)
        return fs.exists(path)


class _Metrics:
    """Per-actor frames/s and frame count as Ray metrics (scraped by Prometheus via the dashboard agent)."""

    def __init__(self, job: str) -> None:
        from ray.util.metrics import Counter, Gauge

        tags = {"job": job}
        self.frames = Counter("tv3s_frames_labeled", "frames labeled and committed", tag_keys=("job",))
        self.fps = Gauge("tv3s_actor_frames_per_second", "frames/s of the actor's last chain", tag_keys=("job",))
        self.frames.set_default_tags(tags)
        self.fps.set_default_tags(tags)

    def record(self, frames: int, seconds: float) -> None:
        if frames:
            self.frames.inc(frames)
        if seconds > 0:
            self.fps.set(frames / seconds)
