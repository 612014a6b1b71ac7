"""Real test media for the data-plane tests: stamped frames, PyAV-encoded videos, tar shards.

Every frame carries its video number and frame number as a row of black/white 8x8
blocks, which survive lossy coding, so a test can check from the decoded pixels alone
that each frame arrived exactly once and in order.
"""

from __future__ import annotations

import io
import json
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tv3s.pipeline.synthetic.archive import tar_shard

from .clips import generate_demo_clip

BITS = 16
BLOCK = 8


def stamped_frames(video: int, start: int, count: int, height: int = 96, width: int = 128) -> np.ndarray:
    """[count, H, W, 3] uint8 driving-like frames; frame t is stamped with (video, start + t)."""
    frames = generate_demo_clip(count, height, width, seed=video)
    for t in range(count):
        code = (video << 10) | (start + t)
        for bit in range(BITS):
            value = 255 if code >> bit & 1 else 0
            frames[t, :BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = value
    return frames


def read_stamp(frame: np.ndarray) -> tuple[int, int]:
    """(video, frame number) from a stamped frame at its stamped size."""
    code = 0
    for bit in range(BITS):
        block = frame[1 : BLOCK - 1, bit * BLOCK + 1 : (bit + 1) * BLOCK - 1]
        code |= int(block.mean() > 127) << bit
    return code >> 10, code & 1023


def encode(frames: np.ndarray, codec: str = "libx264", fmt: str = "mp4", fps: int = 12) -> bytes:
    """Encode frames [T, H, W, 3] with PyAV into an in-memory container."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12"}
        elif codec == "mpeg4":
            stream.codec_context.qscale = 2  # fine quantiser: the stamp blocks stay clean
        elif codec == "libvpx-vp9":
            stream.options = {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return buf.getvalue()


def encode_image(frame: np.ndarray, fmt: str = "jpeg", mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(frame)
    if mode:
        image = image.convert(mode)
    image.save(buf, format=fmt, **({"quality": 95} if fmt == "jpeg" else {}))
    return buf.getvalue()


def segment_sample(video_id: str, index: int, data: bytes, ext: str = "mp4", **meta) -> dict:
    return {
        "__key__": f"{video_id}/{index:06d}",
        ext: data,
        "json": json.dumps({"video_id": video_id, "segment_index": index, **meta}).encode(),
    }


def frame_sample(video_id: str, index: int, data: bytes, ext: str = "jpg") -> dict:
    return {"__key__": f"{video_id}/{index:06d}", ext: data}


def tar_bytes(samples: list[dict]) -> bytes:
    """A real WebDataset shard (webdataset's TarWriter) holding `samples`, as bytes."""
    return tar_shard(samples)


def tar_in_format(samples: list[dict], fmt: int) -> bytes:
    """A shard of `samples` written by tarfile in `fmt`, members in webdataset's order (sorted
    extensions): PAX_FORMAT writes pax path records for long or non-ASCII names, GNU_FORMAT
    'L' long-name records for long ones."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for sample in samples:
            for ext in sorted(k for k in sample if not k.startswith("__")):
                info = tarfile.TarInfo(f"{sample['__key__']}.{ext}")
                info.size = len(sample[ext])
                tar.addfile(info, io.BytesIO(sample[ext]))
    return buf.getvalue()


def pax_record(body: bytes, end: bytes = b"\n") -> bytes:
    """One pax extended header record 'LEN key=value\\n' (LEN counts its own digits); `end`
    other than a newline makes a malformed one."""
    rest = b" " + body + end
    length = len(rest) + 1
    while length != len(rest) + len(str(length)):  # the digits count themselves (tarfile's loop)
        length = len(rest) + len(str(length))
    return str(length).encode() + rest


def write_shard(path: Path, samples: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tar_bytes(samples))
    return str(path)
