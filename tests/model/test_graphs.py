"""Stream steps through StepGraphs' recorded buffers equal plain steps, and states stay values.

On CPU the replay is emulated (the step re-run into the recorded output buffers): the same
buffer discipline as a CUDA graph, which is what can go wrong here (an input not copied in,
an output handed out that the next replay overwrites, a fresh video's state). The capture
itself is checked on a GPU by benchmarks/gpu.py --parity.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from tv3s.model import PRESETS, build_model
from tv3s.model.graphs import StepGraphs, flatten


def tiny_model():
    """MiT-B0, a Mamba head of width 16, two blocks over 4x4 windows shifted by 2 (sub-windows of
    16, 8 and 4 tokens in the shifted layer)."""
    demo = PRESETS["tv3s-demo"]
    head = dataclasses.replace(demo.head, embed_dim=16, window_h=4, window_w=4, shift_size=2, n_mambas=2)
    torch.manual_seed(0)
    return build_model(dataclasses.replace(demo, head=head))


def normalized(model, videos: int, frames: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    clips = rng.integers(0, 256, size=(videos, frames, 64, 64, 3), dtype=np.uint8)
    return torch.stack([model.preprocess(c) for c in clips])


def run(step, frames: torch.Tensor, per_step: int):
    """Every step's logits and state, stepping through `frames` [B, T, 3, H, W]."""
    layers, outs, states = None, [], []
    for start in range(0, frames.shape[1], per_step):
        logits, layers, _ = step(frames[:, start : start + per_step], layers)
        outs.append(logits)
        states.append(layers)
    return outs, states


@torch.inference_mode()
def test_replayed_steps_equal_plain_steps_and_their_states_stay_values():
    model = tiny_model()
    frames = normalized(model, 2, 10, seed=1)  # steps of 3, 3, 3 and 1 frames: the last shape is new

    def plain(part, layers):
        return model._stream_step(part, layers, False)

    graphs = StepGraphs(plain, model._zero_layers, emulate=True)
    expected, expected_states = run(plain, frames, 3)
    got, got_states = run(graphs, frames, 3)
    assert len(graphs._graphs) == 1  # the 3-frame shape, captured at its second step
    for e, g in zip(expected, got):
        assert torch.equal(e, g)
    # every state handed out is still what its step returned, after later replays
    for e, g in zip(expected_states, got_states):
        for a, b in zip(flatten(e), flatten(g), strict=True):
            assert torch.equal(a, b)


@torch.inference_mode()
def test_a_fresh_video_in_a_recorded_graph_starts_from_zeros():
    model = tiny_model()
    frames = normalized(model, 1, 4, seed=2)

    def plain(part, layers):
        return model._stream_step(part, layers, False)

    graphs = StepGraphs(plain, model._zero_layers, emulate=True)
    _, carried, _ = graphs(frames[:, :2], None)
    graphs(frames[:, 2:], carried)  # the shape's second step: captured with a carried state
    fresh, fresh_state, _ = graphs(frames[:, :2], None)  # replayed with no state: zeros go in
    expected, expected_state, _ = plain(frames[:, :2], None)
    assert torch.equal(fresh, expected)
    for a, b in zip(flatten(fresh_state), flatten(expected_state), strict=True):
        assert torch.equal(a, b)


@torch.inference_mode()
def test_shapes_beyond_the_limit_evict_the_oldest_graph():
    model = tiny_model()

    def plain(part, layers):
        return model._stream_step(part, layers, False)

    graphs = StepGraphs(plain, model._zero_layers, emulate=True, max_graphs=2)
    for videos in (1, 2, 3):
        frames = normalized(model, videos, 1, seed=videos)
        for _ in range(2):
            logits, _, _ = graphs(frames, None)
        assert torch.equal(logits, plain(frames, None)[0])
    assert [key[0][0] for key in graphs._graphs] == [2, 3]
