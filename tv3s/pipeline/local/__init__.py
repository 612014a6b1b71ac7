"""`tv3s segment`: label one local video file or frame folder, masks and overlays into a folder.

`frames` reads the input in chunks (through the data plane's decoder), `segment` runs the
model over them (stream or clip mode) and writes what `layout` names.
"""

from .frames import FramesError, FramesInfo, open_frames, probe_frames
from .layout import OutputExistsError, OutputLayout
from .segment import SegmentOptions

__all__ = [
    "FramesError",
    "FramesInfo",
    "OutputExistsError",
    "OutputLayout",
    "SegmentOptions",
    "open_frames",
    "probe_frames",
]
