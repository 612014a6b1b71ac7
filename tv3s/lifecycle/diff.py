"""`tv3s diff`: how two labelings of the same videos differ, frame by frame, video by video.

Used to decide whether a new model or setting may replace the labels a team already has:
which frames changed most, which classes moved where. B is compared against A. The
comparison streams one video at a time, FETCH_FRAMES frames of it at a time from each
side, and keeps only confusion matrices (C x C counts) between frames, so its memory does
not grow with the outputs. Frames labeled on one side only are counted per side, never
compared with a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..pipeline.outputs.commit import Output
from ..pipeline.outputs.masks import decode_mask_png
from ..schemas.classes import ClassSet
from .compare import agreement, class_iou, confusion, mean_iou
from .diff_schema import DIFF_TABLES, SUMMARY
from .sides import Side
from .tables import TableWriter, is_used

FETCH_FRAMES = 32


class DiffError(ValueError):
    """The two sides cannot be compared as asked; the message says why and what to do."""


@dataclass
class VideoCounts:
    """Frame counts of one video (or, summed, of the whole diff)."""

    frames_a: int = 0
    frames_b: int = 0
    frames_compared: int = 0
    min_frame_agreement: float | None = None

    def add(self, other: VideoCounts) -> None:
        self.frames_a += other.frames_a
        self.frames_b += other.frames_b
        self.frames_compared += other.frames_compared
        self.min_frame_agreement = _min(self.min_frame_agreement, other.min_frame_agreement)


@dataclass
class DiffSummary:
    """The overall figures: what `_diff.json` holds and the command prints."""

    side_a: dict
    side_b: dict
    class_names: list[str]
    videos: dict[str, int]
    counts: VideoCounts
    matrix: np.ndarray = field(repr=False)

    def to_json(self) -> dict:
        ious = class_iou(self.matrix)
        return {
            "a": self.side_a,
            "b": self.side_b,
            "videos": self.videos,
            "frames_a": self.counts.frames_a,
            "frames_b": self.counts.frames_b,
            "frames_compared": self.counts.frames_compared,
            "frames_only_a": self.counts.frames_a - self.counts.frames_compared,
            "frames_only_b": self.counts.frames_b - self.counts.frames_compared,
            "pixels": int(self.matrix.sum()),
            "changed_pixels": int(self.matrix.sum() - np.trace(self.matrix)),
            "agreement": agreement(self.matrix),
            "min_frame_agreement": self.counts.min_frame_agreement,
            "mean_iou": mean_iou(ious),
            "class_iou": ious,
            "class_names": self.class_names,
            "confusion": self.matrix.tolist(),
        }


def diff_outputs(a: Side, b: Side, dest: Output, progress: bool = False) -> DiffSummary:
    """Compare B against A into the tables under `dest` (which must be new); the overall figures."""
    classes = common_classes(a, b)
    refuse_used(dest)
    writers = {name: TableWriter(dest, name, schema) for name, schema in DIFF_TABLES.items()}
    videos_a, videos_b = set(a.videos()), set(b.videos())
    size = classes.num_classes
    total, counts = np.zeros((size, size), np.int64), VideoCounts()
    for video_id in tqdm(sorted(videos_a | videos_b), unit="video", desc="diff", disable=not progress):
        matrix, video_counts = diff_video(a, b, video_id, classes, writers)
        total += matrix
        counts.add(video_counts)
    for writer in writers.values():
        writer.flush()
    summary = DiffSummary(
        {"output": a.url, "job_id": a.job_id},
        {"output": b.url, "job_id": b.job_id},
        list(classes.names),
        {"both": len(videos_a & videos_b), "only_a": len(videos_a - videos_b), "only_b": len(videos_b - videos_a)},
        counts,
        total,
    )
    dest.write_once(SUMMARY, json.dumps(summary.to_json(), indent=1).encode())
    return summary


def diff_video(
    a: Side, b: Side, video_id: str, classes: ClassSet, writers: dict[str, TableWriter]
) -> tuple[np.ndarray, VideoCounts]:
    """Compare one video's frames labeled on both sides; write its frames, videos and confusion rows."""
    size = classes.num_classes
    in_a, in_b = a.frame_indices(video_id), b.frame_indices(video_id)
    common = sorted(set(in_a) & set(in_b))
    counts = VideoCounts(len(in_a), len(in_b), len(common))
    matrix = np.zeros((size, size), np.int64)
    for start in range(0, len(common), FETCH_FRAMES):
        chunk = common[start : start + FETCH_FRAMES]
        rows_a, rows_b = a.rows(video_id, chunk), b.rows(video_id, chunk)
        for index in chunk:
            frame = frame_confusion(video_id, rows_a[index], rows_b[index], size)
            matrix += frame
            row = frame_row(video_id, rows_a[index], rows_b[index], frame)
            counts.min_frame_agreement = _min(counts.min_frame_agreement, row["agreement"])
            writers["frames"].add(row)
    writers["videos"].add(video_row(video_id, counts, matrix))
    for row in confusion_rows(video_id, matrix, classes):
        writers["confusion"].add(row)
    return matrix, counts


