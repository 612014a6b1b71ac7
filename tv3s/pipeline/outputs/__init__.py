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

import importlib

from .commit import CommitError, Output
from .manifest import FrameSource, ManifestWriter, RunInfo, UnitKey, VideoLabeler
from .masks import colorize, decode_mask_png, encode_mask_png, logits_to_labels, overlay
from .stats import FrameStats, frame_stats
from .video_write import encode_video, write_video

# The reading side, imported when first asked for: it needs DuckDB, which a writing actor never
# does (the GPU machines of benchmarks/device have no DuckDB, and no room to carry it).
_READING = {
    "ExportError": "export",
    "QueryError": "query",
    "connect": "query",
    "run_query": "query",
    "RenderError": "render",
    "RenderOptions": "render",
    "render_lowest_confidence": "render",
    "render_video": "render",
}

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


def __getattr__(name: str):
    """The reading side's names, imported on first use."""
    if name not in _READING:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_READING[name]}", __name__), name)
