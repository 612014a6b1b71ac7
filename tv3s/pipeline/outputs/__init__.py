"""What a job writes and how it is read back.

- `commit` — the output location (`Output`): Delta Lake tables, each unit appended
  exactly once through Delta's application transactions, plus the job's own files.
- `manifest` — the job's tables: `VideoLabeler` turns logits into label maps, PNG masks
  and per-frame statistics; `ManifestWriter` commits ``frames`` / ``errors`` rows per
  unit (`UnitKey`), then its row in the ``units`` ledger, and a video's ``videos`` row
  once all its units are in.
- `masks`, `stats` — label maps (official resize-then-argmax rule) and confidence,
  class and temporal-agreement statistics.
- `compact` — Delta optimize, checkpoint and vacuum of every table.
- `query` — DuckDB over the visible tables; `export` — selected frames as training
  shards; `render`, `video_write` — overlays, sheets and videos for people to look at.
"""

from .commit import CommitError, Output
from .export import ExportError
from .manifest import FrameSource, ManifestWriter, RunInfo, UnitKey, VideoLabeler
from .masks import colorize, decode_mask_png, encode_mask_png, logits_to_labels, overlay
from .query import QueryError, connect, run_query
from .render import RenderError, RenderOptions, render_lowest_confidence, render_video
from .stats import FrameStats, frame_stats
from .video_write import encode_video, write_video

__all__ = [
    "CommitError",
    "ExportError",
    "FrameSource",
    "FrameStats",
    "ManifestWriter",
    "Output",
    "QueryError",
    "RenderError",
    "RenderOptions",
    "RunInfo",
    "UnitKey",
    "VideoLabeler",
    "colorize",
    "connect",
    "decode_mask_png",
    "encode_mask_png",
    "encode_video",
    "frame_stats",
    "logits_to_labels",
    "overlay",
    "render_lowest_confidence",
    "render_video",
    "run_query",
    "write_video",
]
