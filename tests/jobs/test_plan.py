"""Planning on its own: an index table in, chains of commit units out (no model, no Ray)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tv3s.jobs.plan import plan_chains, unit_number
from tv3s.schemas.index import INDEX_SCHEMA
from tv3s.schemas.job import StateSpec


def index_table(samples: list[tuple[str, str, int]], frames: int | None = 10, size: int = 50_000) -> pa.Table:
    """Index rows for (video_id, sample_type, index) samples, each in its own shard position."""
    rows = []
    for position, (video, kind, index) in enumerate(samples):
        ext = "mp4" if kind == "segment" else "jpg"
        rows.append(
            {
                "video_id": video,
                "sample_type": kind,
                "index": index,
                "shard": "s.tar",
                "shard_order": 0,
                "position": position,
                "key": f"{video}/{index:06d}",
                "media_member": f"{video}/{index:06d}.{ext}",
                "media_offset": 512 * (position + 1),
                "media_size": size,
                "meta_member": None,
                "meta_offset": None,
                "meta_size": None,
                "fps": 30.0,
                "start_frame": None,
                "frames": frames if kind == "segment" else None,
                "camera": None,
            }
        )
    return pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)


def test_units_of_segments_and_frame_blocks():
    assert unit_number("segment", 7, 64) == 7  # a segment is a unit
    assert [unit_number("frame", f, 4) for f in (0, 3, 4, 9)] == [0, 0, 1, 2]  # frames // frames_per_unit


def test_one_chain_per_video_heaviest_first():
    table = index_table([("short", "segment", i) for i in range(2)] + [("long", "segment", i) for i in range(5)])
    chains, errors = plan_chains(table, StateSpec())
    assert errors == []
    assert [c.video_id for c in chains] == ["long", "short"]
    assert [u.index for u in chains[0].units] == [0, 1, 2, 3, 4]
    assert chains[0].video_units == (0, 1, 2, 3, 4) and chains[0].warmup == ()
    assert chains[0].id == "long@0" and chains[0].weight == 50


def test_frame_sequences_are_cut_into_blocks_and_start_at_their_lowest_frame():
    table = index_table([("cam", "frame", f) for f in range(1, 11)])  # numbered from 1, as in the wild
    (chain,), errors = plan_chains(table, StateSpec(frames_per_unit=4))
    assert errors == []
    assert [(u.index, [r["index"] for r in u.rows]) for u in chain.units] == [
        (0, [1, 2, 3]),
        (1, [4, 5, 6, 7]),
        (2, [8, 9, 10]),
    ]


def test_a_gap_splits_the_video_into_runs_and_is_reported():
    table = index_table([("v", "segment", i) for i in (0, 1, 3, 4)])
    (chain,), errors = plan_chains(table, StateSpec())
    assert [e.kind.value for e in errors] == ["missing_segment"]
    assert [(u.index, u.run) for u in chain.units] == [(0, 0), (1, 0), (3, 1), (4, 1)]
    assert [r.run for r in chain.runs(chain.units)] == [0, 1]  # the reader resets the state between runs


def test_duplicates_keep_the_first_in_shard_order():
    table = index_table([("v", "segment", 0), ("v", "segment", 1), ("v", "segment", 1)])
    (chain,), errors = plan_chains(table, StateSpec())
    assert [e.kind.value for e in errors] == ["duplicate_key"]
    assert [u.rows[0]["position"] for u in chain.units] == [0, 1]


@pytest.mark.parametrize("warmup_frames", [0, 10, 25])
def test_split_policy_cuts_long_videos_into_warmed_up_chains(warmup_frames):
    table = index_table([("v", "segment", i) for i in range(7)])  # 10 frames a segment
    chains, _ = plan_chains(table, StateSpec(policy="split", split_frames=30, warmup_frames=warmup_frames))
    by_start = sorted(chains, key=lambda c: c.units[0].index)
    assert [[u.index for u in c.units] for c in by_start] == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(c.video_units == tuple(range(7)) for c in chains)  # the video row waits for all of them
    assert by_start[0].warmup == ()  # the first chain of a video stays exact
    whole_units = -(-warmup_frames // 10)  # whole units holding at least warmup_frames frames
    for c in by_start[1:]:
        first = c.units[0].index
        assert [u.index for u in c.warmup] == list(range(first - whole_units, first))
        assert c.warmup_frames == 10 * whole_units


def test_split_warm_up_never_reaches_across_a_gap():
    table = index_table([("v", "segment", i) for i in (0, 1, 2, 4, 5, 6)])
    chains, _ = plan_chains(table, StateSpec(policy="split", split_frames=30, warmup_frames=20))
    second = max(chains, key=lambda c: c.units[0].index)
    assert second.units[0].index == 4 and second.warmup == ()  # units before the gap are another run


def test_exact_policy_keeps_long_videos_whole():
    table = index_table([("v", "segment", i) for i in range(7)])
    chains, _ = plan_chains(table, StateSpec(policy="exact", split_frames=30))
    assert len(chains) == 1 and len(chains[0].units) == 7


# --- the columnar planner against a per-row reference ----------------------------------------


def reference_chains(table: pa.Table, state: StateSpec) -> tuple[list[tuple], list[tuple]]:
    """The rules of planning written row by row, as simply as possible (the previous implementation's
    shape): chains as (video, [(unit, run, [positions])], warm-up units, video units), errors as tuples."""
    from collections import Counter
    from itertools import groupby

    rows = sorted(table.to_pylist(), key=lambda r: (r["video_id"], r["index"], r["shard_order"], r["position"]))
    chains, errors = [], []
    for video, group in groupby(rows, key=lambda r: r["video_id"]):
        group = list(group)
        kinds = Counter(r["sample_type"] for r in group)
        main = kinds.most_common(1)[0][0]
        errors += [("bad_metadata", video, r["position"]) for r in group if r["sample_type"] != main]
        kept = []
        for r in (r for r in group if r["sample_type"] == main):
            if kept and kept[-1]["index"] == r["index"]:
                errors.append(("duplicate_key", video, r["position"]))
            else:
                kept.append(r)
        expected, run, units = (0 if main == "segment" else kept[0]["index"]), -1, []
        for r in kept:
            if r["index"] != expected:
                errors.append(("missing_segment", video, r["position"]))
            if r["index"] != expected or run < 0:
                run += 1
            expected = r["index"] + 1
            number = r["index"] if main == "segment" else r["index"] // state.frames_per_unit
            weight = r["frames"] if r["frames"] is not None else max(1, r["media_size"] // 10_000)
            if units and units[-1][0] == number:
                units[-1][2].append(r["position"])
                units[-1][3] += weight
            else:
                units.append([number, run, [r["position"]], weight])
        numbers = tuple(u[0] for u in units)
        if state.policy == "exact" or sum(u[3] for u in units) <= state.split_frames:
            chains.append((video, [tuple(u[:3]) for u in units], (), numbers))
            continue
        start, total = 0, 0
        for i, u in enumerate(units):
            total += u[3]
            if total >= state.split_frames or i == len(units) - 1:
                k, frames = start - 1, 0
                while k >= 0 and frames < state.warmup_frames and units[k][1] == units[start][1]:
                    frames += units[k][3]
                    k -= 1
                warm = tuple(u[0] for u in units[k + 1 : start])
                chains.append((video, [tuple(v[:3]) for v in units[start : i + 1]], warm, numbers))
                start, total = i + 1, 0
    return chains, errors


samples = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c/d", "é"]),
        st.sampled_from(["segment", "segment", "frame"]),
        st.integers(0, 12),
        st.one_of(st.none(), st.integers(1, 40)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(
    samples,
    st.sampled_from(["exact", "split"]),
    st.integers(1, 60),
    st.integers(0, 30),
    st.integers(1, 5),
)
def test_the_columnar_plan_equals_the_row_by_row_rules(samples, policy, split_frames, warmup_frames, per_unit):
    rows = []
    for position, (video, kind, index, frames) in enumerate(samples):
        rows.append(
            {
                "video_id": video,
                "sample_type": kind,
                "index": index,
                "shard": "s.tar",
                "shard_order": position % 2,
                "position": position,
                "key": f"k{position}",
                "media_member": f"k{position}.x",
                "media_offset": 512,
                "media_size": 7_000 * (1 + position % 5),
                "meta_member": None,
                "meta_offset": None,
                "meta_size": None,
                "fps": None,
                "start_frame": None,
                "frames": frames if kind == "segment" else None,
                "camera": None,
            }
        )
    table = pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)
    state = StateSpec(policy=policy, split_frames=split_frames, warmup_frames=warmup_frames, frames_per_unit=per_unit)
    chains, errors = plan_chains(table, state)
    want_chains, want_errors = reference_chains(table, state)
    got = [
        (
            c.video_id,
            [(u.index, u.run, [r["position"] for r in u.rows]) for u in c.units],
            tuple(u.index for u in c.warmup),
            c.video_units,
        )
        for c in chains
    ]
    assert sorted(got, key=repr) == sorted(want_chains, key=repr)
    assert [(e.kind.value, e.video_id) for e in errors] == [(k, v) for k, v, _ in want_errors]
    weights = [c.weight for c in chains]
    assert weights == sorted(weights, reverse=True)  # heaviest first
