"""`tv3s segment`: label one video file or frame folder (local or s3://), masks and overlays into a folder.

`segment` reads the input through the data plane (the job's decoding, resize rule and
label maps), runs the model over it (stream or clip mode) and writes what `layout` names.
"""

from .layout import OutputExistsError, OutputLayout
from .segment import FramesError, OneVideo, SegmentOptions, open_video

__all__ = [
    "FramesError",
    "OneVideo",
    "OutputExistsError",
    "OutputLayout",
    "SegmentOptions",
    "open_video",
]
