"""Walk a tar archive's headers without touching member data: name, data offset, size.

Why our own parser and not `tarfile`: `tarfile` reads sequentially through a file object,
so over object storage it would either download every byte or issue one tiny request
per header. Here every read goes through `read_at(offset, n)`, and `ChunkReader` turns
those into a few large ranged requests: headers of small members come out of one
buffered chunk, large members are skipped without being fetched.

Ustar, GNU long names ('L') and pax headers ('x': path, size) are understood, which
covers what Python's tarfile (webdataset's TarWriter) and GNU/BSD tar write. A damaged
archive yields every intact member before the damage and then raises `TarDefect`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ...schemas.errors import ErrorKind

BLOCK = 512
FILE_TYPES = frozenset({b"0", b"\x00", b"7"})
SKIPPED_TYPES = frozenset({b"5", b"g", b"K"})  # directories, pax globals, GNU long link names


@dataclass(frozen=True)
class TarMember:
    """A member: `offset` is where its data starts, `size` its length in bytes."""

    name: str
    offset: int
    size: int
    regular: bool = True  # False for links, devices, fifos: not readable as data


class TarDefect(Exception):
    """The archive is damaged at `offset`; members before it were yielded and are intact."""

    def __init__(self, kind: ErrorKind, offset: int, message: str, member: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.offset = offset
        self.member = member


@dataclass(frozen=True)
class Header:
    name: str
    size: int
    typeflag: bytes


class ChunkReader:
    """`read_at` served from one buffered chunk; a miss fetches [offset, offset + max(n, chunk)).

    Reads past the end of the object are clipped, so callers compare lengths to detect
    truncation rather than catching errors.
    """

    def __init__(self, read: Callable[[int, int], bytes], size: int, chunk: int = 1 << 20):
        self._read, self.size, self.chunk = read, size, chunk
        self._start, self._buf = 0, b""

    def read_at(self, offset: int, n: int) -> bytes:
        end = min(offset + n, self.size)
        if offset >= end:
            return b""
        if not (self._start <= offset and end <= self._start + len(self._buf)):
            fetch_end = min(self.size, offset + max(n, self.chunk))
            self._start, self._buf = offset, self._read(offset, fetch_end)
        return self._buf[offset - self._start : end - self._start]


def parse_header(block: bytes, offset: int) -> Header | None:
    """A 512-byte header, or None for an all-zero (end-of-archive) block."""
    if block == bytes(BLOCK):
        return None
    stored = _number(block[148:156], offset, "checksum")
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = unsigned - sum(b for b in block[:148] + block[156:] if b > 127) * 2  # old tars summed signed chars
    if stored not in (unsigned, signed):
        raise TarDefect(
            ErrorKind.corrupt_member,
            offset,
            "not a tar archive"
            if offset == 0
            else f"the tar header at byte {offset} is corrupt (bad checksum); nothing after it can be located",
        )
    name = _text(block[0:100])
    if block[257:262] == b"ustar" and block[345] and block[156:157] not in (b"L", b"K"):
        name = _text(block[345:500]) + "/" + name
    return Header(name, _number(block[124:136], offset, "size"), block[156:157])


def iter_members(read_at: Callable[[int, int], bytes], size: int) -> Iterator[TarMember]:
    """Every member in archive order; raises TarDefect after the last intact one if damaged."""
    offset, pending_name, pending_size = 0, None, None
    last = None
    while True:
        block = read_at(offset, BLOCK)
        if not block:
            raise TarDefect(
                ErrorKind.truncated_tar,
                offset,
                f"the archive ends at byte {offset} without its end-of-archive blocks"
                + (f" (after member {last})" if last else "")
                + "; it was probably cut short",
                last,
            )
        if len(block) < BLOCK:
            raise TarDefect(ErrorKind.truncated_tar, offset, f"the archive ends inside a header at byte {offset}", last)
        header = parse_header(block, offset)
        if header is None:
            return
        data = offset + BLOCK
        member_size = pending_size if pending_size is not None else header.size
        if data + member_size > size:
            name = pending_name or header.name
            raise TarDefect(
                ErrorKind.truncated_tar,
                offset,
                f"the archive ends inside member {name} ({size - data} of {member_size} bytes present)",
                name,
            )
        offset = data + -(-member_size // BLOCK) * BLOCK
        if header.typeflag == b"L":
            pending_name = _text(read_at(data, member_size))
        elif header.typeflag == b"x":
            pax = _pax(read_at(data, member_size))
            pending_name = pax.get("path", pending_name)
            pending_size = int(pax["size"]) if "size" in pax else pending_size
        elif header.typeflag in SKIPPED_TYPES:
            pending_name = pending_size = None
        else:
            last = pending_name or header.name
            yield TarMember(last, data, member_size, header.typeflag in FILE_TYPES)
            pending_name = pending_size = None


class MemberScan:
    """`iter_members` where damage ends the iteration and is kept in `defect` instead of raised.

    Consumers that group members into samples need the iteration to end cleanly: an
    exception raised while looking ahead for the next key would lose the last intact
    sample before the damage.
    """

    def __init__(self, read_at: Callable[[int, int], bytes], size: int):
        self._read_at, self._size = read_at, size
        self.defect: TarDefect | None = None

    def cut_through(self, key: str, key_of: Callable[[str], str]) -> bool:
        """True for the sample the damage cut through (its remaining members are lost with it)."""
        return self.defect is not None and self.defect.member is not None and key_of(self.defect.member) == key

    def __iter__(self) -> Iterator[TarMember]:
        try:
            yield from iter_members(self._read_at, self._size)
        except TarDefect as defect:
            self.defect = defect


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _number(raw: bytes, offset: int, what: str) -> int:
    if raw[:1] and raw[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    text = raw.replace(b"\x00", b" ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarDefect(
            ErrorKind.corrupt_member,
            offset,
            "not a tar archive"
            if offset == 0
            else f"the tar header at byte {offset} has a corrupt {what} field; nothing after it can be located",
        ) from None


def _pax(raw: bytes) -> dict[str, str]:
    """pax extended header records 'LEN key=value\\n'."""
    out, pos = {}, 0
    while pos < len(raw):
        space = raw.find(b" ", pos)
        if space < 0:
            break
        length = int(raw[pos:space])
        key, _, value = raw[space + 1 : pos + length - 1].partition(b"=")
        out[key.decode()] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out
