"""Bad frames get clear errors; small frames are handled."""

from __future__ import annotations

import numpy as np
import pytest

from ..support.fixtures import fixture_frames


def test_bad_frames(small_model):
    good = fixture_frames("tv3s-parity-small")[:1]
    with pytest.raises(TypeError, match="uint8"):
        small_model.predict_stream(good.astype(np.float32))
    with pytest.raises(ValueError, match=r"pass frames\[None\]"):
        small_model.predict_stream(good[0])
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        small_model.predict_clip(np.zeros((1, 64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        small_model.predict_stream(np.zeros((1, 16, 64, 3), np.uint8))
    with pytest.raises(TypeError, match="numpy"):
        small_model.predict_stream(good.tolist())
    with pytest.raises(ValueError, match="empty"):
        small_model.predict_stream(good[:0])


@pytest.mark.parametrize("hw", [(32, 32), (33, 97), (164, 164)])
def test_small_frames_are_handled(small_model, hw):
    frames = np.full((2, *hw, 3), 100, np.uint8)
    logits, _ = small_model.predict_stream(frames)
    assert logits.shape == (2, 7, -(-hw[0] // 4), -(-hw[1] // 4)) and np.isfinite(logits).all()
    assert np.isfinite(small_model.predict_clip(frames)).all()


@pytest.mark.parametrize("hw", [(32, 40), (101, 77)])
def test_small_and_odd_frames_with_swin(hw):
    """Swin pads every stage to whole 7x7 windows; small frames work as for MiT."""
    import torch

    from tv3s.model import build_model

    from ..support.fixtures import fixture_config

    torch.manual_seed(0)
    model = build_model(fixture_config("tv3s-parity-swin-small")["model"])
    frames = np.random.default_rng(1).integers(0, 256, size=(2, *hw, 3), dtype=np.uint8)
    stream, _ = model.predict_stream(frames)
    assert stream.shape == (2, 7, -(-hw[0] // 4), -(-hw[1] // 4)) and np.isfinite(stream).all()
