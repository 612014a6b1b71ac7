"""Window partitions against a transcription of the official slicing of shifted windows."""

from __future__ import annotations

import pytest
import torch

from tv3s.model.windows import WindowGeometry, layer_groups, layer_packing


def official_sequences(H, W, wh, ww, s):
    """Sequences (as tuples of grid indices) that the official real-shift code forms."""
    grid = torch.arange(H * W).reshape(1, 1, 1, H, W)
    x = torch.roll(grid, shifts=(-s, -s), dims=(-2, -1))
    pieces = [
        (x[..., :-wh, :-ww], wh, ww),
        (x[..., -s:, -s:], s, s),
        (x[..., -wh:-s, -s:], wh - s, s),
        (x[..., -s:, -ww:-s], s, ww - s),
        (x[..., -wh:-s, -ww:-s], wh - s, ww - s),
        (x[..., :-wh, -s:], wh, s),
        (x[..., :-wh, -ww:-s], wh, ww - s),
        (x[..., -s:, :-ww], s, ww),
        (x[..., -wh:-s, :-ww], wh - s, ww),
    ]
    seqs = set()
    for p, h, w in pieces:
        ph, pw = p.shape[-2:]
        if ph == 0 or pw == 0:
            continue
        win = p.reshape(ph // h, h, pw // w, w).permute(0, 2, 1, 3).reshape(-1, h * w)  # 'i h j w -> (i j) (h w)'
        seqs |= {tuple(r.tolist()) for r in win}
    return seqs


@pytest.mark.parametrize("hw", [(40, 40), (60, 80), (20, 40), (20, 20), (100, 60)])
def test_shifted_groups_match_official_slicing(hw):
    geom = WindowGeometry(hw[0], hw[1], 20, 20, 10, True)
    ours = {tuple(r.tolist()) for g in layer_groups(geom, shifted=True) for r in g}
    assert ours == official_sequences(hw[0], hw[1], 20, 20, 10)


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("shift,real", [(10, True), (5, True), (20, True), (10, False)])
def test_groups_cover_every_token_once(shifted, shift, real):
    geom = WindowGeometry(60, 120, 20, 20, shift, real)
    idx = torch.cat([g.reshape(-1) for g in layer_groups(geom, shifted)])
    assert sorted(idx.tolist()) == list(range(60 * 120))


def test_unshifted_windows_are_row_major():
    (g,) = layer_groups(WindowGeometry(40, 40, 20, 20, 10, True), shifted=False)
    assert g.shape == (4, 400)
    assert g[1, :3].tolist() == [20, 21, 22] and g[2, 0].item() == 20 * 40


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match="real shift"):
        WindowGeometry(40, 40, 20, 20, 25, True)
    with pytest.raises(ValueError, match="multiple"):
        WindowGeometry(50, 40, 20, 20, 10, True)


def test_packing_gathers_each_window_sequence_and_puts_it_back():
    """The packed order is each group's windows as the official flattening makes them (video-major,
    then frame after frame), built once per shape; the inverse order undoes it."""
    geom = WindowGeometry(40, 60, 20, 20, 10, True)
    videos, frames = 2, 3
    packing = layer_packing(geom, True, videos, frames, torch.device("cpu"))
    assert packing is layer_packing(geom, True, videos, frames, torch.device("cpu"))
    tokens = torch.randn(videos, frames, 40 * 60, 5)
    packed = tokens.reshape(-1, 5)[packing.order]
    groups = layer_groups(geom, shifted=True)
    for idx, view, (count, length) in zip(groups, packing.sequences.split(packed), packing.sequences.shapes):
        n, window = idx.shape
        expected = tokens[:, :, idx].permute(0, 2, 1, 3, 4).reshape(videos * n, frames * window, 5)
        assert (count, length) == (videos * n, frames * window)
        assert torch.equal(view, expected)
    assert torch.equal(packed[packing.inverse].reshape(tokens.shape), tokens)
