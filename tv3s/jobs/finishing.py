"""What follows the model, kept off the thread that feeds it: copies out, frame rows, commits.

On a GPU the model's step is queued in well under its run time, so the compute thread
could always be queuing the next one, except that it used to do everything after the model
itself: wait for the logits, build each frame's row (its mask PNG took 15 ms and its
statistics 10 ms on one core here, a 480x853 frame of 124 classes) and commit each unit
(tens of ms, more on S3). Inline, that host work alone capped an actor near 40 frames/s
and left the GPU idle meanwhile. Here:

* :class:`HostCopy` copies a chunk's label maps and logits out through pinned memory
  without waiting: the copy is queued behind the chunk's kernels, and the compute thread
  waits for it one chunk later, while the GPU runs the next chunk.
* :class:`Finisher` builds frame rows in a pool of threads (PIL's zlib and NumPy's
  kernels release the GIL) and commits units in order in a thread of its own, each commit
  waiting for its rows. Both queues are bounded, so a slow store slows the model down
  instead of filling the host's memory.

Results are those of doing it all inline: the rows are pure functions of their inputs,
and commits keep the order and the exactly-once protocol of the inline path. A failed
commit stops every later one (as if the process had died there) and is raised in the
compute thread at its next step.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")


class HostCopy:
    """Device tensors on their way to host memory: started now, waited for with :meth:`wait`.

    On CUDA each tensor is copied into pinned memory with ``non_blocking`` (PyTorch's caching
    host allocator keeps the buffer until the copy is done), and an event marks the end of the
    copies on the current stream. On CPU the tensors already are host memory.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self._event: torch.cuda.Event | None = None
        if not any(t.is_cuda for t in tensors.values()):
            self._host = {k: t.detach() for k, t in tensors.items()}
            return
        self._host = {}
        for name, tensor in tensors.items():
            host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host[name] = host.copy_(tensor.detach(), non_blocking=True)
        self._event = torch.cuda.Event()
        self._event.record()

    def wait(self) -> dict[str, np.ndarray]:
        """The tensors as NumPy arrays, once copied (blocks only until this copy is done)."""
        if self._event is not None:
            self._event.synchronize()
        return {name: tensor.numpy() for name, tensor in self._host.items()}


class Finisher:
    """A pool that builds frame rows and one thread that commits units in submission order.

    ``row_threads`` threads build rows; at most ``max_rows`` rows are in flight (`row` then
    waits for the oldest), and at most ``max_commits`` commits are queued (`commit` waits
    likewise). With ``row_threads=0`` rows and commits run in the caller's thread as they are
    asked for, as before this module: the baseline of benchmarks/finishing.py. Use as a context manager:
    leaving it waits for every queued commit, then raises the first failure (unless the block
    already raised).
    """

    def __init__(self, row_threads: int, max_rows: int, max_commits: int = 2) -> None:
        inline = row_threads < 1
        self._rows = _Inline() if inline else ThreadPoolExecutor(row_threads, thread_name_prefix="tv3s-rows")
        self._commits = _Inline() if inline else ThreadPoolExecutor(1, thread_name_prefix="tv3s-commit")
        self._max_rows, self._max_commits = max(1, max_rows), max(1, max_commits)
        self._rows_in_flight: collections.deque[Future] = collections.deque()
        self._commits_queued: collections.deque[Future] = collections.deque()
        self._failure: BaseException | None = None

    def row(self, build: Callable[..., T], *args) -> Future[T]:
        """Build one frame's row in the pool (`build(*args)`); its future goes to the unit's commit."""
        self.check()
        while len(self._rows_in_flight) >= self._max_rows:
            self._rows_in_flight.popleft().exception()  # wait; a failure surfaces at its commit
        future = self._rows.submit(build, *args)
        self._rows_in_flight.append(future)
        return future

    def commit(self, write: Callable[[], object]) -> None:
        """Run `write` after every commit queued before it; skipped if one of those failed."""
        self.check()
        while len(self._commits_queued) >= self._max_commits:
            self._commits_queued.popleft().exception()
            self.check()
        self._commits_queued.append(self._commits.submit(self._guarded, write))
        self.check()  # at once when inline

    def _guarded(self, write: Callable[[], object]) -> None:
        if self._failure is not None:
            return  # an earlier unit of the queue never committed: nothing after it may
        try:
            write()
        except BaseException as exc:  # also a simulated crash (BaseException) in the tests
            self._failure = exc
            raise

    def check(self) -> None:
        """Raise the first commit failure so far in the calling (compute) thread."""
        if self._failure is not None:
            raise self._failure

    def drain(self) -> None:
        """Wait for every queued commit; raise the first failure."""
        self._wait_for_commits()
        self._rows_in_flight.clear()
        self.check()

    def _wait_for_commits(self) -> None:
        while self._commits_queued:
            self._commits_queued.popleft().exception()

    def __enter__(self) -> Finisher:
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        try:
            if exc is None:
                self.drain()
            else:  # the block's own error wins; commits already queued still run (as inline)
                self._wait_for_commits()
        finally:
            self._rows.shutdown(wait=True, cancel_futures=True)
            self._commits.shutdown(wait=True)


class _Inline:
    """An executor that runs each task at once in the caller's thread (`Finisher` with no threads)."""

    def submit(self, task: Callable[..., T], *args) -> Future[T]:
        future: Future[T] = Future()  # completed here, so callers treat both executors alike
        try:
            future.set_result(task(*args))
        except BaseException as exc:  # as a pool thread would keep it
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Nothing runs later."""
