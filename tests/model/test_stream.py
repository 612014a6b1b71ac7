"""Stream mode is exact: any split of a video, resumed from serialised state, equals one pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tv3s.model import StateMismatchError, StreamState, build_model

from ..support.fixtures import fixture_config, fixture_frames


def run_in_chunks(model, frames, sizes):
    state, outs, start = None, [], 0
    for size in sizes:
        logits, state = model.predict_stream(frames[start : start + size], state)
        state = StreamState.from_bytes(state.to_bytes())  # as if moved to another machine
        outs.append(logits)
        start += size
    assert start == len(frames)
    return np.concatenate(outs), state


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[1] * 12, [2] * 6, [5, 5, 2], [12], [3, 1, 8]])
def test_any_split_equals_one_pass(small_model, sizes):
    frames = fixture_frames("tv3s-parity-small")
    whole, final = small_model.predict_stream(frames)
    pieces, resumed = run_in_chunks(small_model, frames, sizes)
    np.testing.assert_allclose(pieces, whole, atol=1e-5, rtol=0)
    assert resumed.frames_seen == final.frames_seen == 12
    for a, b in zip(resumed.layers, final.layers):
        for sa, sb in zip(a, b):
            torch.testing.assert_close(sa.ssm, sb.ssm, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(sa.conv, sb.conv, atol=1e-5, rtol=1e-5)


def test_frames_per_step_does_not_change_results(small_model):
    frames = fixture_frames("tv3s-parity-small")[:7]
    a, _ = small_model.predict_stream(frames, frames_per_step=1)
    b, _ = small_model.predict_stream(frames, frames_per_step=7)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("hw", [(128, 160), (96, 352), (200, 232)])
def test_stream_equals_prefix_as_one_clip(hw):
    """The definition of stream mode, checked directly: frame t = head on frames [0..t] from zero state.

    Sizes include grids with one window per side (the official code crashes there; we treat
    the shifted layer's border sub-windows as separate sequences, as it does for larger grids).
    """
    torch.manual_seed(0)
    model = build_model(fixture_config("tv3s-parity-small")["model"])
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(5, *hw, 3), dtype=np.uint8)
    stream, _ = model.predict_stream(frames, frames_per_step=2)
    head = model.decode_head
    with torch.inference_mode():
        fused = model._fused(model.preprocess(frames))
        quarter = tuple(fused.shape[-2:])
        geom = head.geometry(quarter)
        grid = head.to_grid(fused, geom)
        for t in range(len(frames)):
            tokens, _ = head.temporal(grid[None, : t + 1], geom)
            ref = head.classify(tokens[:, -1], quarter).numpy()
            np.testing.assert_allclose(stream[t], ref[0], atol=1e-5, rtol=0)


def test_state_is_checked_against_model_and_resolution(small_model):
    frames = fixture_frames("tv3s-parity-small")
    _, state = small_model.predict_stream(frames[:2])
    with pytest.raises(StateMismatchError, match="frame size cannot change"):
        small_model.predict_stream(frames[2:4, :224], state)
    other = build_model(fixture_config("tv3s-parity-small")["model"])
    with pytest.raises(StateMismatchError, match="other weights"):
        other.predict_stream(frames[2:4], state)
    swin_cfg = fixture_config("tv3s-parity-swin-small")["model"]
    with torch.device("meta"):
        swin = build_model(swin_cfg)
    with pytest.raises(StateMismatchError, match="another architecture"):
        swin._check_state(state, (256, 320))
    with pytest.raises(StateMismatchError, match="not a TV3S stream state"):
        StreamState.from_bytes(b"definitely not safetensors")
    with pytest.raises(TypeError, match="StreamState"):
        small_model.predict_stream(frames[:1], state={"not": "a state"})


def test_state_bytes_carry_identity(small_model):
    frames = fixture_frames("tv3s-parity-small")[:3]
    _, state = small_model.predict_stream(frames)
    back = StreamState.from_bytes(state.to_bytes())
    assert back.input_hw == (256, 320) and back.grid_hw == (40, 40) and back.frames_seen == 3
    assert back.weights_digest == small_model.weights_digest()
    assert back.model_fingerprint == small_model.cfg.fingerprint()
    assert len(back.layers) == small_model.cfg.head.n_mambas


def test_bf16_autocast_runs_and_keeps_the_state_in_fp32(small_model):
    """Mixed precision (as jobs run it on GPUs) must not break the windowed scatter, and the
    carried SSM state stays fp32 (the scan runs in fp32, as mamba-ssm's kernels do)."""
    frames = fixture_frames("tv3s-parity-small")[:4]
    reference, _ = small_model.predict_stream(frames)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, state = small_model.predict_stream(frames)
    assert {st.ssm.dtype for groups in state.layers for st in groups} == {torch.float32}
    assert (logits.argmax(1) == reference.argmax(1)).mean() > 0.95


def test_videos_batched_in_one_pass_equal_separate_streams(small_model):
    """Each video keeps its own state inside the batch: fresh, carried and mixed starts all match."""
    frames = fixture_frames("tv3s-parity-small")
    a, b = frames[:6], frames[6:12]
    (la, lb), (sa, sb) = small_model.predict_stream_batch([a[:3], b[:3]], [None, None])
    ref_a, ref_sa = small_model.predict_stream(a[:3])
    ref_b, _ = small_model.predict_stream(b[:3])
    np.testing.assert_allclose(la, ref_a, atol=1e-4)
    np.testing.assert_allclose(lb, ref_b, atol=1e-4)
    # video a continues its state, video b starts over, in the same batch
    (la2, lb2), (sa2, _) = small_model.predict_stream_batch([a[3:], b[3:]], [sa, None])
    np.testing.assert_allclose(la2, small_model.predict_stream(a[3:], ref_sa)[0], atol=1e-4)
    np.testing.assert_allclose(lb2, small_model.predict_stream(b[3:])[0], atol=1e-4)
    assert sa2.frames_seen == 6
    # each video's state is its own copy, not a view of the batch's tensors
    rows = {st.conv.shape[0] for groups in sa2.layers for st in groups}
    assert all(st.conv._base is None and st.ssm._base is None for groups in sa2.layers for st in groups), rows
    np.testing.assert_allclose(
        small_model.predict_stream(a[:1], sa2)[0],
        small_model.predict_stream(a[:1], small_model.predict_stream(a)[1])[0],
        atol=1e-4,
    )
    with pytest.raises(ValueError, match="one shape"):
        small_model.predict_stream_batch([a[:2], b[:3]], [None, None])
