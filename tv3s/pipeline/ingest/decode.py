"""The one decoder of the project: encoded video (PyAV) and image (Pillow) bytes to uint8 RGB.

Jobs, `tv3s segment`, exports and renders all decode through here, so a frame looks the
same wherever it is read (16-bit images scaled by 1/257, palettes and alpha converted).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np
from PIL import Image, UnidentifiedImageError

from ...schemas.errors import ErrorKind

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".avi", ".mov"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})

Source = bytes | str | Path  # encoded bytes, or a local file (opened, never read whole into memory)


def _opened(source: Source) -> io.BytesIO | str:
    return io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else str(source)


class DecodeError(Exception):
    """A member does not decode; `frames` says how many frames came out before the failure."""

    def __init__(self, kind: ErrorKind, message: str, hint: str, frames: int = 0):
        super().__init__(message)
        self.kind, self.hint, self.frames = kind, hint, frames


REENCODE = "re-encode it, e.g. ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4, and re-pack"


def decode_video(source: Source) -> Iterator[np.ndarray]:
    """Frames of an encoded video as uint8 RGB [H, W, 3], in presentation order.

    Raises DecodeError for an unreadable container, a codec this FFmpeg cannot decode,
    a video without frames, or damage mid-stream (after yielding the frames before it).
    """
    try:
        container = av.open(_opened(source), mode="r")
    except av.error.FFmpegError as exc:
        raise DecodeError(ErrorKind.corrupt_member, f"not a readable video container ({exc})", REENCODE) from exc
    count = 0
    with container:
        if not container.streams.video:
            raise DecodeError(ErrorKind.no_frames, "the container has no video stream (or it has no frames)", REENCODE)
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise DecodeError(
                ErrorKind.unsupported_codec, "this FFmpeg has no decoder for the video stream's codec", REENCODE
            )
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                count += 1
        except av.error.FFmpegError as exc:
            kind = (
                ErrorKind.unsupported_codec
                if isinstance(exc, av.error.DecoderNotFoundError)
                else ErrorKind.corrupt_member
            )
            raise DecodeError(kind, f"decoding failed after {count} frames ({exc})", REENCODE, count) from exc
    if count == 0:
        raise DecodeError(ErrorKind.no_frames, "the video has no decodable frames", REENCODE)


@dataclass(frozen=True)
class Image8:
    """A decoded frame and, when it was not 8-bit RGB, the mode it was converted from."""

    rgb: np.ndarray
    converted_from: str | None


CONVERTIBLE = frozenset({"L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "1", "La", "RGBa"})
SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def decode_image(source: Source) -> Image8:
    """uint8 RGB [H, W, 3] from JPEG/PNG bytes; other modes converted (16-bit scaled by 1/257)."""
    try:
        with Image.open(_opened(source)) as img:
            img.load()
            mode = img.mode
            if mode == "RGB":
                return Image8(np.asarray(img, dtype=np.uint8), None)
            if mode in SIXTEEN_BIT:
                wide = np.asarray(img).astype(np.uint32)
                grey = ((np.clip(wide, 0, 65535) + 128) // 257).astype(np.uint8)
                return Image8(np.repeat(grey[..., None], 3, axis=2), mode)
            if mode in CONVERTIBLE:
                return Image8(np.asarray(img.convert("RGB"), dtype=np.uint8), mode)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DecodeError(
            ErrorKind.corrupt_member,
            f"not a readable image ({exc})",
            "replace the frame with a valid JPEG/PNG and re-pack",
        ) from exc
    raise DecodeError(
        ErrorKind.bad_image_format,
        f"image mode {mode} cannot be turned into 8-bit RGB",
        "convert the frames to 8-bit RGB (e.g. PIL Image.convert('RGB')) and re-pack",
    )
