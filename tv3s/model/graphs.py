"""Stream steps replayed as CUDA graphs: one launch from the host for a whole step.

A B1 stream step of 4 frames at 480p is 388 kernel launches with the Triton kernels (counted
on CPU by benchmarks/launches.py); many are small, so launching them, not running them, can set
the pace (the first GPU figure was launch-bound). A CUDA graph
records a step's kernels once for a fixed shape and replays them with one call. Its inputs
and outputs are fixed buffers, so :class:`StepGraphs` copies each call's frames and state
into the recorded inputs, replays, and returns copies of the recorded outputs: the next
replay overwrites those buffers, and a returned state must stay a value (see state.py).

A graph is captured on the second step of a shape (batch, frames, size, precision,
backend), so the odd shape of a video's last chunk runs eagerly; at most ``max_graphs``
are kept (each holds its own memory pool). A fresh video's state is zeros in the graph,
which gives the same numbers as no state (the scan and the conv add exact zeros).

`emulate=True` replays by re-running the step into the recorded buffers: the same buffer
discipline on any device, which is how the tests check it without a GPU.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import torch

from .mamba import MixerState, StackState

log = logging.getLogger(__name__)

# A stream step: (frames [B, S, 3, H, W], state or None) -> (logits, new state, geometry).
Step = Callable[[torch.Tensor, StackState | None], tuple[torch.Tensor, StackState, Any]]
# The zero state of `videos` videos for a geometry (what no state means).
Zeros = Callable[[int, Any], StackState]


def flatten(layers: StackState) -> list[torch.Tensor]:
    return [t for groups in layers for state in groups for t in state]


def unflatten(tensors: list[torch.Tensor], shape: tuple[int, ...]) -> StackState:
    """The inverse of `flatten`, given the number of window groups per layer."""
    it = iter(tensors)
    return tuple(tuple(MixerState(next(it), next(it)) for _ in range(groups)) for groups in shape)


@dataclass
class _Graph:
    """One recorded step: its input and output buffers and how to replay it."""

    frames: torch.Tensor
    state: list[torch.Tensor]
    logits: torch.Tensor
    new_state: list[torch.Tensor]
    shape: tuple[int, ...]
    geometry: Any
    replay: Callable[[], None]


class StepGraphs:
    """A model's stream step, replayed from CUDA graphs where a shape repeats."""

    def __init__(self, step: Step, zeros: Zeros, emulate: bool = False, max_graphs: int = 4) -> None:
        self._step, self._zeros, self._emulate = step, zeros, emulate
        self._max = max(1, max_graphs)
        self._graphs: collections.OrderedDict[Hashable, _Graph] = collections.OrderedDict()
        self._seen: dict[Hashable, Any] = {}  # shape key -> geometry, from its first (eager) step
        self._failed: set[Hashable] = set()

    def __call__(self, frames: torch.Tensor, layers: StackState | None, key: Hashable = ()) -> tuple:
        """(logits, new state, geometry) of one step, as `step` gives them; `key` adds what else
        decides the recorded kernels (precision, backend, output size)."""
        key = (tuple(frames.shape), frames.dtype, frames.device, _autocast_dtype(frames.device), key)
        graph = self._graphs.get(key)
        if graph is None and key in self._seen and key not in self._failed:
            graph = self._capture(key, frames)
        if graph is None:
            logits, new_layers, geometry = self._step(frames, layers)
            self._seen[key] = geometry
            return logits, new_layers, geometry
        self._graphs.move_to_end(key)
        return self._run(graph, frames, layers)

    def _run(self, graph: _Graph, frames: torch.Tensor, layers: StackState | None) -> tuple:
        graph.frames.copy_(frames)
        if layers is None:
            for t in graph.state:
                t.zero_()
        else:
            for dst, src in zip(graph.state, flatten(layers), strict=True):
                dst.copy_(src)
        graph.replay()
        new_state = [t.clone() for t in graph.new_state]
        return graph.logits.clone(), unflatten(new_state, graph.shape), graph.geometry

    def _capture(self, key: Hashable, frames: torch.Tensor) -> _Graph | None:
        geometry = self._seen[key]
        zeros = self._zeros(frames.shape[0], geometry)
        shape = tuple(len(groups) for groups in zeros)
        static_frames, static_state = frames.clone(), flatten(zeros)

        def step() -> tuple[torch.Tensor, list[torch.Tensor]]:
            with _without_autocast_cache(frames.device):
                logits, new_layers, _ = self._step(static_frames, unflatten(static_state, shape))
            return logits, flatten(new_layers)

        try:
            replay, logits, new_state = (_emulated if self._emulate else _recorded)(step)
        except RuntimeError as exc:  # an op that cannot be captured: this shape stays eager
            log.warning("stream step of shape %s runs without a CUDA graph: %s", key[0], exc)
            self._failed.add(key)
            return None
        while len(self._graphs) >= self._max:
            self._graphs.popitem(last=False)
        graph = _Graph(static_frames, static_state, logits, new_state, shape, geometry, replay)
        self._graphs[key] = graph
        return graph


def _recorded(step: Callable[[], tuple]) -> tuple[Callable[[], None], torch.Tensor, list[torch.Tensor]]:
    """Capture `step` as a CUDA graph, after warm-up runs on a side stream (Triton compiles its
    kernels and cuBLAS makes its workspaces then, neither of which a capture may do)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    # thread_local: the actor's commit thread copies resume points' states to the host meanwhile,
    # which the default ("global") mode would count as an unsafe call during the capture
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        logits, new_state = step()
    return graph.replay, logits, new_state


def _emulated(step: Callable[[], tuple]) -> tuple[Callable[[], None], torch.Tensor, list[torch.Tensor]]:
    """A replay with a graph's buffer semantics on any device: outputs land in fixed buffers."""
    logits, new_state = step()
    outputs = [logits, *new_state]

    def replay() -> None:
        fresh_logits, fresh_state = step()
        for dst, src in zip(outputs, [fresh_logits, *fresh_state], strict=True):
            dst.copy_(src)

    return replay, logits, new_state


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype CUDA autocast casts to here, None when it is off (or not on CUDA)."""
    if device.type != "cuda":
        return None
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        enabled, dtype = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    else:  # the package allows torch >= 2.1
        enabled, dtype = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return dtype if enabled else None


def _without_autocast_cache(device: torch.device):
    """The caller's autocast without its cast cache: a capture must not keep casts that the
    cache frees when the autocast region ends (PyTorch's rule for graphs under autocast)."""
    dtype = _autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype, cache_enabled=False)
