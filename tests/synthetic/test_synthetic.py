"""The synthetic driving scenes: deterministic, and labels that agree with the pixels drawn."""

from __future__ import annotations

import numpy as np
import pytest

from tv3s.pipeline.synthetic.scenes import BUILDING, CAR, ROAD, SKY, TERRAIN, USED_CLASSES, render_scene


@pytest.fixture(scope="module")
def video():
    return render_scene(seed=7, num_frames=12, height=128, width=256)


def test_same_seed_same_video_other_seed_other_video(video):
    frames, labels = video
    again_f, again_l = render_scene(seed=7, num_frames=12, height=128, width=256)
    assert np.array_equal(frames, again_f) and np.array_equal(labels, again_l)
    other_f, other_l = render_scene(seed=8, num_frames=12, height=128, width=256)
    assert not np.array_equal(labels, other_l) and not np.array_equal(frames, other_f)


def test_shapes_and_classes(video):
    frames, labels = video
    assert frames.shape == (12, 128, 256, 3) and frames.dtype == np.uint8
    assert labels.shape == (12, 128, 256) and labels.dtype == np.uint8
    present = set(np.unique(labels).tolist())
    assert present <= set(USED_CLASSES)
    assert {ROAD, SKY, BUILDING, CAR} <= present


def test_labels_agree_with_pixels(video):
    """Each class's pixels have that class's colour signature; no class leaks outside its shapes."""
    frames, labels = video
    f = frames.astype(np.int32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    sky = labels == SKY
    assert (b[sky] > r[sky]).mean() > 0.97  # sky is blue
    terrain = labels == TERRAIN
    if terrain.any():
        assert (g[terrain] > r[terrain]).mean() > 0.95  # grass is green
    road = labels == ROAD
    spread = f.max(-1) - f.min(-1)
    assert (spread[road] < 40).mean() > 0.97  # asphalt and markings are grey/white
    # sky only above the ground: the lowest sky pixel of each frame is above the bottom third
    rows = np.nonzero(sky.any(axis=2))
    assert rows[1].max() < 2 * 128 // 3


def test_scene_moves(video):
    frames, labels = video
    assert (labels[0] != labels[-1]).mean() > 0.02  # camera and objects move
    assert (labels[0] == labels[1]).mean() > 0.8  # but smoothly


def test_too_small_is_refused():
    with pytest.raises(ValueError, match="at least 32x32"):
        render_scene(0, 3, 16, 64)


def test_sidewalk_is_paving_coloured(video):
    from tv3s.pipeline.synthetic.scenes import SIDEWALK

    frames, labels = video
    walk = labels == SIDEWALK
    assert walk.any()
    f = frames.astype(np.int32)
    assert (f[..., 0][walk] > f[..., 2][walk]).mean() > 0.9  # warm grey paving, not blue sky or grey road
