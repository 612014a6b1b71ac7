"""Every video's samples in order, as columns: duplicates and gaps found, runs numbered, no row objects.

An index can hold tens of millions of samples. Turning each row into a Python dict (about
1.5 kB each) to sort and scan them put planning out of memory near 10M samples, so the
ordering is done with Arrow's sort and NumPy over whole columns; only the rows that are
reported (a duplicate, a gap, a sample of the wrong type) ever become Python objects.

The rules (what `plan_videos` has always done): samples are sorted by video, index, shard
order and position; a video is of its most common sample type (a tie goes to the type of
its first sample) and samples of the other type are reported and left out; of samples
claiming the same index the first is kept and the others reported (`duplicate_key`);
segment videos start at segment 0 and frame sequences at their lowest frame; every gap
starts a new *run* (the stream state is reset there) and is reported (`missing_segment`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...schemas.errors import ErrorKind, InputError

SORT_KEYS = [("video_id", "ascending"), ("index", "ascending"), ("shard_order", "ascending"), ("position", "ascending")]
# Schema metadata of a table already in SORT_KEYS order (partitions of a partitioned index): not sorted
# again, which would copy the whole partition.
SORTED_KEY, SORTED_VALUE = b"tv3s.index.sorted_by", ",".join(k for k, _ in SORT_KEYS).encode()


@dataclass(frozen=True)
class OrderedIndex:
    """The kept samples in play order, with the per-row columns planning needs as arrays.

    `video_start[i]` / `run_start[i]`: row i begins a video / a run; `run[i]` numbers the
    runs of row i's video from 0. Rows of one video are contiguous.
    """

    table: pa.Table
    index: np.ndarray  # int64: segment index or frame number
    is_segment: np.ndarray  # bool
    video_start: np.ndarray  # bool
    run_start: np.ndarray  # bool
    run: np.ndarray  # int64

    @property
    def video_bounds(self) -> np.ndarray:
        """Row offsets where each video starts, and the row count at the end."""
        return np.append(np.flatnonzero(self.video_start), len(self.index))

    def runs(self) -> Iterator[tuple[str, str, int, list[dict]]]:
        """(video_id, sample type, run number, rows as dicts) for every run: for readers, which
        go through every row of a video anyway."""
        bounds = np.append(np.flatnonzero(self.run_start), len(self.index))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            rows = self.table.slice(lo, hi - lo).to_pylist()
            yield rows[0]["video_id"], rows[0]["sample_type"], int(self.run[lo]), rows


def order_index(table: pa.Table) -> tuple[OrderedIndex, list[InputError]]:
    """Sort an index table into videos and runs; the reported rows as error records (by video,
    then: samples of the wrong type, duplicates, gaps)."""
    reported: list[tuple[int, InputError]] = []
    if (table.schema.metadata or {}).get(SORTED_KEY) != SORTED_VALUE:
        table = table.sort_by(SORT_KEYS)
    table = table.combine_chunks()
    wrong_type = _minority_rows(table)
    for row in np.flatnonzero(wrong_type).tolist():
        reported.append((0, _wrong_type_error(_row(table, row))))
    table = table.filter(pa.array(~wrong_type)) if wrong_type.any() else table
    duplicate = _duplicate_rows(table)
    keeper = np.maximum.accumulate(np.where(duplicate, 0, np.arange(len(table))))
    for row in np.flatnonzero(duplicate).tolist():
        reported.append((1, _duplicate_error(_row(table, row), _row(table, int(keeper[row])))))
    table = table.filter(pa.array(~duplicate)) if duplicate.any() else table
    index = table["index"].to_numpy(zero_copy_only=False)
    is_segment = _is_segment(table)
    video_start = _video_starts(table)
    expected = np.empty_like(index)  # what each row's index should be if nothing were missing
    expected[1:] = index[:-1] + 1
    first = np.flatnonzero(video_start)
    expected[first] = np.where(is_segment[first], 0, index[first])
    gap = index != expected
    for row in np.flatnonzero(gap).tolist():
        reported.append((2, _gap_error(_row(table, row), int(expected[row]))))
    run_start = video_start | gap
    run = np.cumsum(run_start) - 1
    run -= np.maximum.accumulate(np.where(video_start, run, 0))  # numbered from 0 in each video
    reported.sort(key=lambda item: (item[1].video_id, item[0]))  # stable: rows stay in order
    return OrderedIndex(table, index, is_segment, video_start, run_start, run), [e for _, e in reported]


def _is_segment(table: pa.Table) -> np.ndarray:
    return pc.equal(table["sample_type"], "segment").to_numpy(zero_copy_only=False)


def _video_starts(table: pa.Table) -> np.ndarray:
    ids = table["video_id"]
    starts = np.ones(len(table), bool)
    if len(table) > 1:
        starts[1:] = pc.not_equal(ids.slice(1), ids.slice(0, len(table) - 1)).to_numpy(zero_copy_only=False)
    return starts


def _minority_rows(table: pa.Table) -> np.ndarray:
    """Rows whose type is not their video's most common one (ties: the type of its first row)."""
    if not len(table):
        return np.zeros(0, bool)
    is_segment = _is_segment(table)
    video = np.cumsum(_video_starts(table)) - 1
    segments = np.bincount(video, weights=is_segment)
    frames = np.bincount(video) - segments
    first_is_segment = is_segment[np.flatnonzero(_video_starts(table))]
    main_is_segment = np.where(segments == frames, first_is_segment, segments > frames)
    return is_segment != main_is_segment[video]


