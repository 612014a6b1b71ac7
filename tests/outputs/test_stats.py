"""Per-frame statistics: exact counts, hand-computed softmax values, and the source-pixel weighting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tv3s.pipeline.outputs import stats
from tv3s.pipeline.outputs.stats import (
    class_histogram,
    confidence_stats,
    frame_stats,
    resize_weights,
    temporal_agreement,
)

from ..support.manifest_data import smooth_logits


def test_histogram_and_agreement_are_exact_counts():
    labels = np.array([[0, 1, 1], [2, 2, 2]], np.uint8)
    assert class_histogram(labels, 4).tolist() == [1, 2, 3, 0]
    previous = np.array([[0, 1, 0], [2, 0, 2]], np.uint8)
    assert temporal_agreement(labels, previous) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="label 2 in a map of 2 classes"):
        class_histogram(labels, 2)
    rng = np.random.default_rng(0)
    for shape, dtype, classes in [((7, 9), np.uint8, 124), ((1, 1), np.uint8, 3), ((5, 6), np.uint16, 300)]:
        odd = rng.integers(0, classes, shape).astype(dtype)  # odd and even pixel counts, 8 and 16 bit
        assert class_histogram(odd, classes).tolist() == np.bincount(odd.ravel(), minlength=classes).tolist()
    with pytest.raises(ValueError, match="cannot be compared"):
        temporal_agreement(labels, previous[:1])


def test_softmax_statistics_by_hand():
    # logits (0, ln 3) everywhere: p = (1/4, 3/4)
    logits = torch.stack([torch.zeros(3, 4), torch.full((3, 4), math.log(3.0))])
    result = confidence_stats(logits, (12, 16))
    assert result.mean_confidence == pytest.approx(0.75, abs=1e-6)
    assert result.mean_entropy == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), abs=1e-6)
    assert result.low_confidence_fraction == 0.0
    assert confidence_stats(logits, (12, 16), threshold=0.8).low_confidence_fraction == pytest.approx(1.0)
    # the left half uncertain (0.5/0.5), the right half sure: half the pixels are low-confidence
    logits[1, :, :2] = 0.0
    assert confidence_stats(logits, (12, 16), threshold=0.6).low_confidence_fraction == pytest.approx(0.5)


@pytest.mark.parametrize("n_in,n_out", [(4, 16), (5, 17), (30, 121), (7, 7), (9, 3)])
def test_resize_weights_reproduce_the_mean_of_a_bilinear_resize(n_in, n_out):
    weights = resize_weights(n_in, n_out)
    assert weights.sum() == pytest.approx(n_out, rel=1e-6)
    values = torch.rand(1, 1, 1, n_in, dtype=torch.float64)
    resized = F.interpolate(values, size=(1, n_out), mode="bilinear", align_corners=False)
    assert float((values[0, 0, 0] * torch.tensor(weights, dtype=torch.float64)).sum()) / n_out == pytest.approx(
        float(resized.mean()), rel=1e-6
    )


def test_means_equal_those_of_the_resized_maps_and_are_close_to_full_resolution_softmax():
    logits = smooth_logits(7, 20, 30, seed=3)
    size = (77, 119)  # not a multiple of the logit grid
    result = confidence_stats(logits, size)
    p = logits.softmax(0)
    maps = torch.stack([p.max(0).values, -(p * p.log()).sum(0)])[None]
    resized = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[0]
    assert result.mean_confidence == pytest.approx(float(resized[0].mean()), abs=1e-5)
    assert result.mean_entropy == pytest.approx(float(resized[1].mean()), abs=1e-5)
    full = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0].softmax(0)
    assert result.mean_confidence == pytest.approx(float(full.max(0).values.mean()), abs=0.02)
    # thresholding the 1/4-resolution cells moves only pixels along class boundaries
    assert result.low_confidence_fraction == pytest.approx(float((full.max(0).values < 0.5).float().mean()), abs=0.05)


def test_row_chunks_do_not_change_the_result(monkeypatch):
    logits = smooth_logits(19, 25, 40, seed=1)
    whole = confidence_stats(logits, (100, 160))
    monkeypatch.setattr(stats, "CHUNK_ELEMENTS", 19 * 40 * 3)  # 3 rows at a time, 9 chunks
    chunked = confidence_stats(logits, (100, 160))
    assert chunked.mean_confidence == pytest.approx(whole.mean_confidence, rel=1e-6)
    assert chunked.mean_entropy == pytest.approx(whole.mean_entropy, rel=1e-6)
    assert chunked.low_confidence_fraction == pytest.approx(whole.low_confidence_fraction, rel=1e-6)


def test_large_frames_sample_rows_of_cells_and_stay_close_to_all_cells(monkeypatch):
    logits = smooth_logits(19, 40, 60, seed=2)
    every = confidence_stats(logits, (160, 240))
    monkeypatch.setattr(stats, "MAX_CELLS", 40 * 60 // 4)
    assert stats.row_stride(40, 60, stats.MAX_CELLS) == 4
    sampled = confidence_stats(logits, (160, 240))
    assert sampled.mean_confidence == pytest.approx(every.mean_confidence, abs=0.01)
    assert sampled.mean_entropy == pytest.approx(every.mean_entropy, abs=0.02)
    assert sampled.low_confidence_fraction == pytest.approx(every.low_confidence_fraction, abs=0.02)
    weights = resize_weights(41, 163)
    assert stats.block_weights(weights, 3).sum() == pytest.approx(163, rel=1e-6)  # every pixel still counts once


def test_124_classes_at_1080p_cost_and_memory_are_bounded():
    logits = torch.randn(124, 270, 480, generator=torch.Generator().manual_seed(0))
    labels = np.zeros((1080, 1920), np.uint8)
    assert stats.row_stride(270, 480) == 4  # 68 of the 270 rows of 480 cells
    assert stats.CHUNK_ELEMENTS // (124 * 480) < 68  # in several chunks of ~2 MB, not 64 MB at once
    result = frame_stats(logits, labels, previous=labels)
    assert result.temporal_agreement == 1.0 and result.class_histogram[0] == 1080 * 1920
    p = logits.softmax(0)
    assert result.confidence.mean_confidence == pytest.approx(float(p.max(0).values.mean()), rel=0.01)
