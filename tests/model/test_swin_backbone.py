"""Tests for the Swin backbone (tv3s.model.swin).

The reference implementation below is deliberately slow and explicit: it walks the
padded (and cyclically shifted) token map window by window and head by head with
Python loops, builds the relative-position bias from the table with explicit loops,
and decides the shifted-window mask by labelling each token as "wrapped around or
not" along each axis. It shares no code with the module.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tv3s.model.config import SWIN_VARIANTS
from tv3s.model.swin import SwinBackbone

from ..support.fixtures import FIXTURES

SWIN_FIXTURE = FIXTURES / "tv3s-parity-swin-small"
CHECKPOINT = SWIN_FIXTURE / "checkpoint.pth"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fixture_backbone_state() -> dict[str, torch.Tensor]:
    """``backbone.*`` entries of the fixture checkpoint, prefix stripped, floats cast to float32."""
    ckpt = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    out = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            out[key[len("backbone.") :]] = value.float() if value.is_floating_point() else value
    return out


@pytest.fixture(scope="module")
def swin_t(fixture_backbone_state) -> SwinBackbone:
    model = SwinBackbone()
    model.load_state_dict(fixture_backbone_state, strict=True)
    return model.eval()


def random_small_swin(seed: int, depths=(2, 2, 2, 2)) -> SwinBackbone:
    """A narrow Swin with every parameter randomised (incl. bias tables ~N(0,1) and LayerNorm affines)."""
    torch.manual_seed(seed)
    model = SwinBackbone(embed_dim=16, depths=depths, num_heads=(1, 2, 2, 4))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0.0, 1.0)
            elif name.endswith("bias") or "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    return model.eval()


# --------------------------------------------------------------------------- slow reference


def ref_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def ref_rel_bias(table: torch.Tensor, ws: int) -> torch.Tensor:
    """[heads, N, N] with bias[h, a, b] = table[offset(a - b), h]; offsets enumerated row-major."""
    n = ws * ws
    heads = table.shape[1]
    bias = torch.empty(heads, n, n)
    for a in range(n):
        for b in range(n):
            dr = a // ws - b // ws  # in [-(ws-1), ws-1]
            dc = a % ws - b % ws
            bias[:, a, b] = table[(dr + ws - 1) * (2 * ws - 1) + (dc + ws - 1)]
    return bias


def ref_block(x: torch.Tensor, p: dict, pre: str, heads: int, ws: int, shift: int) -> torch.Tensor:
    """One Swin block on a single image x [H, W, C] (official semantics, spelled out)."""
    H, W, C = x.shape
    d = C // heads
    y = ref_layer_norm(x, p[pre + "norm1.weight"], p[pre + "norm1.bias"])
    Hp, Wp = math.ceil(H / ws) * ws, math.ceil(W / ws) * ws
    padded = torch.zeros(Hp, Wp, C)  # padding happens after norm1 and is never masked
    padded[:H, :W] = y
    if shift:
        padded = torch.roll(padded, shifts=(-shift, -shift), dims=(0, 1))
    bias = ref_rel_bias(p[pre + "attn.relative_position_bias_table"], ws)
    wq, bq = p[pre + "attn.qkv.weight"], p[pre + "attn.qkv.bias"]
    out = torch.zeros(Hp, Wp, C)
    for wi in range(Hp // ws):
        for wj in range(Wp // ws):
            rows = list(range(wi * ws, (wi + 1) * ws))
            cols = list(range(wj * ws, (wj + 1) * ws))
            tokens = torch.stack([padded[r, c] for r in rows for c in cols])  # [N, C], row-major
            # After roll(-shift), the last `shift` rows/cols of the padded map are the ones that
            # wrapped around from the top/left; a token may only see tokens with the same
            # wrapped status along both axes (wrap-around neighbours are not real neighbours).
            wrapped = [(shift > 0 and r >= Hp - shift, shift > 0 and c >= Wp - shift) for r in rows for c in cols]
            mask = torch.tensor([[0.0 if wa == wb else -100.0 for wb in wrapped] for wa in wrapped])
            qkv = tokens @ wq.T + bq
            q, k, v = qkv[:, :C], qkv[:, C : 2 * C], qkv[:, 2 * C :]
            head_outs = []
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                logits = (q[:, sl] * d**-0.5) @ k[:, sl].T + bias[h] + mask
                head_outs.append(torch.softmax(logits, dim=-1) @ v[:, sl])
            o = torch.cat(head_outs, dim=-1) @ p[pre + "attn.proj.weight"].T + p[pre + "attn.proj.bias"]
            for t, (r, c) in enumerate((r, c) for r in rows for c in cols):
                out[r, c] = o[t]
    if shift:
        out = torch.roll(out, shifts=(shift, shift), dims=(0, 1))
    x = x + out[:H, :W]
    z = ref_layer_norm(x, p[pre + "norm2.weight"], p[pre + "norm2.bias"])
    z = F.gelu(z @ p[pre + "mlp.fc1.weight"].T + p[pre + "mlp.fc1.bias"])
    return x + z @ p[pre + "mlp.fc2.weight"].T + p[pre + "mlp.fc2.bias"]


def ref_merge(x: torch.Tensor, p: dict, pre: str) -> torch.Tensor:
    """Patch merging on [H, W, C]: per output cell concat (2i,2j), (2i+1,2j), (2i,2j+1), (2i+1,2j+1)."""
    H, W, C = x.shape
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    padded = torch.zeros(2 * Ho, 2 * Wo, C)
    padded[:H, :W] = x
    out = torch.empty(Ho, Wo, 4 * C)
    for i in range(Ho):
        for j in range(Wo):
            out[i, j] = torch.cat(
                [padded[2 * i, 2 * j], padded[2 * i + 1, 2 * j], padded[2 * i, 2 * j + 1], padded[2 * i + 1, 2 * j + 1]]
            )
    out = ref_layer_norm(out, p[pre + "norm.weight"], p[pre + "norm.bias"])
    return out @ p[pre + "reduction.weight"].T


def ref_swin(img: torch.Tensor, p: dict, depths, num_heads, ws: int = 7) -> list[torch.Tensor]:
    """Whole backbone on a single image [3, H, W] -> four [C_i, H_i, W_i] maps."""
    _, H, W = img.shape
    Hp, Wp = math.ceil(H / 4) * 4, math.ceil(W / 4) * 4
    padded = torch.zeros(3, Hp, Wp)
    padded[:, :H, :W] = img
    x = F.conv2d(padded[None], p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=4)[0]
    x = ref_layer_norm(x.permute(1, 2, 0), p["patch_embed.norm.weight"], p["patch_embed.norm.bias"])
    outs = []
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        for j in range(depth):
            x = ref_block(x, p, f"layers.{i}.blocks.{j}.", heads, ws, shift=0 if j % 2 == 0 else ws // 2)
        outs.append(ref_layer_norm(x, p[f"norm{i}.weight"], p[f"norm{i}.bias"]).permute(2, 0, 1))
        if i < 3:
            x = ref_merge(x, p, f"layers.{i}.downsample.")
    return outs


def assert_matches_reference(model: SwinBackbone, x: torch.Tensor, depths, num_heads) -> None:
    p = {k: v.detach() for k, v in model.state_dict().items()}
    with torch.no_grad():
        got = model(x)
        for b in range(x.shape[0]):
            want = ref_swin(x[b], p, depths, num_heads)
            for g, w in zip(got, want):
                assert g[b].shape == w.shape
                torch.testing.assert_close(g[b], w, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- tests


def test_fixture_checkpoint_loads_strict_and_shapes(swin_t: SwinBackbone) -> None:
    assert swin_t.out_channels == (96, 192, 384, 768)
    x = torch.randn(2, 3, 192, 256)
    with torch.no_grad():
        outs = swin_t(x)
    assert [tuple(o.shape) for o in outs] == [(2, 96, 48, 64), (2, 192, 24, 32), (2, 384, 12, 16), (2, 768, 6, 8)]
    assert all(o.dtype == torch.float32 and torch.isfinite(o).all() for o in outs)


def test_state_dict_layout_and_relative_position_index(fixture_backbone_state) -> None:
    fresh = SwinBackbone()
    sd = fresh.state_dict()
    assert list(sd) == list(fixture_backbone_state)  # same keys, same order as the official module tree
    for key, value in fixture_backbone_state.items():
        assert sd[key].shape == value.shape, key
        if key.endswith("relative_position_index"):
            # computed buffer == the one the official code stored
            assert sd[key].dtype == torch.int64
            assert torch.equal(sd[key], value), key
    assert "layers.0.blocks.0.attn.relative_position_index" not in dict(fresh.named_parameters())


def test_fixture_weights_match_reference(swin_t: SwinBackbone) -> None:
    # 100x132 -> token grids 25x33, 13x17, 7x9, 4x5: every stage is padded, the last is smaller than a window.
    torch.manual_seed(0)
    assert_matches_reference(swin_t, torch.randn(1, 3, 100, 132), (2, 2, 6, 2), (3, 6, 12, 24))


@pytest.mark.parametrize(
    "size",
    [
        (64, 64),  # grids 16, 8, 4, 2: stages 2 and 3 fit in one (padded) window, shift still applied
        (200, 120),  # 50x30, 25x15, 13x8, 7x4: odd sizes into patch merging
        (61, 99),  # not a multiple of the patch size: image zero-padded to 64x100
        (20, 36),  # 5x9, 3x5, 2x3, 1x2
    ],
)
def test_random_weights_match_reference(size: tuple[int, int]) -> None:
    model = random_small_swin(seed=sum(size))
    torch.manual_seed(1)
    assert_matches_reference(model, torch.randn(2, 3, *size), (2, 2, 2, 2), (1, 2, 2, 4))


def test_shift_is_not_a_noop_on_small_grids() -> None:
    """Guard against the classification-code shortcut (no shift when the grid <= window)."""
    model = random_small_swin(seed=3)
    x = torch.randn(1, 3, 32, 32)  # grids 8, 4, 2, 1
    with torch.no_grad():
        ref = model(x)[3]
        for stage in model.layers:
            for blk in stage.blocks:
                blk.shift_size = 0
        no_shift = model(x)[3]
    assert (ref - no_shift).abs().max() > 1e-3


def test_batch_independence_and_purity() -> None:
    model = random_small_swin(seed=5)
    torch.manual_seed(2)
    a, b = torch.randn(1, 3, 52, 76), torch.randn(1, 3, 52, 76)
    with torch.no_grad():
        both = model(torch.cat([a, b]))
        model(torch.randn(1, 3, 90, 40))  # a different size in between must not leave state behind
        only_b = model(b)
    for o_both, o_b in zip(both, only_b):
        torch.testing.assert_close(o_both[1:], o_b, rtol=1e-5, atol=1e-5)


def analytic_swin_params(embed_dim: int, depths, num_heads, window_size: int = 7, mlp_ratio: float = 4.0) -> int:
    """Trainable parameters counted by hand (buffers such as relative_position_index excluded).

    patch embed: conv 3*4*4*C + C, LayerNorm 2C.
    block (dim C, h heads, hidden 4C): norm1 2C + bias table (2*7-1)^2*h + qkv 3C^2+3C + proj C^2+C
        + norm2 2C + fc1 4C^2+4C + fc2 4C^2+C  = 12C^2 + 13C + 169h.
    patch merging (dim C): LayerNorm(4C) 8C + reduction 4C*2C (no bias) = 8C^2 + 8C.
    output norms: 2C_i for each of the four stages.
    """
    total = 3 * 4 * 4 * embed_dim + embed_dim + 2 * embed_dim
    table = (2 * window_size - 1) ** 2
    hidden = int(mlp_ratio)
    for i, (depth, h) in enumerate(zip(depths, num_heads)):
        c = embed_dim * 2**i
        norms = 2 * c + 2 * c
        attn = table * h + (3 * c * c + 3 * c) + (c * c + c)
        mlp = (hidden * c * c + hidden * c) + (hidden * c * c + c)
        block = norms + attn + mlp
        total += depth * block + 2 * c
        if i < 3:
            total += 8 * c * c + 8 * c
    return total


@pytest.mark.parametrize(
    "name, expected",
    [
        # Swin-T: 4,896 (embed) + 224,694 + 74,496 (stage 0 + merge) + 891,756 + 296,448 (stage 1)
        #   + 10,658,952 + 1,182,720 (stage 2, 6 blocks) + 14,183,856 (stage 3) + 2,880 (out norms)
        ("d2_Swint", 27_520_698),
        # Swin-S: 12 more stage-2 blocks of 1,776,492 each.
        ("d2_Swins", 27_520_698 + 12 * 1_776_492),
    ],
)
def test_parameter_count(name: str, expected: int) -> None:
    cfg = SWIN_VARIANTS[name]
    assert analytic_swin_params(cfg.embed_dim, cfg.depths, cfg.num_heads) == expected
    with torch.device("meta"):
        model = SwinBackbone(cfg.embed_dim, cfg.depths, cfg.num_heads, cfg.window_size)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_fixture_parameter_count(fixture_backbone_state) -> None:
    n = sum(v.numel() for k, v in fixture_backbone_state.items() if not k.endswith("relative_position_index"))
    assert n == 27_520_698
