"""What a team does with labels once a job has written them: compare two labelings, pick frames for
people to check, and bring their corrections back as training data.

- `diff` — `tv3s diff`: B's masks against A's per frame, per video and overall (agreement,
  per-class IoU, class confusion), written as Delta tables (`diff_schema`) under DIFF;
  `diff_render` draws the most changed frames as A | B | difference sheets.
- `compare` — the figures of two label maps, from their confusion matrix.
- `sides` — one output's job as a side of a comparison (frames fetched a few at a time).
- `tables` — derived results as Delta tables and SQL over them.
"""

from .compare import agreement, class_iou, confusion, mean_iou
from .diff import DiffError, DiffSummary, diff_outputs
from .diff_render import render_most_changed
from .diff_schema import DIFF_TABLES
from .sides import Side, open_side
from .tables import TableWriter, connect_tables, register_other_tables

__all__ = [
    "DIFF_TABLES",
    "DiffError",
    "DiffSummary",
    "Side",
    "TableWriter",
    "agreement",
    "class_iou",
    "confusion",
    "connect_tables",
    "diff_outputs",
    "mean_iou",
    "open_side",
    "register_other_tables",
    "render_most_changed",
]
