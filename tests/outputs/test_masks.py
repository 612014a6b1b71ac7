"""Label maps from logits (exactness of the chunked resize), PNG storage and drawing."""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tv3s.pipeline.outputs.masks import (
    _frame_labels,
    class_chunks,
    colorize,
    decode_mask_png,
    encode_mask_png,
    label_dtype,
    labels_on_device,
    logits_to_labels,
    overlay,
    preview_strip,
)
from tv3s.schemas.classes import default_palette


def reference_labels(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """The official rule, done the memory-hungry way: full resize, then argmax."""
    full = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
    return full.argmax(0).numpy()


@contextlib.contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def near_tied_logits(c: int, h: int, w: int, first: int, second: int) -> torch.Tensor:
    """Classes `first` and `second` equal or 1 ulp apart everywhere, all others far below.

    Resizing them must round identically, or argmax flips: the sharpest
    detector of a chunked resize that is not bit-identical to the full one.
    """
    gen = torch.Generator().manual_seed(c * h + w)
    base = torch.randn(h, w, generator=gen) * 3
    logits = torch.full((c, h, w), -10.0)
    logits[first] = base
    nudged = torch.nextafter(base, torch.tensor(float("inf")))
    logits[second] = torch.where(torch.rand(h, w, generator=gen) < 0.5, base, nudged)
    return logits


# (C, h, w, H, W): awkward ratios, an exact x4 ratio, and a real 1080p frame
SHAPES = [
    (20, 17, 23, 67, 91),
    (11, 64, 80, 256, 320),
    (10, 270, 480, 1080, 1920),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "{}c_{}x{}_to_{}x{}".format(*s))
def test_chunked_labels_equal_full_resize_argmax(shape, threads):
    c, h, w, H, W = shape
    logits = torch.randn(c, h, w, generator=torch.Generator().manual_seed(c * h))
    logits[:, : h // 2] = near_tied_logits(c, h, w, 1, c - 2)[:, : h // 2]  # top half: near-ties
    expected = reference_labels(logits, (H, W))
    with torch_threads(threads):
        # budgets giving 4-class chunks (with a merged tail), 5-class chunks, and one chunk
        for max_elements in (H * W * 4, H * W * 5, H * W * c):
            got = logits_to_labels(logits, (H, W), max_elements=max_elements)
            assert got.dtype == np.uint8 and got.shape == (H, W)
            assert np.array_equal(got, expected), f"max_elements={max_elements}"


@pytest.mark.parametrize("threads", [1, 2])
def test_near_ties_across_chunks_match_argmax(threads):
    # class 9 would sit in a 3-class tail chunk if the tail were not merged
    logits = near_tied_logits(11, 17, 23, 1, 9)
    with torch_threads(threads):
        got = logits_to_labels(logits, (67, 91), max_elements=67 * 91 * 4)
        expected = reference_labels(logits, (67, 91))
    assert np.array_equal(got, expected)
    assert set(np.unique(got)) == {1, 9}


@pytest.mark.parametrize("max_elements", [40 * 50 * 4, 40 * 50 * 5, 40 * 50 * 300])
@pytest.mark.parametrize("classes,first,second", [(11, 1, 9), (12, 3, 4), (300, 7, 290)])
def test_the_gpu_argmax_per_chunk_equals_the_plane_loop(classes, first, second, max_elements):
    # the GPU's one `max` per class chunk, forced on CPU, against the loop CPU runs: exact ties,
    # 1-ulp near-ties across and within chunks, and uint8 / int32 indices
    logits = near_tied_logits(classes, 9, 13, first, second)
    logits[:, :3] = 0.0  # exact ties of every class: the first wins
    plane = _frame_labels(logits, 40, 50, max_elements, by_plane=True)
    one_max = _frame_labels(logits, 40, 50, max_elements, by_plane=False)
    assert torch.equal(plane, one_max) and plane.dtype == one_max.dtype
    assert np.array_equal(one_max.numpy(), reference_labels(logits, (40, 50)))


def test_labels_on_device_are_the_labels_before_their_copy():
    logits = torch.randn(2, 300, 4, 5, generator=torch.Generator().manual_seed(8))
    on_device = labels_on_device(logits, (9, 11))
    assert on_device.dtype == torch.int32 and on_device.shape == (2, 9, 11)
    assert np.array_equal(on_device.numpy().astype(np.uint16), logits_to_labels(logits, (9, 11)))


def test_exact_ties_pick_first_class():
    logits = torch.zeros(12, 8, 10)
    got = logits_to_labels(logits, (64, 80), max_elements=64 * 80 * 4)
    assert not got.any()


def test_small_outputs_use_one_resize():
    # H + W <= 128 goes through ATen's channels-last kernel, whose rounding
    # depends on a class's position: of 20 classes, 2 is in the SIMD body and
    # 17 in the scalar tail, but in a chunk of its own both would be in the tail.
    logits = near_tied_logits(20, 10, 10, 2, 17)
    got = logits_to_labels(logits, (40, 40), max_elements=40 * 40 * 4)
    assert np.array_equal(got, reference_labels(logits, (40, 40)))
    # a [1, C, 1, 1] input counts as channels-last, whatever the output size
    for seed in range(4):
        logits = torch.full((20, 1, 1), -10.0)
        logits[[2, 17]] = torch.randn(1, generator=torch.Generator().manual_seed(seed)) * 3
        got = logits_to_labels(logits, (100, 120), max_elements=100 * 120 * 4)
        assert np.array_equal(got, reference_labels(logits, (100, 120)))


def test_video_logits_give_one_map_per_frame():
    logits = torch.randn(3, 7, 16, 20, generator=torch.Generator().manual_seed(6))
    got = logits_to_labels(logits, (64, 80))
    assert got.shape == (3, 64, 80) and got.dtype == np.uint8
    for t in range(3):
        assert np.array_equal(got[t], reference_labels(logits[t], (64, 80)))


def test_many_classes_give_uint16():
    logits = torch.randn(300, 4, 5, generator=torch.Generator().manual_seed(7))
    got = logits_to_labels(logits, (9, 11))
    assert got.dtype == np.uint16
    assert np.array_equal(got, reference_labels(logits, (9, 11)))
    assert label_dtype(255) == np.uint8 and label_dtype(256) == np.uint16


def test_class_chunks_never_leave_a_short_tail():
    assert class_chunks(10, 4) == [slice(0, 4), slice(4, 10)]
    assert class_chunks(11, 4) == [slice(0, 4), slice(4, 11)]  # a 3-class tail is merged
    for c in range(1, 40):
        for k in range(0, 12):
            parts = class_chunks(c, k)
            assert parts[0].start == 0 and parts[-1].stop == c
            assert all(a.stop == b.start for a, b in itertools.pairwise(parts))
            assert len(parts) == 1 or all(p.stop - p.start >= 4 for p in parts)


def test_bad_logits_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        logits_to_labels(torch.full((3, 4, 4), float("nan")), (8, 8))
    with pytest.raises(ValueError, match="floating"):
        logits_to_labels(torch.zeros(3, 4, 4, dtype=torch.int64), (8, 8))
    with pytest.raises(ValueError, match="shape"):
        logits_to_labels(torch.zeros(4, 4), (8, 8))


@pytest.mark.parametrize("dtype,high", [(np.uint8, 256), (np.uint16, 65536)])
def test_png_round_trip_is_exact(dtype, high):
    labels = np.random.default_rng(0).integers(0, high, size=(37, 53)).astype(dtype)
    labels[0, 0], labels[-1, -1] = 0, high - 1
    data = encode_mask_png(labels)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = decode_mask_png(data)
    assert back.dtype == dtype and np.array_equal(back, labels)


def test_png_rejects_non_label_input():
    with pytest.raises(ValueError, match="uint8 or uint16"):
        encode_mask_png(np.zeros((4, 4), np.int32))
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    with pytest.raises(ValueError, match="not a label map"):
        decode_mask_png(buf.getvalue())


def test_palette_is_deterministic_and_distinct():
    p = default_palette(300)
    assert p.shape == (300, 3) and p.dtype == np.uint8
    assert np.array_equal(p, default_palette(300))
    assert len({tuple(c) for c in p}) == 300
    assert np.array_equal(default_palette(5), p[:5])


def test_colorize_and_overlay():
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    assert np.array_equal(colorize(labels, palette)[1, 0], [0, 0, 255])
    frame = np.full((2, 2, 3), 100, np.uint8)
    out = overlay(frame, labels, palette, alpha=0.5)
    assert out.dtype == np.uint8
    assert out[0, 1].tolist() == [178, 50, 50]  # (100 + 255) / 2 rounded, 100 / 2
    assert np.array_equal(overlay(frame, labels, palette, alpha=0.0), frame)
    with pytest.raises(ValueError, match="no colour"):
        colorize(np.array([[3]], np.uint8), palette)


def test_preview_strip_layout():
    frames = [np.full((60, 80, 3), i, np.uint8) for i in range(20)]
    labels = [np.zeros((60, 80), np.uint8) for _ in range(20)]
    sheet = preview_strip(frames, labels, default_palette(2), max_frames=4, tile_width=40)
    assert sheet.dtype == np.uint8 and sheet.shape == (4 * 30, 2 * 40, 3)
    # evenly spaced picks include the first and the last frame
    assert sheet[0, 0, 0] == 0 and sheet[-1, 0, 0] == 19
    one = preview_strip(frames[:1], labels[:1], default_palette(2), tile_width=80)
    assert one.shape == (60, 160, 3)