def _duplicate_rows(table: pa.Table) -> np.ndarray:
    """Rows whose index equals the previous row's in the same video (the first copy is kept)."""
    index = table["index"].to_numpy(zero_copy_only=False)
    duplicate = np.zeros(len(table), bool)
    if len(table) > 1:
        duplicate[1:] = index[1:] == index[:-1]
    return duplicate & ~_video_starts(table)


def _row(table: pa.Table, row: int) -> dict:
    return table.slice(row, 1).to_pylist()[0]


def _wrong_type_error(r: dict) -> InputError:
    other = "frame" if r["sample_type"] == "segment" else "segment"
    return _row_error(
        r,
        ErrorKind.bad_metadata,
        f"video {r['video_id']} is mostly {other}s but this sample is a {r['sample_type']}; it is left out",
        "give segments and frame sequences different video ids",
    )


def _duplicate_error(r: dict, first: dict) -> InputError:
    return _row_error(
        r,
        ErrorKind.duplicate_key,
        f"{r['sample_type']} {r['index']} of video {r['video_id']} also appears at "
        f"{first['shard']}::{first['media_member']}; this copy is ignored",
        "remove the duplicate sample or give it the right index",
    )


def _gap_error(r: dict, expected: int) -> InputError:
    what = "segments" if r["sample_type"] == "segment" else "frames"
    missing = f"{expected}" if r["index"] == expected + 1 else f"{expected}..{r['index'] - 1}"
    return InputError(
        kind=ErrorKind.missing_segment,
        stage="index",
        url=r["shard"],
        member=r["media_member"],
        video_id=r["video_id"],
        **_index_field(r["sample_type"], expected),
        message=f"{what} {missing} of video {r['video_id']} are missing; the video is split there and "
        f"the stream state restarts at {r['sample_type']} {r['index']}",
        hint="add the missing samples to the shards and re-run tv3s index",
    )


def _index_field(sample_type: str, index: int) -> dict:
    return {"segment_index": index} if sample_type == "segment" else {"frame_index": index}


def _row_error(row: dict, kind: ErrorKind, message: str, hint: str) -> InputError:
    return InputError(
        kind=kind,
        stage="index",
        url=row["shard"],
        member=row["media_member"],
        video_id=row["video_id"],
        **_index_field(row["sample_type"], row["index"]),
        message=message,
        hint=hint,
    )
