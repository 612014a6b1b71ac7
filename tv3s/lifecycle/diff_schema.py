"""The tables `tv3s diff` writes under DIFF: `frames`, `videos` and `confusion`, plus `_diff.json`.

Named like a labeling output's tables where they mean the same kind of row (a frame, a
video), so `tv3s query DIFF "SELECT ... FROM frames"` reads a diff as it reads an output.
`_diff.json` (the overall figures and confusion) is written last: a DIFF without it is
an interrupted diff.
"""

from __future__ import annotations

import pyarrow as pa

from .tables import field

SUMMARY = "_diff.json"
_IOU = pa.list_(pa.field("element", pa.float64(), nullable=True))
_IOU_TEXT = "per class (index = class id; SQL lists are 1-based) IoU of B against A; null where neither has the class"

DIFF_FRAMES_SCHEMA = pa.schema(
    [
        field("video_id", pa.string(), "the video"),
        field("frame_index", pa.int64(), "the frame, labeled on both sides"),
        field("width", pa.int32(), "mask width in pixels"),
        field("height", pa.int32(), "mask height in pixels"),
        field("agreement", pa.float64(), "fraction of pixels with the same label in A and B"),
        field("changed_pixels", pa.int64(), "pixels whose label differs between A and B"),
        field("mean_iou", pa.float64(), "mean of class_iou over the classes present on either side"),
        field("class_iou", _IOU, _IOU_TEXT),
        field("mean_confidence_a", pa.float32(), "the frame's mean_confidence in A"),
        field("mean_confidence_b", pa.float32(), "the frame's mean_confidence in B"),
        field("source_url", pa.string(), "where A read the frame from (for drawing it)"),
        field("source_member", pa.string(), "tar member of the frame in A; null for a plain file", True),
        field("source_frame_index", pa.int64(), "position of the frame in that member or file"),
    ]
)

DIFF_VIDEOS_SCHEMA = pa.schema(
    [
        field("video_id", pa.string(), "the video (labeled on either side)"),
        field("frames_a", pa.int64(), "frames of the video in A"),
        field("frames_b", pa.int64(), "frames of the video in B"),
        field("frames_compared", pa.int64(), "frames labeled on both sides (rows in frames)"),
        field("frames_only_a", pa.int64(), "frames labeled in A only: counted, not compared"),
        field("frames_only_b", pa.int64(), "frames labeled in B only: counted, not compared"),
        field("pixels", pa.int64(), "pixels compared"),
        field("changed_pixels", pa.int64(), "pixels whose label differs"),
        field("agreement", pa.float64(), "fraction of the pixels compared with the same label; null if none", True),
        field("min_frame_agreement", pa.float64(), "agreement of the most changed frame; null if none", True),
        field("mean_iou", pa.float64(), "mean of class_iou over the classes present; null if none", True),
        field("class_iou", _IOU, _IOU_TEXT + " (over all the video's compared pixels)"),
    ]
)

CONFUSION_SCHEMA = pa.schema(
    [
        field("video_id", pa.string(), "the video"),
        field("from_class", pa.int32(), "the pixel's class in A"),
        field("to_class", pa.int32(), "the pixel's class in B (equal to from_class: unchanged)"),
        field("from_name", pa.string(), "name of from_class"),
        field("to_name", pa.string(), "name of to_class"),
        field("pixels", pa.int64(), "pixels of the video's compared frames labeled from_class in A and to_class in B"),
    ]
)

DIFF_TABLES: dict[str, pa.Schema] = {
    "frames": DIFF_FRAMES_SCHEMA,
    "videos": DIFF_VIDEOS_SCHEMA,
    "confusion": CONFUSION_SCHEMA,
}
