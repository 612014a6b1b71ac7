"""Our brush RLE against Label Studio's own code (label-studio-sdk's converter), both ways."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle as studio_decode
from label_studio_sdk.converter.brush import encode_rle as studio_encode

from tv3s.lifecycle.brush_rle import decode_rle, encode_rle, mask_to_rle, rle_to_mask


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (48, 64), (120, 200)])
def test_our_masks_decode_with_label_studios_decoder(shape):
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) < 0.3
    mask[: shape[0] // 2, : shape[1] // 3] = True  # long runs next to single pixels
    rgba = studio_decode(mask_to_rle(mask)).reshape(*shape, 4)
    assert np.array_equal(rgba[:, :, 3] > 0, mask)
    assert set(np.unique(rgba).tolist()) <= {0, 255}


def test_runs_longer_than_a_16_bit_length_are_split():
    mask = np.ones((300, 300), bool)  # 360,000 values in one run
    mask[150, 7] = False
    assert np.array_equal(studio_decode(mask_to_rle(mask)).reshape(300, 300, 4)[:, :, 3] > 0, mask)
    assert len(mask_to_rle(np.zeros((300, 300), bool))) < 30


def test_we_decode_label_studios_encoding_literal_records_included():
    values = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint8)  # runs of 1: literal records
    values[100:3000] = 7
    assert np.array_equal(decode_rle(studio_encode(values)), values)
    assert np.array_equal(studio_decode(encode_rle(values)), values)
    mask = np.eye(40, dtype=bool)
    assert np.array_equal(rle_to_mask(studio_encode(np.repeat(np.where(mask, 255, 0), 4)), 40, 40), mask)


def test_a_wrong_size_or_a_cut_stream_is_refused():
    rle = mask_to_rle(np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="holds 64 values, a 5x4 RGBA image has 80"):
        rle_to_mask(rle, 4, 5)
    with pytest.raises(ValueError, match="cut short"):
        decode_rle(mask_to_rle(np.eye(8, dtype=bool))[:6])
