"""What a job writes and how it is read back.

- `commit` — the output location and its exactly-once commit protocol (`Output`,
  `UnitKey`: one record per committed unit, data files named by attempt).
- `manifest` — the job's tables: `VideoLabeler` turns logits into label maps, PNG masks
  and per-frame statistics; `ManifestWriter` commits ``frames`` / ``errors`` rows per
  unit and a video's ``videos`` row once all its units are in.
- `masks`, `stats` — label maps (official resize-then-argmax rule) and confidence,
  class and temporal-agreement statistics.
- `compact` — small files merged into large ones, superseded files vacuumed.
- `query` — DuckDB over the visible tables; `export` — selected frames as training
  shards; `render`, `video_write` — overlays, sheets and videos for people to look at.
"""

from .commit import CommitError, Output, UnitKey
from .export import ExportError
from .manifest import FrameSource, ManifestWriter, RunInfo, VideoLabeler
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
