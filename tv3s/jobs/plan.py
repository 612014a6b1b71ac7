"""From an index to chains: every video an ordered list of commit units, longest first.

A *unit* is what is committed at once: one segment of a video-file video, or a block of
`frames_per_unit` frames of a frame-sequence video (numbered frame // frames_per_unit).
A *chain* is the units one actor processes in order carrying the state: a whole video
(policy exact), or with policy split a slice of a long video that starts by re-running
`warmup_frames` frames before its first unit (its state is then approximate, and its rows
say so).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import groupby

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..pipeline.ingest.index import VideoRun
from ..pipeline.ingest.order import OrderedIndex, order_index
from ..schemas.errors import InputError
from ..schemas.job import StateSpec


@dataclass(frozen=True)
class Unit:
    """One commit unit: its number in the video, its index rows (in order), and its run."""

    index: int
    rows: tuple[dict, ...]
    run: int

    @property
    def weight(self) -> int:
        """Work estimate: frames when the json says, else bytes / 10 kB (about a frame of video)."""
        return sum(r["frames"] if r["frames"] is not None else max(1, r["media_size"] // 10_000) for r in self.rows)


@dataclass(frozen=True)
class Chain:
    """Units one actor labels in order, carrying the state; `warmup` units are only re-run."""

    video_id: str
    sample_type: str
    units: tuple[Unit, ...]
    video_units: tuple[int, ...]  # unit numbers of the whole video (its summary row waits for all of them)
    warmup: tuple[Unit, ...] = ()
    warmup_frames: int = 0  # frames in `warmup` (whole units: at least state.warmup_frames)
    content: str = ""  # digest of the video's index rows (`video_contents`): what is labelled

    @property
    def id(self) -> str:
        return f"{self.video_id}@{self.units[0].index}"

    @property
    def weight(self) -> int:
        return sum(u.weight for u in self.units)

    def runs(self, units: Sequence[Unit]) -> list[VideoRun]:
        """The units as data-plane runs (a new run wherever the index found a gap)."""
        rows = [(u.run, r) for u in units for r in u.rows]
        return [
            VideoRun(self.video_id, self.sample_type, run, tuple(r for _, r in group))
            for run, group in groupby(rows, key=lambda x: x[0])
        ]


def unit_number(sample_type: str, sample_index: int, frames_per_unit: int) -> int:
    return sample_index if sample_type == "segment" else sample_index // frames_per_unit


def plan_chains(table: pa.Table, state: StateSpec) -> tuple[list[Chain], list[InputError]]:
    """Chains of every video in the index, heaviest first (so the long ones start early)."""
    plan, errors = ChainPlan.build(table, state)
    return list(plan), errors


@dataclass(frozen=True)
class ChainPlan:
    """Every chain of an index as a few arrays over the ordered index: no object per row or unit.

    A chain becomes a `Chain` (with its rows as dicts) only when it is handed out
    (`chain(k)`), so a driver holds the archive's index as columns and the chains in
    flight, not millions of Python objects. Units are consecutive rows of one video with
    one unit number; chain k covers units [first[k], stop[k]) after warm-up units
    [warm[k], first[k]).
    """

    ordered: OrderedIndex
    unit_row: np.ndarray  # first row of each unit, then the row count
    unit_number: np.ndarray
    unit_run: np.ndarray
    unit_weight: np.ndarray
    video_units: np.ndarray  # first unit of each video, then the unit count
    chain_video: np.ndarray  # video number of each chain
    first: np.ndarray
    stop: np.ndarray
    warm: np.ndarray
    content: pa.Array  # digest of each video's rows (`video_contents`)

    @classmethod
    def build(cls, table: pa.Table, state: StateSpec) -> tuple[ChainPlan, list[InputError]]:
        ordered, errors = order_index(table)
        number = np.where(ordered.is_segment, ordered.index, ordered.index // state.frames_per_unit)
        unit_start = ordered.video_start.copy()
        unit_start[1:] |= number[1:] != number[:-1]  # a gap inside a frame block stays one unit
        unit_row = np.append(np.flatnonzero(unit_start), len(number))
        weight = _row_weights(ordered.table)
        unit_weight = np.add.reduceat(weight, unit_row[:-1]) if len(weight) else weight
        video_of_unit = np.cumsum(ordered.video_start)[unit_row[:-1]] - 1
        video_units = np.searchsorted(video_of_unit, np.arange(int(video_of_unit[-1]) + 2 if len(number) else 1))
        unit_run = ordered.run[unit_row[:-1]]
        first, stop, warm, chain_video = _cut_chains(video_units, unit_weight, unit_run, state)
        content = video_contents(ordered.table, ordered.video_bounds)
        units = number[unit_row[:-1]]
        return cls(
            ordered, unit_row, units, unit_run, unit_weight, video_units, chain_video, first, stop, warm, content
        ), errors

    def __len__(self) -> int:
        return len(self.first)

    @property
    def weights(self) -> np.ndarray:
        """Work estimate of each chain (frames, or bytes / 10 kB)."""
        cumulative = np.concatenate([[0], np.cumsum(self.unit_weight)])
        return cumulative[self.stop] - cumulative[self.first]

    @property
    def videos(self) -> int:
        return len(self.video_units) - 1

    @property
    def units(self) -> int:
        return len(self.unit_number)

    def video_ids(self, videos: np.ndarray) -> pa.Array:
        """The ids of the videos numbered `videos`."""
        return self.ordered.table["video_id"].take(pa.array(self.ordered.video_bounds[:-1][videos]))

    def split_videos(self) -> list[str]:
        """Ids of the videos cut into several chains (policy split), as often as they have chains."""
        counts = np.bincount(self.chain_video, minlength=self.videos)
        return self.video_ids(self.chain_video[counts[self.chain_video] > 1]).to_pylist()

    def table(self) -> pa.Table:
        """One row per chain, in plan order: what a job records of its plan (and `tv3s status` reads)."""
        order = self.order()
        video = self.chain_video[order]
        return pa.table(
            {
                "video_id": self.video_ids(video),
                "first_unit": pa.array(self.unit_number[self.first[order]], pa.int64()),
                "units": pa.array(self.stop[order] - self.first[order], pa.int64()),
                "video_units": pa.array(np.diff(self.video_units)[video], pa.int64()),
                "weight": pa.array(self.weights[order], pa.int64()),
                "content": self.content.take(pa.array(video)),
            }
        )

    def order(self) -> np.ndarray:
        """Chain numbers heaviest first; ties by video id, then by first unit."""
        return self._order

    @cached_property
    def _order(self) -> np.ndarray:
        rank = pc.rank(self.video_ids(self.chain_video), sort_keys="ascending", tiebreaker="dense").to_numpy()
        return np.lexsort((self.unit_number[self.first], rank, -self.weights))

    def __getitem__(self, i: int) -> Chain:
        """The i-th chain in plan order."""
        return self.chain(int(self._order[i]))

    def __iter__(self) -> Iterator[Chain]:
        return (self.chain(int(k)) for k in self._order)

    def chain(self, k: int) -> Chain:
        """Chain k with its units' rows (as dicts, for the reader)."""
        v = int(self.chain_video[k])
        lo, hi = int(self.video_units[v]), int(self.video_units[v + 1])
        warm, first, stop = int(self.warm[k]), int(self.first[k]), int(self.stop[k])
        rows = self.ordered.table.slice(int(self.unit_row[warm]), int(self.unit_row[stop] - self.unit_row[warm]))
        rows = rows.to_pylist()
        units = []
        for u in range(warm, stop):
            a, b = int(self.unit_row[u] - self.unit_row[warm]), int(self.unit_row[u + 1] - self.unit_row[warm])
            units.append(Unit(int(self.unit_number[u]), tuple(rows[a:b]), int(self.unit_run[u])))
        warmup = tuple(units[: first - warm])
        return Chain(
            rows[0]["video_id"],
            rows[0]["sample_type"],
            tuple(units[first - warm :]),
            tuple(int(n) for n in self.unit_number[lo:hi]),
            warmup,
            int(self.unit_weight[warm:first].sum()),
            self.content[v].as_py(),
        )


