"""Label one chain: read its units in order, run the model carrying the state, commit each unit.

This is what a Ray actor runs, and it is plain Python so it can be tested (and crashed)
without Ray. Exactly once and resumable: every unit is committed through the outputs'
commit protocol with its rows, its errors and (every `checkpoint_every` units) the
`ResumePoint` after it. Processing a chain first asks the output what is committed,
continues from the latest resume point at or before that (re-running, without
committing, the few units after it), and skips what is done, so a chain re-queued after
a lost actor, node or driver produces exactly the rows an uninterrupted pass would have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from ..model.predict import Carried, Chunk, StepRequest, predict_steps
from ..pipeline.ingest.chunks import CursorState, FrameChunk, FrameOrigin, UnitEnd, iter_units
from ..pipeline.ingest.fetch import ErrorSink
from ..pipeline.ingest.resize import ResizeRule
from ..pipeline.outputs.manifest import FrameSource, ManifestWriter, RunInfo, VideoLabeler, frame_row
from ..pipeline.outputs.masks import NOT_FINITE, label_dtype, labels_on_device
from ..pipeline.storage import Store, redact_url
from ..schemas.errors import ErrorKind, InputError
from ..schemas.manifest import FrameRow, ResetReason, TemporalState
from .finishing import Finisher, HostCopy
from .plan import Chain, Unit, unit_number
from .resume_point import ResumePoint, ResumePointError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ChainOutcome:
    """What processing a chain did (for progress and the job summary)."""

    chain_id: str
    video_id: str
    units_committed: int = 0
    units_already_done: int = 0
    units_replayed: int = 0  # re-run without committing to rebuild the state
    frames: int = 0  # frames labeled and committed by this call
    errors: int = 0
    resumed_from: int | None = None  # unit whose resume point this call started from
    seconds: float = 0.0
    cancelled: bool = False


@dataclass(frozen=True)
class WorkerOptions:
    mode: str = "stream"
    chunk_frames: int = 8
    prefetch_chunks: int = 2
    checkpoint_every: int = 1
    frames_per_unit: int = 64
    resize: ResizeRule = ResizeRule()
    autocast: torch.dtype | None = None  # bf16/fp16 on CUDA
    stride: int = 1  # every Nth frame
    row_threads: int = 1  # threads building frame rows (statistics, mask PNGs) beside the model


@dataclass
class _ChainRead:
    """Where labeling one chain stands (mutable; owned by that chain's generator)."""

    commit_ids: frozenset[int]  # units this call commits (the rest are re-run or warm-up)
    fps: dict[int, float | None]  # frame rate by sample index, for timestamps
    units: tuple[Unit, ...] = ()  # units to read, in order
    warmup_ids: frozenset[int] = frozenset()
    carried: Carried = None  # what the last chunk left for the next one
    cursor: CursorState | None = None  # where a resumed read continues
    labeler: VideoLabeler | None = None
    warmed: bool = False  # the state began with a warm-up: rows say so
    warming: bool = False
    first_chunk: bool = True
    restart: bool = False  # the model failed on the last chunk: the next one starts a fresh state
    since_checkpoint: int = 0
    in_flight: _Predicted | None = None  # the last predicted chunk, its label maps on their way out
    rows: list[Future[FrameRow]] = field(default_factory=list)  # of the unit being read
    errors: list[InputError] = field(default_factory=list)


@dataclass(frozen=True)
class _Predicted:
    """A predicted chunk: where its frames came from, and its label maps (and, if any of its
    frames is committed, its logits) being copied out while the model runs the next chunk."""

    unit: int
    sources: tuple[FrameSource, ...]
    copy: HostCopy


# What the model may raise on one input (frames it cannot take, a numerical failure): recorded
# against the video. Anything else (TypeError, AttributeError, KeyError, ...) is a bug of the
# code and fails the chain, which the driver reports with the real exception.
INPUT_FAILURES = (ValueError, RuntimeError, ArithmeticError)


class FrameFailure(Exception):
    """Thrown into a chain's generator in place of a prediction the model could not make."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


def _failure_record(chain: Chain, chunk: FrameChunk, cause: BaseException) -> InputError:
    first, last = chunk.frame_index, chunk.frame_index + (len(chunk.frames) - 1) * chunk.stride
    origin = chunk.sources[0]
    detail = str(cause).splitlines()[0] if str(cause) else ""
    return InputError(
        kind=ErrorKind.model_error,
        stage="model",
        url=redact_url(origin.url),
        member=origin.member,
        video_id=chain.video_id,
        segment_index=origin.sample_index if chain.sample_type == "segment" else None,
        frame_index=first,
        message=f"frames {first}..{last} ({chunk.source_size[0]}x{chunk.source_size[1]}) could not be labelled: "
        f"{type(cause).__name__}: {detail}; the stream state restarts after them",
        hint="check these frames (size, content); if every frame fails, report it with this message",
    )


# A chain's labeling: yields the next chunk to predict, is sent back its prediction.
ChainSteps = Generator[StepRequest, tuple[Chunk, Carried], None]


class ChainWorker:
    """One model, labeling chains one after the other (an actor holds one of these)."""

    def __init__(self, model, run: RunInfo, writer: ManifestWriter, store: Store, options: WorkerOptions) -> None:
        self.model, self.run, self.writer, self.store, self.options = model, run, writer, store, options
        self.frames_done = 0  # over the worker's life, for metrics
        self.seconds_busy = 0.0
        self._finisher: Finisher | None = None  # during a process_many call

    def process(self, chain: Chain, should_stop: Callable[[], bool] = lambda: False) -> ChainOutcome:
        return self.process_many([chain], should_stop)[0]

    def process_many(
        self, chains: Sequence[Chain], should_stop: Callable[[], bool] = lambda: False
    ) -> list[ChainOutcome]:
        """Label several chains side by side: in stream mode, their chunks of one shape go through
        the model in one batched pass, each video with its own state (one chain: no batching)."""
        started = time.perf_counter()
        outcomes = [ChainOutcome(chain.id, chain.video_id) for chain in chains]
        # which labelling of each video's content the chain continues or starts (see ManifestWriter.labelling)
        chains = [dataclasses.replace(c, content=self.writer.labelling(c.video_id, c.content)) for c in chains]
        steps = {}
        for k, (chain, outcome) in enumerate(zip(chains, outcomes)):
            done = self.writer.committed_units(chain.video_id, chain.content)
            outcome.units_already_done = sum(u.index in done for u in chain.units)
            if any(u.index not in done for u in chain.units):
                steps[k] = self._label(chain, done, outcome, should_stop)
        opts = self.options
        with Finisher(opts.row_threads, max_rows=4 * opts.row_threads + opts.chunk_frames) as finisher:
            self._finisher = finisher
            try:
                self._drive(steps)
            finally:
                self._finisher = None
        for chain, outcome in zip(chains, outcomes):
            if not outcome.cancelled:
                self._finalize(chain)
            outcome.seconds = time.perf_counter() - started
        self.seconds_busy += time.perf_counter() - started
        return outcomes

    def _drive(self, steps: dict[int, ChainSteps]) -> None:
        """Run the chains' generators, answering their predict requests (batched where possible)."""
        pending: dict[int, tuple[ChainSteps, StepRequest]] = {}
        for key, gen in steps.items():
            with contextlib.suppress(StopIteration):
                pending[key] = (gen, next(gen))
        mode = self.options.mode
        while pending:
            groups: dict = {}
            for key, (_, request) in pending.items():
                groups.setdefault(request.frames.shape if mode == "stream" else key, []).append(key)
            for keys in groups.values():
                answers = self._predict([pending[k][1] for k in keys])
                for key, answer in zip(keys, answers):
                    gen = pending[key][0]
                    try:
                        step = gen.throw(answer) if isinstance(answer, FrameFailure) else gen.send(answer)
                        pending[key] = (gen, step)
                    except StopIteration:
                        del pending[key]

    def _predict(self, requests: list[StepRequest]) -> list[tuple[Chunk, Carried] | FrameFailure]:
        """The model's answers; a chunk the model fails on gets a FrameFailure instead, and when a
        batch fails each video's chunk is tried alone so the others still get theirs."""
        try:
            with _autocast(self.model, self.options.autocast):
                return predict_steps(self.model, requests, self.options.mode, on_device=True)
        except INPUT_FAILURES as exc:
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                raise  # the device's limit, not the input's: the chain is retried
            if len(requests) == 1:
                log.warning("the model failed on a chunk: %s: %s", type(exc).__name__, exc)
                return [FrameFailure(exc)]
            return [answer for r in requests for answer in self._predict([r])]

    # ------------------------------------------------------------------ one chain
    def _label(
        self, chain: Chain, done: set[int], outcome: ChainOutcome, should_stop: Callable[[], bool]
    ) -> ChainSteps:
        """One chain as a generator: yields a StepRequest per chunk, is sent (Chunk, Carried) back,
        and commits each unit as it completes (so several chains can share the model)."""
        read = self._start(chain, done, outcome)
        opts = self.options

        def unit_of(row: dict) -> int:
            return unit_number(row["sample_type"], row["index"], opts.frames_per_unit)

        def read_units(on_error: ErrorSink) -> Iterator[FrameChunk | UnitEnd]:
            runs = chain.runs(read.units)
            return iter_units(
                runs, self.store, on_error, unit_of, opts.resize, opts.chunk_frames, read.cursor, stride=opts.stride
            )

        with _prefetched(_with_errors(read_units), opts.prefetch_chunks) as stream:
            for item, errors in stream:
                read.errors.extend(errors)
                if isinstance(item, UnitEnd):
                    self._finish_chunk(read)  # the unit's last chunk: its rows go with the unit
                    self._end_unit(chain, item, read, outcome)
                    if should_stop():
                        outcome.cancelled = True
                        return
                    continue
                if item.reset:  # a warm-up read starts from nothing, on purpose: that reset is the warm-up
                    read.carried, read.warmed = None, read.warming and read.first_chunk
                read.first_chunk = False
                try:
                    result, read.carried = yield StepRequest(item.frames, read.carried)
                except FrameFailure as failure:  # recorded against the video; the chain goes on
                    read.errors.append(_failure_record(chain, item, failure.cause))
                    read.carried, read.restart = None, True
                    continue
                self._finish_chunk(read)  # the chunk before, copied out while this one ran
                read.in_flight = self._start_chunk(chain, item, result, read)
                read.restart = False
        self._finish_chunk(read)

    def _start(self, chain: Chain, done: set[int], outcome: ChainOutcome) -> _ChainRead:
        """Where to start reading the chain: after its latest resume point, or at its start."""
        first_todo = next(u for u in chain.units if u.index not in done)
        start, point = self._resume_point(chain, chain.units.index(first_todo))
        read = _ChainRead(
            commit_ids=frozenset(u.index for u in chain.units) - done,
            fps={r["index"]: r["fps"] for u in chain.warmup + chain.units for r in u.rows},
        )
        if point is not None:
            outcome.resumed_from = point.unit
            read.units, read.carried, read.cursor, read.warmed = (
                chain.units[start:],
                point.carried,
                point.cursor,
                point.warmed_up,
            )
            read.labeler = VideoLabeler(self.run, point.previous_labels)
        else:  # from the chain's start, warm-up units first
            read.units, read.warmed = chain.warmup + chain.units, bool(chain.warmup)
            read.warmup_ids = frozenset(u.index for u in chain.warmup)
            read.labeler = VideoLabeler(self.run)
        read.warming = bool(read.warmup_ids)
        return read

    def _end_unit(self, chain: Chain, end: UnitEnd, read: _ChainRead, outcome: ChainOutcome) -> None:
        """A unit's frames are all in: queue its commit (with a resume point every
        checkpoint_every units), or count the unit as re-run to rebuild the state."""
        if end.unit in read.commit_ids:
            read.since_checkpoint += 1
            point = None
            if read.since_checkpoint >= self.options.checkpoint_every:
                cursor = end.cursor
                if read.restart and not cursor.reset:  # the failed frames' restart, as the reader's own
                    cursor = dataclasses.replace(cursor, reset=True, reason="missing_segment")
                point = ResumePoint(chain.video_id, end.unit, cursor, read.carried, read.labeler.previous, read.warmed)
                read.since_checkpoint = 0
            rows, errors = read.rows, read.errors
            self._finisher.commit(lambda: self._commit_unit(chain, end.unit, rows, errors, point, outcome))
        elif end.unit not in read.warmup_ids:
            outcome.units_replayed += 1
        read.rows, read.errors = [], []

    def _commit_unit(
        self,
        chain: Chain,
        unit: int,
        rows: list[Future[FrameRow]],
        errors: list[InputError],
        point: ResumePoint | None,
        outcome: ChainOutcome,
    ) -> None:
        """One unit's commit, in the finisher's commit thread once its rows are built."""
        built = [row.result() for row in rows]
        blob = None if point is None else point.to_bytes()
        self.writer.commit_units(chain.video_id, unit, unit, built, errors, resume_point=blob, content=chain.content)
        outcome.units_committed += 1
        outcome.frames += len(built)
        outcome.errors += len(errors)
        self.frames_done += len(built)

    def _start_chunk(self, chain: Chain, chunk: FrameChunk, result: Chunk, read: _ChainRead) -> _Predicted:
        """A predicted chunk's label maps, made where the logits are (a GPU resizes 124 class
        planes to 480p in about a millisecond; 2 CPU cores took 124 ms a frame) and copied out
        without waiting; its frames' sources as they stand now (restart and warm-up flags)."""
        unit = unit_number(chain.sample_type, chunk.sources[0].sample_index, self.options.frames_per_unit)
        sources = tuple(self._frame_source(chain, chunk, i, o, unit, read) for i, o in enumerate(chunk.sources))
        with torch.inference_mode():
            logits = result.logits
            size = (chunk.source_size[1], chunk.source_size[0])
            tensors = {"labels": labels_on_device(logits, size), "finite": torch.isfinite(logits).all()}
            if unit in read.commit_ids:  # only the low-resolution logits the statistics need
                tensors["logits"] = logits
        return _Predicted(unit, sources, HostCopy(tensors))

    def _finish_chunk(self, read: _ChainRead) -> None:
        """The rows of the chunk in flight, queued in the finisher's pool; its label maps become
        the previous ones (a frame re-run only to rebuild a state matters only to the next
        frame's agreement)."""
        done, read.in_flight = read.in_flight, None
        if done is None:
            return
        host = done.copy.wait()
        if not host["finite"]:
            raise ValueError(NOT_FINITE)
        labels = host["labels"].astype(label_dtype(self.run.num_classes), copy=False)
        for i, source in enumerate(done.sources):
            if done.unit in read.commit_ids:
                previous = read.labeler.previous_for(source)
                read.rows.append(
                    self._finisher.row(frame_row, self.run, host["logits"][i], labels[i], source, previous)
                )
            read.labeler.remember(labels[i], source)

    @staticmethod
    def _frame_source(
        chain: Chain, chunk: FrameChunk, i: int, origin: FrameOrigin, unit: int, read: _ChainRead
    ) -> FrameSource:
        """Where frame i of a chunk came from and what the model's memory was for it."""
        frame_index = chunk.frame_index + i * chunk.stride
        state, reason = TemporalState.carried, None
        if i == 0 and (chunk.reset or read.restart):
            state, reason = TemporalState.reset, ResetReason(chunk.reset_reason or "missing_segment")
        elif read.warmed:
            state = TemporalState.warmed_up
        rate = read.fps.get(origin.sample_index)
        return FrameSource(
            video_id=chain.video_id,
            unit_index=unit,
            frame_index=frame_index,
            source_url=redact_url(origin.url),
            width=chunk.source_size[0],
            height=chunk.source_size[1],
            source_member=origin.member,
            source_frame_index=origin.position,
            timestamp_s=frame_index / rate if rate else None,
            temporal_state=state,
            state_reset_reason=reason,
            warmup_frames=chain.warmup_frames if state is TemporalState.warmed_up else 0,
            frame_stride=chunk.stride,
        )

    def _finalize(self, chain: Chain) -> None:
        """The video's summary row, once every planned unit is committed (by any chain)."""
        self.writer.finalize_video(
            chain.video_id,
            max(chain.video_units) + 1,
            require_complete=True,
            planned=chain.video_units,
            content=chain.content,
        )

    def _resume_point(self, chain: Chain, position: int) -> tuple[int, ResumePoint | None]:
        """The latest committed resume point before unit `position` of the chain, and where to read from."""
        points = self.writer.resume_points(chain.video_id, chain.content)
        for k in range(position - 1, -1, -1):
            unit = chain.units[k]
            path = points.get((unit.index, unit.index))
            if path is None:
                continue
            try:
                point = ResumePoint.from_bytes(
                    self.writer.output.read(path), f"resume point of {chain.video_id} unit {unit.index}"
                )
            except ResumePointError:
                continue  # an older one, or the chain's start, gives the same result
            return k + 1, point
        return 0, None


@contextlib.contextmanager
def _autocast(model, dtype: torch.dtype | None):
    if dtype is None or model.device.type != "cuda":
        yield
        return
    with torch.autocast("cuda", dtype=dtype):
        yield


def _with_errors(read: Callable[[ErrorSink], Iterator[T]]) -> Iterator[tuple[T, list[InputError]]]:
    """Each item of `read(on_error)` with the input errors reported while it was read.

    The reading runs ahead of the model in another thread (`_prefetched`); errors handed to a
    shared list from there landed in whichever unit the model was then finishing, so a
    damaged segment's error was committed with the unit before it, and again with its own
    unit when a resumed chain read it a second time. Carried with the items, each error
    reaches the unit it was read in.
    """
    errors: list[InputError] = []
    for item in read(errors.append):
        yield item, errors[:]
        errors.clear()


_END = object()


@contextlib.contextmanager
def _prefetched(items: Iterator, depth: int) -> Iterator[Iterator]:
    """Run `items` (reading and decoding) in a thread `depth` items ahead of the consumer, so
    the model never waits on I/O; errors surface in the consumer, and leaving early stops it."""
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="tv3s-decode", daemon=True)
    thread.start()

    def consume() -> Iterator:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    try:
        yield consume()
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                buffer.get_nowait()
        thread.join(timeout=5)
