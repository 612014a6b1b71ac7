"""Per-frame quality statistics of a label map, for filtering pseudo-labels without looking at them.

The class histogram and the temporal agreement are exact, counted on the label map at
source resolution (the official resize-then-argmax labels of `masks.logits_to_labels`).

The confidence statistics (mean top-1 probability, low-confidence fraction, mean
entropy) come from the softmax of the decode head's 1/4-resolution logit cells, each
cell weighted by the source pixels it feeds in the bilinear resize (the interpolation
weights summed over the output): the means are the means, over source pixels, of the
bilinearly resized per-cell maps, and the low-confidence fraction counts each cell's
source-pixel share. Up to MAX_CELLS cells (a 480p frame) every cell is used; larger
frames use every k-th row of cells (k = 4 at 1080p), each row weighted by the k rows it
stands for, so the cost per frame is bounded whatever the resolution. Whole rows, not
s x s blocks: gathering a 2-D subgrid copies strided memory and cost more than it saved.

Why not the softmax of the source-resolution logits: for 124 classes at 1080p that is
257 M exponentials (~1 s on a CPU core), 40 times the cost of the PNG the mask is stored
as; all 1/4-resolution cells are 16 M (~15 ms), the sampled rows 4 M (~4 ms), against
~24 ms for the PNG. The resized logits differ from the cells' only along class
boundaries, and the sampled cells from all cells by sampling noise well below 0.01 for
a frame (tested); both are noise for a per-frame score used to rank and filter frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ...schemas.manifest import LOW_CONFIDENCE_THRESHOLD

# About 2 MB of float32 logits per chunk: small enough to stay in cache, large enough to
# amortise the per-call overhead (measured: 8 rows x 480 x 124 is 2-5x faster than one shot).
CHUNK_ELEMENTS = 1 << 19
MAX_CELLS = 1 << 15  # logit cells evaluated per frame at most (120 x 214 at 480p: all of them)


@dataclass(frozen=True)
class ConfidenceStats:
    mean_confidence: float
    low_confidence_fraction: float
    mean_entropy: float


@dataclass(frozen=True)
class FrameStats:
    """Everything the frames table records about one label map besides the map itself."""

    class_histogram: np.ndarray  # int64 [C]
    confidence: ConfidenceStats
    temporal_agreement: float | None


def frame_stats(
    logits: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    previous: np.ndarray | None = None,
    threshold: float = LOW_CONFIDENCE_THRESHOLD,
) -> FrameStats:
    """Statistics of one frame from its logits [C, h, w] and its label map [H, W].

    `previous` is the previous frame's label map when the caller has it (else the
    agreement is None).
    """
    return FrameStats(
        class_histogram=class_histogram(labels, logits.shape[0]),
        confidence=confidence_stats(logits, labels.shape, threshold),
        temporal_agreement=None if previous is None else temporal_agreement(labels, previous),
    )


def class_histogram(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per class, int64 [num_classes]; refuses labels outside the class range.

    A uint8 map is counted two pixels at a time: its bytes read as uint16 give half as
    many values to count (65536 bins), and each byte's count is a row or column sum of
    those bins. Exact, and twice as fast as counting pixels (1.6 vs 3.6 ms at 1080p).
    """
    flat = np.ascontiguousarray(labels).reshape(-1)
    if flat.dtype == np.uint8 and flat.size >= 2:
        even = flat.size - flat.size % 2
        pairs = np.bincount(flat[:even].view(np.uint16), minlength=1 << 16).reshape(256, 256)
        counts = pairs.sum(axis=0) + pairs.sum(axis=1)
        if even < flat.size:
            counts[flat[-1]] += 1
    else:
        counts = np.bincount(flat, minlength=num_classes)
    present = np.flatnonzero(counts)
    if present.size and present[-1] >= num_classes:
        raise ValueError(f"label {present[-1]} in a map of {num_classes} classes; the mask and logits disagree")
    return counts[:num_classes].astype(np.int64, copy=False)


