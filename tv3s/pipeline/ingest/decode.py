"""The one decoder of the project: encoded video (PyAV) and image (Pillow) bytes to uint8 RGB.

Jobs, `tv3s segment`, exports and renders all decode through here, so a frame looks the
same wherever it is read (16-bit images scaled by 1/257, palettes and alpha converted).
Images are Pillow's, but for PNGs of 16 bits per colour channel: Pillow has no mode for
them and keeps only the high byte of each sample, so FFmpeg's PNG decoder reads those.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import numpy as np
from PIL import Image, UnidentifiedImageError

from ...schemas.errors import ErrorKind

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".avi", ".mov"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})

# encoded bytes, a local file, or a seekable binary file object such as `Store.open`'s (read as decoding
# needs it, never whole into memory)
Source = bytes | str | Path | BinaryIO


def _opened(source: Source) -> io.BytesIO | str | BinaryIO:
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source)
    return str(source) if isinstance(source, str | Path) else source


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
# Pillow's raw modes for PNGs of 16 bits per colour channel (it opens them as 8-bit RGB/RGBA) -> the mode reported
SIXTEEN_BIT_COLOUR = {"RGB;16B": "RGB;16", "RGBA;16B": "RGBA;16", "LA;16B": "LA;16"}
REPLACE_IMAGE = "replace the frame with a valid JPEG/PNG and re-pack"


def decode_image(source: Source) -> Image8:
    """uint8 RGB [H, W, 3] from JPEG/PNG bytes; other modes converted (16-bit scaled by 1/257)."""
    try:
        with Image.open(_opened(source)) as img:
            wide_colour = SIXTEEN_BIT_COLOUR.get(_png_raw_mode(img))
            if wide_colour is not None:
                return Image8(_scaled(_png_rgb48(source)), wide_colour)
            img.load()
            mode = img.mode
            if mode == "RGB":
                return Image8(np.asarray(img, dtype=np.uint8), None)
            if mode in SIXTEEN_BIT:
                grey = _scaled(np.asarray(img))
                return Image8(np.repeat(grey[..., None], 3, axis=2), mode)
            if mode in CONVERTIBLE:
                return Image8(np.asarray(img.convert("RGB"), dtype=np.uint8), mode)
    except UnidentifiedImageError as exc:  # its message holds the repr of our BytesIO, not worth showing
        raise DecodeError(
            ErrorKind.corrupt_member,
            "not a readable image (cannot identify the image format: PNG/JPEG expected)",
            REPLACE_IMAGE,
        ) from exc
    except (OSError, ValueError, Image.DecompressionBombError, av.error.FFmpegError) as exc:
        raise DecodeError(ErrorKind.corrupt_member, f"not a readable image ({exc})", REPLACE_IMAGE) from exc
    raise DecodeError(
        ErrorKind.bad_image_format,
        f"image mode {mode} cannot be turned into 8-bit RGB",
        "convert the frames to 8-bit RGB (e.g. PIL Image.convert('RGB')) and re-pack",
    )


def _png_raw_mode(img: Image.Image) -> str | None:
    """How Pillow will unpack a PNG's samples (e.g. 'RGB;16B'), read before `load` clears it."""
    return img.tile[0].args if img.format == "PNG" and img.tile else None


def _png_rgb48(source: Source) -> np.ndarray:
    """uint16 RGB [H, W, 3] of a 16-bit colour PNG, every bit kept (alpha dropped, grey repeated)."""
    with av.open(_opened(source), mode="r", format="png_pipe") as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb48le")
    raise ValueError("the PNG holds no image")


def _scaled(wide: np.ndarray) -> np.ndarray:
    """16-bit samples as uint8 by the 1/257 rule (rounded: 257 maps to 1, 65535 to 255)."""
    return ((np.clip(wide.astype(np.int64), 0, 65535) + 128) // 257).astype(np.uint8)
