"""From an index to chains: every video an ordered list of commit units, longest first.

A *unit* is what is committed at once: one segment of a video-file video, or a block of
`frames_per_unit` frames of a frame-sequence video (numbered frame // frames_per_unit).
A *chain* is the units one actor processes in order carrying the state: a whole video
(policy exact), or with policy split a slice of a long video that starts by re-running
`warmup_frames` frames before its first unit (its state is then approximate, and its rows
say so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

import pyarrow as pa

from ..pipeline.ingest.index import VideoRun, plan_videos
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


def video_units(runs: Sequence[VideoRun], frames_per_unit: int) -> list[Unit]:
    """A video's runs cut into commit units, in order."""
    units: list[Unit] = []
    for run in runs:
        for number, rows in groupby(run.rows, key=lambda r: unit_number(run.sample_type, r["index"], frames_per_unit)):
            rows = tuple(rows)
            if units and units[-1].index == number:  # a gap inside a frame block: one unit, two runs
                units[-1] = Unit(number, units[-1].rows + rows, units[-1].run)
                continue
            units.append(Unit(number, rows, run.run))
    return units


def plan_chains(table: pa.Table, state: StateSpec) -> tuple[list[Chain], list[InputError]]:
    """Chains of every video in the index, heaviest first (so the long ones start early)."""
    runs, errors = plan_videos(table)
    chains: list[Chain] = []
    for video_id, group in groupby(runs, key=lambda r: r.video_id):
        group = list(group)
        units = video_units(group, state.frames_per_unit)
        chains += _split(video_id, group[0].sample_type, units, state)
    chains.sort(key=lambda c: (-c.weight, c.video_id, c.units[0].index))
    return chains, errors


def _split(video_id: str, sample_type: str, units: list[Unit], state: StateSpec) -> list[Chain]:
    if state.policy == "exact" or sum(u.weight for u in units) <= state.split_frames:
        return [Chain(video_id, sample_type, tuple(units), tuple(u.index for u in units))]
    chains: list[Chain] = []
    start, weight = 0, 0
    for i, unit in enumerate(units):
        weight += unit.weight
        if weight >= state.split_frames or i == len(units) - 1:
            chains.append(_chain_from(video_id, sample_type, units, start, i + 1, state))
            start, weight = i + 1, 0
    return chains


def _chain_from(video_id: str, sample_type: str, units: list[Unit], start: int, stop: int, state: StateSpec) -> Chain:
    """Units [start, stop), warmed up on the units before it that hold warmup_frames frames."""
    warmup: list[Unit] = []
    frames = 0
    k = start - 1
    while k >= 0 and frames < state.warmup_frames and units[k].run == units[start].run:
        warmup.insert(0, units[k])
        frames += units[k].weight
        k -= 1
    return Chain(video_id, sample_type, tuple(units[start:stop]), tuple(u.index for u in units), tuple(warmup), frames)
