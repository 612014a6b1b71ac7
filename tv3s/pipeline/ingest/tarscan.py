"""Walk a tar archive's headers without touching member data: name, data offset, size.

Why our own parser and not `tarfile`: `tarfile` reads sequentially through a file object,
so over object storage it would either download every byte or issue one tiny request
per header. Here every read goes through `read_at(offset, n)`, and `ChunkReader` turns
those into a few large ranged requests: headers of small members come out of one
buffered chunk, large members are skipped without being fetched.

Ustar, GNU long names ('L') and pax headers ('x': path, size) are understood, which
covers what Python's tarfile (webdataset's TarWriter) and GNU/BSD tar write. A damaged
archive yields every intact member before the damage and then raises `TarDefect`; so does
a hostile one: sizes are never negative, so every step moves on by at least one block and
the scan ends on any input, and a header or record it cannot read is damage, never
another exception. Names are decoded as UTF-8 with surrogateescape, as tarfile does: the
scan stays lossless (a name's bytes can be recovered), and consumers that store names
decide what to do with one that is not UTF-8.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ...schemas.errors import ErrorKind

BLOCK = 512
FILE_TYPES = frozenset({b"0", b"\x00", b"7"})
SKIPPED_TYPES = frozenset({b"5", b"g", b"K"})  # directories, pax globals, GNU long link names
EXTENDED_TYPES = frozenset({b"L", b"x"})  # GNU long name, pax header: they name or size the next member
EXTENDED_MAX = 1 << 20  # bytes of one GNU long-name or pax header: more is a corrupt size field, not a name
PAX_LENGTH = re.compile(rb"(\d{1,19}) ")  # 19 digits hold any 64-bit size; int() refuses past 4300
DIGITS = re.compile(rb"\d{1,19}")
OCTAL = re.compile(rb"[0-7]+")
COMPRESSED = (  # magic bytes a compressed file starts with: what it is, and what undoes it
    (b"\x1f\x8b", "gzip-compressed file", "gunzip it"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed file", "unzstd it"),
    (b"BZh", "bzip2-compressed file", "bunzip2 it"),
    (b"\xfd7zXZ\x00", "xz-compressed file", "unxz it"),
    (b"PK\x03\x04", "zip archive", "unzip it and tar the files"),
)


@dataclass(frozen=True)
class TarMember:
    """A member: `offset` is where its data starts, `size` its length in bytes."""

    name: str
    offset: int
    size: int
    regular: bool = True  # False for links, devices, fifos: not readable as data


class TarDefect(Exception):
    """The archive is damaged at `offset`; members before it were yielded and are intact.

    `member` is the member the damage cut through (its sample is lost with it), None when
    the damage fell between members.
    """

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
    stored = _number(block[148:156])
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = unsigned - sum(b for b in block[:148] + block[156:] if b > 127) * 2  # old tars summed signed chars
    if stored not in (unsigned, signed):
        raise _corrupt_header(block, offset, "bad checksum")
    size = _number(block[124:136])
    if size is None:
        raise _corrupt_header(block, offset, "its size field is not an octal number")
    name = _text(block[0:100])
    if block[257:262] == b"ustar" and block[345] and block[156:157] not in (b"L", b"K"):
        name = _text(block[345:500]) + "/" + name
    return Header(name, size, block[156:157])


def iter_members(read_at: Callable[[int, int], bytes], size: int) -> Iterator[TarMember]:
    """Every member in archive order; raises TarDefect after the last intact one if damaged.

    The defect's `member` is the member the damage cut through, when one was: an archive
    that ends between members (without its end-of-archive blocks, or inside a header)
    loses no member before it, so no sample before it is cut either. Damage to a header
    after a long-name or pax record loses the member that record named.
    """
    offset, pending_name, pending_size = 0, None, None
    last = None
    while True:
        try:
            block = read_at(offset, BLOCK)
            if len(block) < BLOCK:
                if offset == 0 and (compressed := _compressed(block)):
                    raise TarDefect(ErrorKind.corrupt_member, 0, compressed)
                if not block:
                    raise _cut_short(offset, "without its end-of-archive blocks", last)
                raise _cut_short(
                    offset, "inside its end-of-archive blocks" if not any(block) else "inside the header", last
                )
            header = parse_header(block, offset)
            if header is None:
                return
            data = offset + BLOCK
            member_size = pending_size if pending_size is not None else header.size
            if data + member_size > size:
                if header.typeflag in EXTENDED_TYPES:
                    raise _cut_short(offset, "inside the long-name or pax header", last)
                name = pending_name or header.name
                raise TarDefect(
                    ErrorKind.truncated_tar,
                    offset,
                    f"the archive ends inside member {name} ({size - data} of {member_size} bytes present)",
                    name,
                )
            if header.typeflag == b"L":
                pending_name = _text(_extended(read_at, data, member_size, offset))
            elif header.typeflag == b"x":
                path, pax_size = _pax(_extended(read_at, data, member_size, offset), offset)
                pending_name = path if path is not None else pending_name
                pending_size = pax_size if pax_size is not None else pending_size
        except TarDefect as defect:
            defect.member = defect.member or pending_name
            raise
        if header.typeflag in SKIPPED_TYPES:
            pending_name = pending_size = None
        elif header.typeflag not in EXTENDED_TYPES:
            last = pending_name or header.name
            yield TarMember(last, data, member_size, header.typeflag in FILE_TYPES)
            pending_name = pending_size = None
        offset = data + -(-member_size // BLOCK) * BLOCK


def _cut_short(offset: int, where: str, last: str | None) -> TarDefect:
    """The archive ends between members: none is cut (but one a long-name or pax record announced)."""
    after = f" (after member {last})" if last else ""
    return TarDefect(
        ErrorKind.truncated_tar, offset, f"the archive ends {where} at byte {offset}{after}; it was probably cut short"
    )


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


def _decoded(raw: bytes) -> str:
    """A name as tarfile decodes it: UTF-8, with bytes that are not UTF-8 kept as surrogates (lossless)."""
    return raw.decode("utf-8", "surrogateescape")


def _text(raw: bytes) -> str:
    return _decoded(raw.split(b"\x00", 1)[0])


def _number(raw: bytes) -> int | None:
    """A header's numeric field (octal, or GNU base-256); None when it is neither.

    Only octal digits are accepted (`int` would also take a sign or underscores): a
    negative size would send the scan back into the archive, round and round.
    """
    if raw[:1] and raw[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    text = raw.replace(b"\x00", b" ").strip()
    if not text:
        return 0
    return int(text, 8) if OCTAL.fullmatch(text) else None


def _corrupt_header(block: bytes, offset: int, what: str) -> TarDefect:
    """Damage in a header; at byte 0 the file is no tar at all, and a compressed one is named."""
    if offset == 0:
        return TarDefect(ErrorKind.corrupt_member, 0, _compressed(block) or "not a tar archive")
    return TarDefect(
        ErrorKind.corrupt_member,
        offset,
        f"the tar header at byte {offset} is corrupt ({what}); nothing after it can be located",
    )


def _compressed(head: bytes) -> str | None:
    """What a file that starts with `head` is, when its magic bytes name a compressed format.

    Asked only when the first block is no tar header, so a member name that happens to
    start like a magic number ('BZh...') is never mistaken for one.
    """
    for magic, what, undo in COMPRESSED:
        if head.startswith(magic):
            return f"this is a {what} ({magic.hex(' ')}); tv3s reads uncompressed tar shards: {undo} or re-pack"
    return None


def _extended(read_at: Callable[[int, int], bytes], data: int, size: int, offset: int) -> bytes:
    """The data of a long-name or pax header; one of unbelievable size is damage, not fetched into memory."""
    if size > EXTENDED_MAX:
        raise TarDefect(
            ErrorKind.corrupt_member,
            offset,
            f"the long-name or pax header at byte {offset} claims {size} bytes (more than {EXTENDED_MAX}): "
            "its size field is corrupt; nothing after it can be located",
        )
    return read_at(data, size)


def _pax(raw: bytes, offset: int) -> tuple[str | None, int | None]:
    """The path and size a pax extended header sets (None for what it leaves alone).

    Keys stay bytes: only path and size are read, and a key that is not UTF-8 is just
    another key.
    """
    records = dict(_pax_records(raw, offset))
    size = records.get(b"size")
    if size is not None and not DIGITS.fullmatch(size):
        raise _bad_pax(offset, f"size {size[:32]!r} is not a number")
    path = records.get(b"path")
    return (None if path is None else _decoded(path)), (None if size is None else int(size))


def _pax_records(raw: bytes, offset: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of each 'LEN key=value\\n' record.

    A malformed record is damage: its length is what finds the next record, and a header
    that cannot be read may have renamed or resized the member after it.
    """
    pos = 0
    while pos < len(raw):
        length = PAX_LENGTH.match(raw, pos)
        end = pos + int(length.group(1)) if length else pos
        if length is None or not length.end() < end <= len(raw) or raw[end - 1 : end] != b"\n":
            raise _bad_pax(offset, f"malformed record {raw[pos : pos + 32]!r}")
        key, equals, value = raw[length.end() : end - 1].partition(b"=")
        if not equals:
            raise _bad_pax(offset, f"record {raw[pos : pos + 32]!r} has no '='")
        yield key, value
        pos = end


def _bad_pax(offset: int, what: str) -> TarDefect:
    return TarDefect(
        ErrorKind.corrupt_member,
        offset,
        f"the pax header at byte {offset} is corrupt ({what}); nothing after it can be located",
    )
