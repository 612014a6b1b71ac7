"""Scoring a model on held-out synthetic videos per mode."""

from __future__ import annotations

import numpy as np

from tv3s.pipeline.synthetic.heldout import evaluate_modes, predict_labels


def test_modes_score_and_agree_with_direct_calls(small_model):
    results = evaluate_modes(small_model, seeds=[5], frames=18, height=64, width=96)
    assert set(results) == {"stream", "clip", "single"}
    for r in results.values():
        assert 0.0 <= r["mIoU"] <= 1.0 and r["frames"] == 18 and r["windows_8"] > 0
    from tv3s.pipeline.synthetic.scenes import render_scene

    frames, _ = render_scene(5, 3, 64, 96)
    single = predict_labels(small_model, frames, "single")
    first = predict_labels(small_model, frames[:1], "stream")
    assert np.array_equal(single[0], first[0])  # frame 0 has no past in either mode
