"""Two label maps of one frame compared through their class confusion matrix.

Every figure a diff reports (pixel agreement, per-class IoU, which classes moved where) is a
function of the confusion counts, so a frame is reduced to its C x C matrix once and the
matrices are summed for a video and for the whole diff: the sums give exact per-video and
overall figures without keeping any mask.
"""

from __future__ import annotations

import numpy as np


def confusion(a: np.ndarray, b: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [C, C]: pixels whose label is i in `a` and j in `b` at [i, j] (rows A, columns B)."""
    if a.shape != b.shape:
        raise ValueError(f"label maps of {a.shape} and {b.shape} cannot be compared pixel by pixel")
    top = max(int(a.max(initial=0)), int(b.max(initial=0)))
    if top >= num_classes:
        raise ValueError(f"label {top} is outside the {num_classes} classes of the masks")
    cells = a.astype(np.int64).ravel() * num_classes + b.ravel()
    return np.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def agreement(matrix: np.ndarray) -> float | None:
    """Fraction of pixels with the same label on both sides; None for no pixels."""
    total = int(matrix.sum())
    return None if total == 0 else float(np.trace(matrix)) / total


def class_iou(matrix: np.ndarray) -> list[float | None]:
    """IoU of B's class c against A's: |A=c and B=c| / |A=c or B=c|; None where neither has c."""
    hits = np.diag(matrix).astype(np.float64)
    union = matrix.sum(axis=1) + matrix.sum(axis=0) - hits
    return [None if u == 0 else float(h / u) for h, u in zip(hits, union)]


def mean_iou(ious: list[float | None]) -> float | None:
    """Mean of the classes present on either side (a class absent from both says nothing)."""
    present = [v for v in ious if v is not None]
    return None if not present else float(np.mean(present))