# What identifies the content of a sample: which member, at which bytes, of which version of its shard
# file (an ETag names the file's bytes). The shard's URL is left out, so an archive moved to another
# bucket or prefix as it is is not new content.
_CONTENT_NUMBERS = ("index", "media_offset", "media_size", "meta_offset", "meta_size")
_CONTENT_TEXTS = ("media_member", "meta_member", "shard_version")


def video_contents(table: pa.Table, bounds: np.ndarray) -> pa.Array:
    """A 16-hex digest of each video's index rows (`table` in play order, video v in rows
    bounds[v]..bounds[v+1]): it changes when a video gains, loses or moves a sample, or a shard
    holding it is re-written (`shard_version`), so a re-run over a grown archive labels only what
    changed.

    The numbers become one row-major int64 matrix and the texts one joined string column (by
    Arrow), and each video's contiguous bytes of both are hashed once: no Python object per row
    (an index partition holds millions; 1M rows of 100k videos: about 1 s here)."""
    if len(table) == 0:
        return pa.array([], pa.string())
    numbers = [table[c].fill_null(-1).to_numpy() for c in _CONTENT_NUMBERS]
    numbers.append(pc.equal(table["sample_type"], "segment").to_numpy(zero_copy_only=False))
    rows = memoryview(np.ascontiguousarray(np.stack(numbers, axis=1).astype(np.int64))).cast("B")
    text = pa.large_string()  # 64-bit offsets: no 2 GB cap on a partition's joined rows
    parts = [pc.cast(table[c], text) for c in _CONTENT_TEXTS] + [pa.nulls(len(table), text)]  # a final separator
    joined = pc.binary_join_element_wise(*parts, pa.scalar("\x1f", text), null_handling="replace", null_replacement="")
    joined = joined.combine_chunks()
    offsets = np.frombuffer(joined.buffers()[1], np.int64, len(joined) + 1, joined.offset * 8)
    texts, width = memoryview(joined.buffers()[2]), 8 * len(numbers)
    spans = zip((bounds * width).tolist(), offsets[bounds].tolist())
    digests, (row_lo, text_lo) = [], next(spans)
    for row_hi, text_hi in spans:
        digest = hashlib.blake2b(rows[row_lo:row_hi], digest_size=8)
        digest.update(texts[text_lo:text_hi])
        digests.append(digest.hexdigest())
        row_lo, text_lo = row_hi, text_hi
    return pa.array(digests, pa.string())


