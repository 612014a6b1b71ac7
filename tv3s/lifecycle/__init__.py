"""What a team does with labels once a job has written them: compare two labelings, pick frames for
people to check, and bring their corrections back as training data.

- `diff` — `tv3s diff`: B's masks against A's per frame, per video and overall (agreement,
  per-class IoU, class confusion), written as Delta tables (`diff_schema`) under DIFF;
  `diff_render` draws the most changed frames as A | B | difference sheets.
- `compare` — the figures of two label maps, from their confusion matrix.
- `sides` — one output's job as a side of a comparison or review (frames fetched a few at a time).
- `tables` — derived results as Delta tables and SQL over them.
- `review_pick` — the frames most worth a human look (low confidence, flicker, rare classes),
  spread over videos and time; `review_export` writes them for annotators as CVAT's
  Segmentation mask 1.1 (`cvat`) and Label Studio tasks (`label_studio`, `brush_rle`);
  `review_import` brings the annotators' export back as training shards.
"""

from .brush_rle import decode_rle, encode_rle, mask_to_rle, rle_to_mask
from .compare import agreement, class_iou, confusion, mean_iou
from .cvat import CvatError
from .diff import DiffError, DiffSummary, diff_outputs
from .diff_render import render_most_changed
from .diff_schema import DIFF_TABLES
from .label_studio import LabelStudioError
from .review_export import ReviewError, ReviewExport, export_review, frame_name
from .review_import import ImportResult, import_review, parse_classes
from .review_pick import Pick, pick_frames
from .sides import Side, open_side
from .tables import TableWriter, connect_tables, register_other_tables

__all__ = [
    "DIFF_TABLES",
    "CvatError",
    "DiffError",
    "DiffSummary",
    "ImportResult",
    "LabelStudioError",
    "Pick",
    "ReviewError",
    "ReviewExport",
    "Side",
    "TableWriter",
    "agreement",
    "class_iou",
    "confusion",
    "connect_tables",
    "decode_rle",
    "diff_outputs",
    "encode_rle",
    "export_review",
    "frame_name",
    "import_review",
    "mask_to_rle",
    "mean_iou",
    "open_side",
    "parse_classes",
    "pick_frames",
    "register_other_tables",
    "render_most_changed",
    "rle_to_mask",
]
