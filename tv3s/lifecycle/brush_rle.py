"""Label Studio's brush RLE: how a brush region's mask travels in its task JSON.

The format (thi.ng rle-pack, as label-studio-converter's `brush.py` reads and writes it) is a
bit stream over the region's RGBA image flattened to H*W*4 bytes (Label Studio reads the
alpha channel: 255 inside the region, 0 outside):

    32 bits  number of values
     5 bits  word size - 1 (8-bit values: 7)
    4 x 4 bits  the four run-length field widths - 1 (3, 4, 8, 16 bits: 2, 3, 7, 15)
    then, until all values are out, one record:
      1 bit    1 = a run of one repeated value, 0 = literal values
      2 bits   which run-length field width follows
      n bits   length - 1
      a run: one word; literals: `length` words
    zero bits up to a whole byte

Runs here are of one value repeated, since a region's mask is flat; each record takes the
narrowest width its length fits, and a run longer than 2**16 values is split.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 8
RUN_WIDTHS = (3, 4, 8, 16)


def encode_rle(values: np.ndarray) -> list[int]:
    """The RLE bytes (as ints, how task JSON holds them) of a flat uint8 array."""
    values = np.asarray(values, dtype=np.uint8).ravel()
    fields = [f"{values.size:032b}", f"{WORD_BITS - 1:05b}", *(f"{w - 1:04b}" for w in RUN_WIDTHS)]
    for value, length in _runs(values):
        while length > 0:
            part = min(length, 1 << RUN_WIDTHS[-1])
            width = next(k for k, w in enumerate(RUN_WIDTHS) if part <= 1 << w)
            fields.append(f"1{width:02b}{part - 1:0{RUN_WIDTHS[width]}b}{value:0{WORD_BITS}b}")
            length -= part
    bits = "".join(fields)
    bits += "0" * (-len(bits) % 8)
    return list(int(bits, 2).to_bytes(len(bits) // 8, "big")) if bits else []


def decode_rle(data: list[int] | bytes) -> np.ndarray:
    """The flat uint8 values of RLE bytes (literal records and any word size up to 8 bits included)."""
    bits = "".join(f"{b:08b}" for b in bytes(data))
    reader = _Bits(bits)
    total = reader.read(32)
    word = reader.read(5) + 1
    widths = [reader.read(4) + 1 for _ in range(4)]
    if word > 8:
        raise ValueError(f"brush RLE of {word}-bit words: Label Studio masks are 8-bit")
    out = np.zeros(total, np.uint8)
    i = 0
    while i < total:
        repeated = reader.read(1)
        end = min(i + 1 + reader.read(widths[reader.read(2)]), total)
        if repeated:
            out[i:end] = reader.read(word)
        else:
            for k in range(i, end):
                out[k] = reader.read(word)
        i = end
    return out


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """RLE of a boolean region [H, W] as Label Studio draws it: RGBA, 255 on every channel inside."""
    return encode_rle(np.repeat(np.where(mask, 255, 0).astype(np.uint8).ravel(), 4))


def rle_to_mask(data: list[int] | bytes, height: int, width: int) -> np.ndarray:
    """The boolean region [H, W] of a brush result (its alpha channel), checked against the image size."""
    values = decode_rle(data)
    if values.size != height * width * 4:
        raise ValueError(
            f"the brush RLE holds {values.size} values, a {width}x{height} RGBA image has {height * width * 4}"
        )
    return values.reshape(height, width, 4)[:, :, 3] > 0


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """(value, length) of each run of equal values."""
    if values.size == 0:
        return []
    starts = np.flatnonzero(np.diff(values.astype(np.int16))) + 1
    edges = np.concatenate([[0], starts, [values.size]])
    return [(int(values[a]), int(b - a)) for a, b in zip(edges[:-1], edges[1:])]


class _Bits:
    """Reads unsigned fields off a string of '0'/'1'."""

    def __init__(self, bits: str) -> None:
        self.bits, self.at = bits, 0

    def read(self, n: int) -> int:
        if self.at + n > len(self.bits):
            raise ValueError("the brush RLE ends in the middle of a record: it was cut short")
        value = int(self.bits[self.at : self.at + n], 2)
        self.at += n
        return value