def frame_confusion(video_id: str, row_a: dict, row_b: dict, size: int) -> np.ndarray:
    """The frame's confusion matrix, after checking both masks are of the same frame size."""
    if (row_a["width"], row_a["height"]) != (row_b["width"], row_b["height"]):
        raise DiffError(
            f"frame {row_a['frame_index']} of video {video_id!r} is {row_a['width']}x{row_a['height']} in A but "
            f"{row_b['width']}x{row_b['height']} in B: the outputs labeled different sources. Diff outputs of the "
            "same videos (see source_url in each output's frames table)"
        )
    return confusion(decode_mask_png(row_a["mask_png"]), decode_mask_png(row_b["mask_png"]), size)


def frame_row(video_id: str, row_a: dict, row_b: dict, matrix: np.ndarray) -> dict:
    ious = class_iou(matrix)
    return {
        "video_id": video_id,
        "frame_index": row_a["frame_index"],
        "width": row_a["width"],
        "height": row_a["height"],
        "agreement": agreement(matrix),
        "changed_pixels": int(matrix.sum() - np.trace(matrix)),
        "mean_iou": mean_iou(ious),
        "class_iou": ious,
        "mean_confidence_a": row_a["mean_confidence"],
        "mean_confidence_b": row_b["mean_confidence"],
        "source_url": row_a["source_url"],
        "source_member": row_a["source_member"],
        "source_frame_index": row_a["source_frame_index"],
    }


def video_row(video_id: str, counts: VideoCounts, matrix: np.ndarray) -> dict:
    ious = class_iou(matrix)
    return {
        "video_id": video_id,
        "frames_a": counts.frames_a,
        "frames_b": counts.frames_b,
        "frames_compared": counts.frames_compared,
        "frames_only_a": counts.frames_a - counts.frames_compared,
        "frames_only_b": counts.frames_b - counts.frames_compared,
        "pixels": int(matrix.sum()),
        "changed_pixels": int(matrix.sum() - np.trace(matrix)),
        "agreement": agreement(matrix),
        "min_frame_agreement": counts.min_frame_agreement,
        "mean_iou": mean_iou(ious),
        "class_iou": ious,
    }


def confusion_rows(video_id: str, matrix: np.ndarray, classes: ClassSet) -> list[dict]:
    """The video's non-zero confusion cells, from -> to (the diagonal: pixels that kept their class)."""
    return [
        {
            "video_id": video_id,
            "from_class": int(i),
            "to_class": int(j),
            "from_name": classes.names[i],
            "to_name": classes.names[j],
            "pixels": int(matrix[i, j]),
        }
        for i, j in zip(*np.nonzero(matrix))
    ]


def common_classes(a: Side, b: Side) -> ClassSet:
    """The class set both sides label with; DiffError naming the difference otherwise."""
    ca, cb = a.classes(), b.classes()
    if ca.num_classes != cb.num_classes:
        raise DiffError(
            f"A labels {ca.num_classes} classes and B {cb.num_classes}: a pixel diff needs one label space. "
            "Compare outputs of models with the same classes"
        )
    for k, (na, nb) in enumerate(zip(ca.names, cb.names)):
        if na != nb:
            raise DiffError(
                f"class {k} is {na!r} in A but {nb!r} in B: the models name their classes differently. "
                "Compare outputs of models with the same classes"
            )
    return ca


def refuse_used(dest: Output) -> None:
    if is_used(dest.fs, dest.root):
        raise DiffError(f"{dest.url} is not empty; write the diff to a new --out, or delete {dest.url} first")


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)
