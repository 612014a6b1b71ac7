"""Both inference modes against golden outputs of the official TV3S code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tv3s.model import build_model, build_model_from_checkpoint, load_checkpoint

from ..support.fixtures import FIXTURE_NAMES, fixture_config, fixture_dir, fixture_frames


def assert_close(actual: np.ndarray, expected: np.ndarray, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    assert actual.shape == expected.shape
    excess = np.abs(actual - expected) - (atol + rtol * np.abs(expected))
    assert excess.max() <= 0, f"max |diff| {np.abs(actual - expected).max():.3g} exceeds tolerance"


@pytest.fixture(scope="module", params=FIXTURE_NAMES)
def fixture_model(request):
    name = request.param
    cfg = fixture_config(name)
    model = build_model(cfg["model"])
    assert sum(p.numel() for p in model.parameters()) == cfg["model"]["num_parameters"]
    load_checkpoint(model, fixture_dir(name) / "checkpoint.pth")
    return name, model


@pytest.mark.parametrize("mode", ["clip", "stream"])
def test_parity(fixture_model, mode):
    name, model = fixture_model
    frames = fixture_frames(name)
    expected = np.load(fixture_dir(name) / f"expected_{mode}.npy")
    out = model.predict_clip(frames) if mode == "clip" else model.predict_stream(frames)[0]
    assert_close(out, expected)


def test_full_resolution_is_bilinear_of_quarter(small_model):
    frames = fixture_frames("tv3s-parity-small")[:2]
    quarter, _ = small_model.predict_stream(frames)
    full, _ = small_model.predict_stream(frames, full_resolution=True)
    ref = F.interpolate(torch.from_numpy(quarter), size=frames.shape[1:3], mode="bilinear", align_corners=False)
    assert full.shape == (2, quarter.shape[1], *frames.shape[1:3])
    np.testing.assert_allclose(full, ref.numpy(), atol=1e-6)


def test_clip_targets_and_offset_match_whole_video(small_model):
    """A long video in pieces: frames t-9..t with an offset give the same clip output."""
    frames = fixture_frames("tv3s-parity-small")
    whole = small_model.predict_clip(frames)
    part = small_model.predict_clip(frames[1:], targets=[9, 10], offset=1)
    np.testing.assert_allclose(part, whole[[10, 11]], atol=1e-5)
    with pytest.raises(ValueError, match="needs frames"):
        small_model.predict_clip(frames[3:], targets=[0], offset=3)


def test_official_forward_matches_clip_mode(small_model):
    """The official protocol (every clip frame encoded again) equals our feature-reusing clip mode."""
    frames = fixture_frames("tv3s-parity-small")
    ours = small_model.predict_clip(frames, targets=[9, 11])
    x = small_model.preprocess(frames)
    with torch.inference_mode():
        official = small_model(torch.stack([x[[0, 3, 6, 9]], x[[2, 5, 8, 11]]])).numpy()
    np.testing.assert_allclose(ours, official, atol=1e-5)


def test_city_clip_early_frames_are_not_predictions():
    name = "tv3s-parity-city-small"
    model = build_model_from_checkpoint(fixture_dir(name) / "checkpoint.pth", head_variant="TV3SHead_shift_city")
    assert [model.clip_has_prediction(t) for t in range(5)] == [False, False, False, True, True]
    out = model.predict_clip(fixture_frames(name)[:4])
    assert not out[:3].any() and out[3].any()


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_build_from_checkpoint_alone(name):
    """Architecture inferred from the state_dict; stream mode (no head-variant ambiguity) matches."""
    model = build_model_from_checkpoint(fixture_dir(name) / "checkpoint.pth")
    assert sum(p.numel() for p in model.parameters()) == fixture_config(name)["model"]["num_parameters"]
    assert model.class_names[0] == "class_0" and model.palette.shape == (model.num_classes, 3)
    frames = fixture_frames(name)[:3]
    expected = np.load(fixture_dir(name) / "expected_stream.npy")[:3]
    assert_close(model.predict_stream(frames)[0], expected)
