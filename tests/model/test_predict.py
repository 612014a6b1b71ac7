"""Chunk bookkeeping across model calls, checked with the real (fixture) model.

However a video is cut into chunks, the logits must equal one call over the whole video:
the stream state is threaded through, and clip mode gets the 9 frames of history it needs.
"""

from __future__ import annotations

import numpy as np
import pytest

from tv3s.model.predict import predict_chunks


def video(n: int = 14, h: int = 64, w: int = 96) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def chunked(frames: np.ndarray, size: int) -> list[np.ndarray]:
    return [frames[i : i + size] for i in range(0, len(frames), size)]


@pytest.mark.parametrize("chunk", [1, 4, 10, 14])
def test_stream_chunks_equal_one_call(small_model, chunk):
    frames = video()
    whole, _ = small_model.predict_stream(frames)
    out = list(predict_chunks(small_model, chunked(frames, chunk), "stream"))
    assert np.array_equal(np.concatenate([c.frames for c in out]), frames)
    np.testing.assert_allclose(np.concatenate([c.logits for c in out]), whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk", [1, 4, 5, 14])
def test_clip_chunks_equal_one_call(small_model, chunk):
    frames = video()
    whole = small_model.predict_clip(frames)
    out = list(predict_chunks(small_model, chunked(frames, chunk), "clip"))
    assert np.array_equal(np.concatenate([c.frames for c in out]), frames)
    np.testing.assert_allclose(np.concatenate([c.logits for c in out]), whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk", [2, 5])
def test_city_head_early_frames_are_predicted_in_stream_mode(chunk):
    """The city head's clip output for frames 0-2 is all zeros: those frames get stream predictions."""
    from tv3s.model import build_model_from_checkpoint

    from ..support.fixtures import fixture_dir

    model = build_model_from_checkpoint(
        fixture_dir("tv3s-parity-city-small") / "checkpoint.pth", head_variant="TV3SHead_shift_city"
    )
    frames = video(6)
    out = list(predict_chunks(model, chunked(frames, chunk), "clip"))
    assert sum((c.by_stream for c in out), ()) == (0, 1, 2)
    logits = np.concatenate([c.logits for c in out])
    stream, _ = model.predict_stream(frames[:3])
    np.testing.assert_allclose(logits[:3], stream, atol=1e-5, rtol=0)
    np.testing.assert_allclose(logits[3:], model.predict_clip(frames)[3:], atol=1e-5, rtol=0)
    assert all(np.abs(lg).max() > 0 for lg in logits)


@pytest.mark.parametrize("mode", ["stream", "clip"])
def test_on_device_logits_are_the_same_numbers(mode):
    """Workers keep logits on the model's device (label maps are made there): same values as numpy,
    also where the city head's early frames are filled in from a stream prediction."""
    import torch

    from tv3s.model import build_model_from_checkpoint
    from tv3s.model.predict import predict_step

    from ..support.fixtures import fixture_dir

    model = build_model_from_checkpoint(
        fixture_dir("tv3s-parity-city-small") / "checkpoint.pth", head_variant="TV3SHead_shift_city"
    )
    frames = video(6)
    host, carried_host = predict_step(model, frames, mode)
    device, carried_device = predict_step(model, frames, mode, on_device=True)
    assert isinstance(device.logits, torch.Tensor) and device.logits.device == model.device
    assert np.array_equal(device.logits.cpu().numpy(), host.logits)
    assert device.by_stream == host.by_stream
    batch, _ = model.predict_stream_batch([frames, frames[::-1].copy()], [None, None], on_device=True)
    assert np.array_equal(
        batch[0].cpu().numpy(), model.predict_stream_batch([frames, frames[::-1].copy()], [None, None])[0][0]
    )


def test_unknown_mode(small_model):
    with pytest.raises(ValueError, match="mode"):
        predict_chunks(small_model, [], "batch")
