"""Re-read source frames by the reference a frames row keeps (URL, tar member, position).

Rendering overlays and exporting training shards need the pixels the masks were computed
from, and the manifest only stores where they are. Bytes come through `Store` (retries,
ranged reads): a tar member is located by walking the shard's headers (`tarscan`, a few
large requests, no member data fetched) and then read with one ranged request. Decoding
is the data plane's (`readers.decode_video` / `decode_image`), so a frame re-read here is
the frame the model saw.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ..storage import StorageError, Store, redact_url
from .decode import DecodeError, decode_image, decode_video
from .tarscan import ChunkReader, TarDefect, TarMember, iter_members

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
SHARD_MAPS_KEPT = 8  # member maps of recently used shards (a map is a few KB per thousand members)


class SourceError(OSError):
    """A source frame cannot be read again; the message names it and what to do."""


@dataclass(frozen=True)
class FrameRef:
    url: str
    member: str | None
    index: int  # position inside the file or member (decode order; 0 for an image)


class SourceReader:
    """Frames by reference, in order, pulling one reference at a time.

    A video stays open while the references walk forward through it, so consecutive
    frames cost one decoding pass; a jump back or to another file reopens. `hint` ends
    every error message: what the caller's user can do instead (e.g. a --masks-only flag).
    """

    def __init__(self, store: Store, hint: str = "restore the source or re-run the job on a copy that exists") -> None:
        self.store, self.hint = store, hint
        self._maps: OrderedDict[str, dict[str, TarMember]] = OrderedDict()
        self._open: tuple[str, str | None] | None = None
        self._frames: Iterator[np.ndarray] | None = None
        self._image: np.ndarray | None = None
        self._position = -1
        self._last: np.ndarray | None = None

    def read(self, refs: Iterable[FrameRef]) -> Iterator[np.ndarray]:
        for ref in refs:
            yield self.frame(ref)

    def frame(self, ref: FrameRef) -> np.ndarray:
        """RGB uint8 [H, W, 3] of one reference; raises SourceError naming it."""
        name = _name(ref)
        if (ref.url, ref.member) != self._open or (self._image is None and ref.index < self._position):
            self._reopen(ref, name)
        if self._image is not None:
            if ref.index != 0:
                raise SourceError(f"{name} is an image: it has frame 0 only, not {ref.index}; {self.hint}")
            return self._image
        try:
            while self._position < ref.index:
                frame = next(self._frames, None)
                if frame is None:
                    raise SourceError(f"{name} ends before frame {ref.index}; {self.hint}")
                self._position += 1
                self._last = frame
        except (DecodeError, StorageError) as exc:
            self._open = None
            raise SourceError(f"cannot decode frame {ref.index} of {name} ({exc}); {self.hint}") from exc
        return self._last

    def _reopen(self, ref: FrameRef, name: str) -> None:
        self._open, self._frames, self._image, self._position, self._last = None, None, None, -1, None
        target = ref.member if ref.member is not None else ref.url
        if target.lower().endswith(IMAGE_SUFFIXES):
            try:
                self._image = decode_image(self._bytes(ref, name)).rgb
            except DecodeError as exc:
                raise SourceError(f"cannot decode {name} ({exc}); {self.hint}") from exc
        else:
            self._frames = decode_video(self._bytes(ref, name) if ref.member is not None else self._file(ref, name))
        self._open = (ref.url, ref.member)

    def _file(self, ref: FrameRef, name: str) -> BinaryIO:
        """A raw video file, read in ranges as it is decoded (not downloaded whole)."""
        try:
            return self.store.open(ref.url)
        except StorageError as exc:
            raise SourceError(f"cannot read {name} ({exc}); {self.hint}") from exc

    def _bytes(self, ref: FrameRef, name: str) -> bytes:
        try:
            if ref.member is None:
                return self.store.read_all(ref.url)
            member = self._members(ref.url).get(ref.member)
            if member is None or not member.regular:
                raise SourceError(f"{name}: the shard has no such regular member any more; {self.hint}")
            return self.store.read(ref.url, member.offset, member.offset + member.size)
        except StorageError as exc:
            raise SourceError(f"cannot read {name} ({exc}); {self.hint}") from exc
        except FileNotFoundError as exc:
            raise SourceError(f"source {redact_url(ref.url)} is gone ({exc}); {self.hint}") from exc

    def _members(self, url: str) -> dict[str, TarMember]:
        if url in self._maps:
            self._maps.move_to_end(url)
            return self._maps[url]
        size = self.store.size(url)
        reader = ChunkReader(lambda start, end: self.store.read(url, start, end), size)
        members: dict[str, TarMember] = {}
        try:
            for member in iter_members(reader.read_at, size):
                members[member.name] = member
        except TarDefect:
            pass  # members before the damage are intact and readable; a later one is reported missing
        self._maps[url] = members
        if len(self._maps) > SHARD_MAPS_KEPT:
            self._maps.popitem(last=False)
        return members


def read_frames(refs: Iterable[FrameRef], store: Store, hint: str) -> Iterator[np.ndarray]:
    """RGB uint8 [H, W, 3] frames for `refs`, in order (see SourceReader)."""
    return SourceReader(store, hint).read(refs)


def _name(ref: FrameRef) -> str:
    url = redact_url(ref.url)
    return url if ref.member is None else f"{url}::{ref.member}"
