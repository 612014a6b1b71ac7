"""Segmentation quality against ground truth: mIoU and VSPW's video consistency mVC_8 / mVC_16.

mIoU is the number the paper reports: mmseg's `mean_iou` over the whole evaluated set,
i.e. one confusion matrix accumulated over all frames, IoU = TP / (TP + FP + FN) per
class, averaged over the classes that occur in the ground truth or the prediction
(a class that is predicted but absent from the ground truth counts as IoU 0; one that
is in neither is skipped). Pixels whose ground truth is the ignore index (255) or not a
class are left out.

mVC_n follows the official tools/VC_perclip.py, quirks included, so numbers compare
with the paper's: for every window of n consecutive frames of a video, the pixels whose
ground truth is the same in all n frames (the ignore label counts as a label there) and,
among them, those whose prediction is also the same in all n frames:
VC = |both| / |ground truth constant|. Windows start at frames 0 .. N-n-1 (the official
loop stops one window short); videos of at most 16 frames are skipped for both n; a
window with no constant ground-truth pixel is NaN and skipped; mVC_n is the mean over
all windows of all videos (not per video first).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

IGNORE_INDEX = 255
VC_WINDOWS = (8, 16)
VC_MIN_FRAMES = 16  # the official script skips videos with at most this many frames


def reduce_zero_label(gt: np.ndarray) -> np.ndarray:
    """VSPW's raw masks to class labels: 0 ('others') becomes ignore, k becomes k - 1, 255 stays ignore."""
    out = gt.astype(np.int64) - 1
    out[(gt == 0) | (gt == IGNORE_INDEX)] = IGNORE_INDEX
    return out.astype(gt.dtype)


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [ground truth class, predicted class] over the pixels whose ground truth is a class."""
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in size")
    valid = gt < num_classes  # also drops the ignore index
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    if p.size and int(p.max()) >= num_classes:
        raise ValueError(f"prediction has label {int(p.max())}, the model has {num_classes} classes")
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU per class; NaN for a class in neither ground truth nor prediction."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    iou = class_iou(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def window_consistency(gts: list[np.ndarray], preds: list[np.ndarray]) -> float:
    """VC of one window: constant-prediction pixels among constant-ground-truth pixels (NaN if none)."""
    gt_constant = np.ones(gts[0].shape, dtype=bool)
    pred_constant = np.ones(preds[0].shape, dtype=bool)
    for j in range(1, len(gts)):
        gt_constant &= gts[0] == gts[j]
        pred_constant &= preds[0] == preds[j]
    total = int(gt_constant.sum())
    return float(np.count_nonzero(gt_constant & pred_constant)) / total if total else float("nan")


@dataclass
class Evaluation:
    """Accumulates mIoU and mVC over videos fed frame by frame (memory: the last 16 frames)."""

    num_classes: int
    confusion: np.ndarray = field(init=False)
    windows: dict[int, list[float]] = field(init=False)
    videos: int = 0
    videos_skipped_for_vc: int = 0
    frames: int = 0

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.windows = {n: [] for n in VC_WINDOWS}
        self._video: _VideoWindows | None = None

    def start_video(self) -> None:
        """Begin a new video; frames must then be added in frame order."""
        self._finish_video()
        self._video = _VideoWindows()
        self.videos += 1

    def add_frame(self, gt: np.ndarray, pred: np.ndarray) -> None:
        if self._video is None:
            raise RuntimeError("call start_video() before add_frame()")
        self.confusion += confusion_matrix(gt, pred, self.num_classes)
        self._video.add(gt, pred)
        self.frames += 1

    def result(self) -> dict:
        self._finish_video()
        iou = class_iou(self.confusion)
        return {
            "frames": self.frames,
            "videos": self.videos,
            "videos_skipped_for_vc": self.videos_skipped_for_vc,
            "mIoU": mean_iou(self.confusion),
            **{f"mVC_{n}": _nanmean(self.windows[n]) for n in VC_WINDOWS},
            **{f"windows_{n}": int(np.isfinite(self.windows[n]).sum()) for n in VC_WINDOWS},
            "class_iou": [None if np.isnan(v) else float(v) for v in iou],
        }

    def _finish_video(self) -> None:
        video, self._video = self._video, None
        if video is None:
            return
        if video.count <= VC_MIN_FRAMES:
            self.videos_skipped_for_vc += 1
            return
        for n in VC_WINDOWS:
            self.windows[n].extend(video.accs[n])


class _VideoWindows:
    """VC of every window of one video, computed as frames arrive: the window starting at
    frame i is complete when frame i + n arrives (the official range(N - n))."""

    def __init__(self) -> None:
        self.recent: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=max(VC_WINDOWS))
        self.accs: dict[int, list[float]] = {n: [] for n in VC_WINDOWS}
        self.count = 0

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        for n in VC_WINDOWS:
            if len(self.recent) >= n:
                window = list(self.recent)[-n:]
                self.accs[n].append(window_consistency([w[0] for w in window], [w[1] for w in window]))
        self.recent.append((gt, pred))
        self.count += 1


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")
