"""The shipped demo checkpoint labels held-out synthetic videos well in stream mode."""

from __future__ import annotations

import pytest

from tv3s import DEMO_CHECKPOINT
from tv3s.model import build_model, build_model_from_checkpoint, load_checkpoint
from tv3s.pipeline.synthetic.heldout import evaluate_modes

pytestmark = pytest.mark.slow

# What the shipped checkpoint must keep reaching on held-out videos (it measures more: see
# the README). Random weights score about 0.05 here.
MIN_STREAM_MIOU = 0.80


def test_demo_checkpoint_is_small_and_loads_strictly():
    assert DEMO_CHECKPOINT.is_file() and DEMO_CHECKPOINT.stat().st_size <= 20 * 2**20
    model = load_checkpoint(build_model("tv3s-demo"), DEMO_CHECKPOINT)
    assert model.class_names[0] == "road" and model.num_classes == 19


def test_demo_checkpoint_labels_held_out_videos_in_stream_mode():
    model = build_model_from_checkpoint(DEMO_CHECKPOINT)
    result = evaluate_modes(model, seeds=[30_000, 30_001], frames=17, height=192, width=384, modes=["stream"])
    assert result["stream"]["mIoU"] >= MIN_STREAM_MIOU, result["stream"]
