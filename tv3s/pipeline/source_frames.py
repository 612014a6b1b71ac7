"""Re-read source frames by the reference a frames row keeps (URL, tar member, position).

Rendering overlays needs the pixels the masks were computed from, and the manifest only
stores where they are. This is a deliberately small reader (a video or image file at
any fsspec URL, or a video or image member of a tar shard) until the data plane's
readers (tv3s.pipeline.readers) offer the same by-reference access; then it should go.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import av
import fsspec
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class SourceError(OSError):
    """A source frame cannot be read again; the message names it and what to do."""


@dataclass(frozen=True)
class FrameRef:
    url: str
    member: str | None
    index: int  # position inside the file or member (decode order; 0 for an image)


def read_frames(refs: Iterable[FrameRef], storage_options: dict | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 [H, W, 3] frames for `refs`, in order, pulling one reference at a time.

    A video stays open while the references walk forward through it, so consecutive
    frames cost one decoding pass; a jump back or to another file reopens.
    """
    source: _Source | None = None
    try:
        for ref in refs:
            if source is None or not source.serves(ref):
                if source is not None:
                    source.close()
                source = _Source(ref.url, ref.member, storage_options or {})
            yield source.frame(ref.index)
    finally:
        if source is not None:
            source.close()


class _Source:
    """One open file or tar member, decoded forward on demand."""

    def __init__(self, url: str, member: str | None, storage_options: dict) -> None:
        self.url, self.member = url, member
        self.name = url if member is None else f"{url}::{member}"
        self.stack = contextlib.ExitStack()
        self.position = -1
        self.last: np.ndarray | None = None
        try:
            handle = self.stack.enter_context(fsspec.open(url, "rb", **storage_options))
        except FileNotFoundError as exc:
            self.close()
            raise SourceError(f"source {url} is gone ({exc}); render with --masks-only, or restore it") from exc
        if member is not None:
            handle = self._member(handle)
        self.image: np.ndarray | None = None
        self.frames: Iterator[av.VideoFrame] | None = None
        if self.name.lower().endswith(IMAGE_SUFFIXES):
            with Image.open(io.BytesIO(handle.read())) as img:
                self.image = np.asarray(img.convert("RGB"))
        else:
            try:
                container = self.stack.enter_context(av.open(handle, mode="r"))
            except av.FFmpegError as exc:
                self.close()
                raise SourceError(f"cannot decode {self.name} ({exc}); render with --masks-only") from exc
            self.frames = iter(container.decode(video=0))

    def _member(self, handle) -> object:
        try:
            tar = self.stack.enter_context(tarfile.open(fileobj=handle, mode="r:*"))
            extracted = tar.extractfile(self.member)
        except (tarfile.TarError, KeyError) as exc:
            self.close()
            raise SourceError(
                f"cannot read member {self.member} of {self.url} ({exc}); render with --masks-only"
            ) from exc
        if extracted is None:
            self.close()
            raise SourceError(f"member {self.member} of {self.url} is not a regular file")
        return extracted

    def serves(self, ref: FrameRef) -> bool:
        same = (ref.url, ref.member) == (self.url, self.member)
        return same and (self.image is not None or ref.index >= self.position)

    def frame(self, index: int) -> np.ndarray:
        if self.image is not None:
            if index != 0:
                raise SourceError(f"{self.name} is an image: it has frame 0 only, not {index}")
            return self.image
        try:
            while self.position < index:
                frame = next(self.frames, None)
                if frame is None:
                    raise SourceError(f"{self.name} ends before frame {index}; render with --masks-only")
                self.position += 1
                if self.position == index:
                    self.last = frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise SourceError(f"cannot decode frame {index} of {self.name} ({exc}); render with --masks-only") from exc
        return self.last

    def close(self) -> None:
        self.stack.close()