def temporal_agreement(labels: np.ndarray, previous: np.ndarray) -> float:
    """Fraction of pixels whose label equals the previous frame's."""
    if labels.shape != previous.shape:
        raise ValueError(f"label maps of {labels.shape} and {previous.shape} cannot be compared pixel by pixel")
    return np.count_nonzero(labels == previous) / labels.size


def confidence_stats(
    logits: np.ndarray | torch.Tensor, size: tuple[int, int], threshold: float = LOW_CONFIDENCE_THRESHOLD
) -> ConfidenceStats:
    """Source-pixel-weighted softmax statistics of logits [C, h, w] for a frame of `size` = (H, W).

    Works on row chunks of about CHUNK_ELEMENTS logits of at most MAX_CELLS cells, so
    time and memory stay bounded for any class count and frame size. NumPy,
    single-threaded on purpose: the chunks are too
    small for intra-op threads to pay off, and on a busy machine torch's thread pool made
    the same work 10x slower (measured: 37 ms vs 600 ms for 124 classes at 1080p).
    """
    z_all = _as_float_array(logits)
    if z_all.ndim != 3:
        raise ValueError(f"logits must be [C, h, w], got shape {z_all.shape}")
    num_classes, h, w = z_all.shape
    height, width = size
    stride = row_stride(h, w)
    row_weights = block_weights(resize_weights(h, height), stride)
    col_weights = resize_weights(w, width)
    cells = z_all[:, ::stride]  # a view: every stride-th row of cells, each contiguous
    rows = max(1, CHUNK_ELEMENTS // (num_classes * w))
    confidence = low = entropy = 0.0
    for start in range(0, cells.shape[1], rows):
        z = cells[:, start : start + rows]
        top = z.max(axis=0)
        e = np.subtract(z, top)
        np.exp(e, out=e)
        s = e.sum(axis=0)
        ez = np.einsum("crw,crw->rw", e, z)
        top1 = 1.0 / s  # softmax of the maximum: exp(0) / sum
        ent = np.log(s) + top - ez / s  # -sum p log p = log s + max - E[z]
        weights = row_weights[start : start + rows, None] * col_weights[None, :]
        confidence += float((top1 * weights).sum())
        entropy += float((ent * weights).sum())
        low += float(weights[top1 < threshold].sum())
    total = float(height) * float(width)
    return ConfidenceStats(
        mean_confidence=min(confidence / total, 1.0),
        low_confidence_fraction=min(low / total, 1.0),
        mean_entropy=max(entropy / total, 0.0),
    )


def row_stride(h: int, w: int, max_cells: int = MAX_CELLS) -> int:
    """The smallest k such that every k-th of h rows of w cells is at most `max_cells` cells."""
    stride = 1
    while -(-h // stride) * w > max_cells and stride < h:
        stride += 1
    return stride


def block_weights(weights: np.ndarray, stride: int) -> np.ndarray:
    """The summed weight of each block of `stride` consecutive rows (what a sampled row stands for)."""
    return np.add.reduceat(weights, np.arange(0, len(weights), stride)) if stride > 1 else weights


def _as_float_array(logits: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().cpu().numpy()
    if not np.issubdtype(logits.dtype, np.floating):
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    return np.ascontiguousarray(logits, dtype=np.float32)


@lru_cache(maxsize=64)
def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """Total weight of each of `n_in` input cells in a 1-D bilinear resize to `n_out` (sums to n_out).

    The align_corners=False rule of torch/OpenCV: output i samples input coordinate
    (i + 0.5) * n_in / n_out - 0.5, clamped at 0, between its two neighbours.
    """
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, None)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    weights = np.zeros(n_in, dtype=np.float64)
    np.add.at(weights, lo, 1.0 - frac)
    np.add.at(weights, hi, frac)
    weights = weights.astype(np.float32)
    weights.setflags(write=False)  # cached and shared
    return weights
