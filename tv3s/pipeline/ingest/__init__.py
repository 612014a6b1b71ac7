"""Reading the archive: shards and their index in, one video's frames out, in order.

A shard's tar headers are walked without fetching member data (`tarscan`); members are
grouped into WebDataset samples (`samples`); `build_index` writes one row per sample (shards
scanned by threads, or by Ray tasks on a cluster: `scan_tasks`) and
`plan_videos` orders each video's samples into runs. Readers then fetch a video's bytes
with ranged requests (`fetch`), decode them (`decode`, the project's only decoder),
resize them by the official rule (`resize`) and hand them over in chunks that say where
the stream state must restart (`chunks`). `pack` makes shards from video files;
`source_frames` re-reads single frames for exports and renders.

Raw media go the same way: `inputs` tells shards from video files, folders and prefixes,
`sources` groups files into videos (the rule `pack` uses too) and `media_index` probes them
into rows of the same index, whose media is the whole file (read in ranges as it decodes).
"""

from .chunks import CursorState, FrameChunk, FrameOrigin, UnitEnd, iter_units, iter_video, iter_videos
from .decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, DecodeError, Image8, decode_image, decode_video
from .fetch import ShardSample, read_media_batch, read_sample, stream_shard
from .index import IndexResult, VideoRun, build_index, plan_videos, read_index
from .inputs import Inputs, index_inputs, resolve_inputs
from .media_index import WHOLE_FILE, Probe, ProbeError, index_media, probe_video
from .pack import PackOptions
from .resize import ResizeRule, resize_frames
from .samples import DEFAULT_KEY_PATTERN, SampleError, SampleId, identify
from .source_frames import FrameRef, SourceError, SourceReader, read_frames
from .sources import SourceVideo, discover, frame_numbers, natural_key
from .tarscan import ChunkReader, MemberScan, TarDefect, TarMember, iter_members

__all__ = [
    "DEFAULT_KEY_PATTERN",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "WHOLE_FILE",
    "ChunkReader",
    "CursorState",
    "DecodeError",
    "FrameChunk",
    "FrameOrigin",
    "FrameRef",
    "Image8",
    "IndexResult",
    "Inputs",
    "MemberScan",
    "PackOptions",
    "Probe",
    "ProbeError",
    "ResizeRule",
    "SampleError",
    "SampleId",
    "ShardSample",
    "SourceError",
    "SourceReader",
    "SourceVideo",
    "TarDefect",
    "TarMember",
    "UnitEnd",
    "VideoRun",
    "build_index",
    "decode_image",
    "decode_video",
    "discover",
    "frame_numbers",
    "identify",
    "index_inputs",
    "index_media",
    "iter_members",
    "iter_units",
    "iter_video",
    "iter_videos",
    "natural_key",
    "plan_videos",
    "probe_video",
    "read_frames",
    "read_index",
    "read_media_batch",
    "read_sample",
    "resize_frames",
    "resolve_inputs",
    "stream_shard",
]
