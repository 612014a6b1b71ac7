"""`tv3s review export`: the picked frames, with the model's masks as pre-annotations, for annotators.

DEST (a new folder or s3:// prefix) gets::

    images/NAME.jpg                 the frames, re-read from their sources (what Label Studio shows)
    cvat-segmentation-mask-1.1.zip  CVAT's Segmentation mask 1.1 (`cvat`): upload it to a task of these images
    label-studio-tasks.json         Label Studio tasks with brush pre-annotations (`label_studio`)
    label-studio-config.xml         the Label Studio project's labeling interface for them
    review.json                     the job, classes and settings, and each frame picked: name, why, figures

`review.json` is what `tv3s review import` maps the annotators' work back with (names to
frames, the model's classes). Written last: a DEST without it is an interrupted export. A
frame whose source cannot be read any more is left out and listed there as skipped.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby

import numpy as np

from ..pipeline.ingest.source_frames import FrameRef, SourceError, SourceReader
from ..pipeline.outputs.export import encode_jpeg, sample_key
from ..pipeline.outputs.masks import decode_mask_png
from ..pipeline.storage import Store
from ..schemas.classes import ClassSet
from .cvat import CvatWriter
from .label_studio import labeling_config, task
from .review_pick import Pick
from .sides import Side
from .tables import is_used

REVIEW = "review.json"
IMAGES = "images"
CVAT_ZIP = "cvat-segmentation-mask-1.1.zip"
TASKS = "label-studio-tasks.json"
CONFIG = "label-studio-config.xml"
FETCH_FRAMES = 32
JPEG_QUALITY = 95  # what `tv3s export` writes too
_HINT = "the frame is left out of the review; restore the source to include it"


class ReviewError(ValueError):
    """The review cannot be made as asked; the message says what to do instead."""


@dataclass
class ReviewExport:
    dest: str
    frames: list[dict] = field(default_factory=list)  # review.json's entries of the frames written
    skipped: list[dict] = field(default_factory=list)


def frame_name(video_id: str, frame_index: int) -> str:
    """A flat file name for a frame (CVAT and Label Studio name images by file, without folders)."""
    return sample_key(video_id, frame_index).replace("/", "__")


def export_review(
    side: Side, picks: list[Pick], dest: str, store: Store, settings: dict, image_url: str | None = None
) -> ReviewExport:
    """Write the picked frames to `dest` in both formats and record them in review.json."""
    dest = dest.rstrip("/")
    if is_used(*store.filesystem(dest)):
        raise ReviewError(f"{dest} is not empty; export the review to a new --to, or delete {dest} first")
    if not picks:
        raise ReviewError(f"job {side.job_id!r} has no frames to review")
    classes = side.classes()
    result = ReviewExport(dest)
    tasks = []
    handle, zip_path = tempfile.mkstemp(suffix=".zip")
    os.close(handle)
    try:
        cvat = CvatWriter(zip_path, classes)
        for entry, frame, labels in _frames(side, picks, store, result.skipped):
            jpeg = encode_jpeg(frame, JPEG_QUALITY)
            store.write(f"{dest}/{IMAGES}/{entry['name']}.jpg", jpeg)
            cvat.add(entry["name"], jpeg, labels)
            url = f"{(image_url or dest + '/' + IMAGES).rstrip('/')}/{entry['name']}.jpg"
            data = {"name": entry["name"], "video_id": entry["video_id"], "frame_index": entry["frame_index"]}
            tasks.append(task(url, data, labels, classes, side.job_id, entry["mean_confidence"]))
            result.frames.append(entry)
        cvat.close()
        store.put(zip_path, f"{dest}/{CVAT_ZIP}")
    finally:
        os.unlink(zip_path)
    store.write(f"{dest}/{TASKS}", json.dumps(tasks).encode())
    store.write(f"{dest}/{CONFIG}", labeling_config(classes).encode())
    store.write(f"{dest}/{REVIEW}", json.dumps(_record(side, classes, settings, result), indent=1).encode())
    return result


def _frames(
    side: Side, picks: list[Pick], store: Store, skipped: list[dict]
) -> Iterator[tuple[dict, np.ndarray, np.ndarray]]:
    """(review entry, source frame, label map) of each pick whose source reads, in (video, frame) order so each
    video is decoded forward once (`rank` keeps the pick order); the others are appended to `skipped`."""
    reader = SourceReader(store, _HINT)
    rank = {(p.video_id, p.frame_index): k for k, p in enumerate(picks)}
    ordered = sorted(picks, key=lambda p: (p.video_id, p.frame_index))
    for video_id, group in groupby(ordered, key=lambda p: p.video_id):
        group = list(group)
        for start in range(0, len(group), FETCH_FRAMES):
            chunk = group[start : start + FETCH_FRAMES]
            rows = side.rows(video_id, [p.frame_index for p in chunk])
            for pick in chunk:
                row = rows[pick.frame_index]
                try:
                    frame = reader.frame(FrameRef(row["source_url"], row["source_member"], row["source_frame_index"]))
                except SourceError as exc:
                    skipped.append({"video_id": video_id, "frame_index": pick.frame_index, "error": str(exc)})
                    continue
                labels = decode_mask_png(row["mask_png"])
                if frame.shape[:2] != labels.shape:
                    error = f"the source frame is {frame.shape[1]}x{frame.shape[0]}, its mask {labels.shape[1]}x{labels.shape[0]}"
                    skipped.append({"video_id": video_id, "frame_index": pick.frame_index, "error": error})
                    continue
                name = frame_name(video_id, pick.frame_index)
                entry = {
                    "name": name,
                    "rank": rank[video_id, pick.frame_index],
                    "width": row["width"],
                    "height": row["height"],
                }
                yield {**entry, **pick.to_json()}, frame, labels


def _record(side: Side, classes: ClassSet, settings: dict, result: ReviewExport) -> dict:
    return {
        "output": side.url,
        "job_id": side.job_id,
        "class_names": list(classes.names),
        "palette": [list(c) for c in classes.palette],
        "settings": settings,
        "frames": result.frames,
        "skipped": result.skipped,
    }