def _row_weights(table: pa.Table) -> np.ndarray:
    """Frames when the json says, else bytes / 10 kB (about a frame of video), at least 1."""
    frames = table["frames"].to_numpy(zero_copy_only=False)
    size = table["media_size"].to_numpy(zero_copy_only=False)
    known = ~np.isnan(frames) if frames.dtype.kind == "f" else np.ones(len(frames), bool)
    return np.where(known, np.nan_to_num(frames).astype(np.int64), np.maximum(1, size // 10_000))


def _cut_chains(
    video_units: np.ndarray, unit_weight: np.ndarray, unit_run: np.ndarray, state: StateSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(first unit, stop, first warm-up unit, video) of every chain.

    Policy exact, or a video within split_frames: one chain per video. Otherwise a video
    is cut greedily after the unit that brings a chain to split_frames, and each chain but
    the first is warmed up on the whole units before it (same run) holding warmup_frames.
    """
    starts, stops = video_units[:-1], video_units[1:]
    cumulative = np.concatenate([[0], np.cumsum(unit_weight)])
    totals = cumulative[stops] - cumulative[starts]
    long = np.flatnonzero(totals > state.split_frames) if state.policy == "split" else np.zeros(0, np.int64)
    if not len(long):
        return starts.copy(), stops.copy(), starts.copy(), np.arange(len(starts))
    keep = np.ones(len(starts), bool)
    keep[long] = False
    first, stop, video = [starts[keep]], [stops[keep]], [np.flatnonzero(keep)]
    for v in long.tolist():
        cuts = _greedy_cuts(unit_weight[starts[v] : stops[v]].tolist(), state.split_frames)
        bounds = [int(starts[v]) + c for c in [0, *cuts]]
        first.append(np.array(bounds[:-1]))
        stop.append(np.array(bounds[1:]))
        video.append(np.full(len(bounds) - 1, v))
    first_all, stop_all, video_all = np.concatenate(first), np.concatenate(stop), np.concatenate(video)
    warm = np.array(
        [
            _warm_start(int(f), int(starts[v]), unit_weight, unit_run, state.warmup_frames)
            for f, v in zip(first_all.tolist(), video_all.tolist())
        ],
        dtype=np.int64,
    )
    return first_all, stop_all, warm, video_all


def _greedy_cuts(weights: list[int], split_frames: int) -> list[int]:
    """Unit offsets where chains end: after the unit that brings a chain to split_frames, and at the end."""
    cuts, total = [], 0
    for i, w in enumerate(weights):
        total += w
        if total >= split_frames or i == len(weights) - 1:
            cuts.append(i + 1)
            total = 0
    return cuts


def _warm_start(first: int, video_first: int, unit_weight: np.ndarray, unit_run: np.ndarray, frames: int) -> int:
    """The first warm-up unit of a chain starting at unit `first`: whole earlier units of its run
    holding at least `frames` frames (none for a video's first chain)."""
    k, total = first, 0
    while k > video_first and total < frames and unit_run[k - 1] == unit_run[first]:
        k -= 1
        total += int(unit_weight[k])
    return k
