"""Chains labeled by the worker (no Ray): crash anywhere, resume anywhere, same output."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tv3s.jobs.actor import make_worker
from tv3s.jobs.runner import open_output, plan_job
from tv3s.pipeline.storage import Store

from ..support.jobdata import assert_same_output, job_spec, table_rows, write_archive
from ..support.manifest_data import Crash, crash_at

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_archive(tmp_path_factory.mktemp("archive"))


def label_all(spec, observer=None):
    chains, _ = plan_job(spec, Store())
    worker = make_worker(spec, CPU, observer)
    return [worker.process(chain) for chain in chains]


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory):
    spec = job_spec(archive, str(tmp_path_factory.mktemp("ref") / "out"))
    outcomes = label_all(spec)
    return spec, outcomes


def test_plan_and_reference_output(reference):
    spec, outcomes = reference
    assert sorted(o.video_id for o in outcomes) == ["cam0", "cam1", "cam2", "stills"]
    frames = table_rows(open_output(spec), "frames")
    assert len(frames) == 3 * 15 + 10
    cam0 = [r for r in frames if r["video_id"] == "cam0"]
    assert [r["frame_index"] for r in cam0] == list(range(15))
    assert [r["unit_index"] for r in cam0] == [0] * 5 + [1] * 5 + [2] * 5
    assert cam0[0]["temporal_state"] == "reset" and cam0[0]["state_reset_reason"] == "video_start"
    assert all(r["temporal_state"] == "carried" for r in cam0[1:])  # across segments and shards
    assert cam0[7]["source_member"] == "cam0/000001.mp4" and cam0[7]["source_frame_index"] == 2
    assert cam0[6]["timestamp_s"] == pytest.approx(6 / 12)
    stills = [r for r in frames if r["video_id"] == "stills"]
    assert [r["unit_index"] for r in stills] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]  # frames_per_unit 4
    assert all(r["temporal_agreement"] is not None for r in stills[1:])
    videos = table_rows(open_output(spec), "videos")
    assert [v["video_id"] for v in videos] == ["cam0", "cam1", "cam2", "stills"]


@pytest.mark.parametrize(
    "step,occurrence",
    [
        ("before_write", 1),  # before the first commit
        ("after_commit", 1),  # between commits
        ("mid_write", 3),  # during a commit
        ("after_write", 5),  # written, not yet visible
    ],
)
@pytest.mark.parametrize("checkpoint_every", [1, 2])
def test_a_crash_anywhere_then_resume_gives_the_reference_output(
    archive, reference, tmp_path, step, occurrence, checkpoint_every
):
    spec = job_spec(archive, str(tmp_path / "out"), state={"checkpoint_every": checkpoint_every})
    with pytest.raises(Crash):
        label_all(spec, crash_at(step, occurrence))
    outcomes = label_all(spec)  # a fresh worker, as on another actor
    assert sum(o.units_already_done for o in outcomes) >= (1 if step == "after_commit" else 0)
    if step == "after_commit" and checkpoint_every == 1:  # continued from the committed state
        assert any(o.resumed_from is not None for o in outcomes)
    if step == "after_commit" and checkpoint_every == 2:  # no state saved yet: unit 0 re-run, not re-committed
        assert any(o.units_replayed == 1 and o.units_already_done == 1 for o in outcomes)
    assert_same_output(open_output(reference[0]), open_output(spec))


@pytest.mark.parametrize("crash", [False, True])
def test_rows_built_in_several_threads_give_the_reference_output(archive, reference, tmp_path, crash):
    """Rows built by 3 threads beside the model and commits in their own thread, with a crash at the
    second commit and a resume, equal the reference (labelled with one row thread)."""
    spec = job_spec(archive, str(tmp_path / "out"))
    assert make_worker(spec, CPU).options.row_threads == 1  # half of cpus_per_actor 1, at least one

    def label(observer=None):
        chains, _ = plan_job(spec, Store())
        worker = make_worker(spec, CPU, observer)
        worker.options = dataclasses.replace(worker.options, row_threads=3)  # as a GPU actor does
        return [worker.process(chain) for chain in chains]

    if crash:
        with pytest.raises(Crash):
            label(crash_at("after_commit", 2))
    label()
    assert_same_output(open_output(reference[0]), open_output(spec))


def test_rerunning_a_finished_job_writes_nothing(reference):
    spec, _ = reference
    before = open_output(spec).list("")
    outcomes = label_all(spec)
    assert sum(o.units_committed for o in outcomes) == 0 and open_output(spec).list("") == before  # not a log entry


def test_split_policy_runs_long_videos_as_warmed_up_parallel_chains(archive, reference, tmp_path):
    spec = job_spec(archive, str(tmp_path / "out"), state={"policy": "split", "split_frames": 5, "warmup_frames": 3})
    chains, _ = plan_job(spec, Store())
    cam0 = sorted((c for c in chains if c.video_id == "cam0"), key=lambda c: c.units[0].index)
    assert [[u.index for u in c.units] for c in cam0] == [[0], [1], [2]]
    assert [[u.index for u in c.warmup] for c in cam0] == [[], [0], [1]] and cam0[1].warmup_frames == 5
    worker = make_worker(spec, CPU)
    for chain in reversed(chains):  # any order: each chain stands alone
        worker.process(chain)
    rows = [r for r in table_rows(open_output(spec), "frames") if r["video_id"] == "cam0"]
    assert [r["temporal_state"] for r in rows[:5]] == ["reset"] + ["carried"] * 4
    assert {r["temporal_state"] for r in rows[5:]} == {"warmed_up"} and rows[5]["warmup_frames"] == 5
    exact = [r for r in table_rows(open_output(reference[0]), "frames") if r["video_id"] == "cam0"]
    assert rows[:5] == exact[:5]  # the first chain is exact
    assert [v["video_id"] for v in table_rows(open_output(spec), "videos")] == ["cam0", "cam1", "cam2", "stills"]


def test_several_videos_batched_through_one_model_match_the_reference(archive, reference, tmp_path):
    """process_many runs the chains side by side, their equal-shaped chunks in one batched pass;
    batched matrix products may round differently, so masks agree to within a few pixels."""
    from tv3s.pipeline.outputs.masks import decode_mask_png

    spec = job_spec(archive, str(tmp_path / "out"))
    chains, _ = plan_job(spec, Store())
    outcomes = make_worker(spec, CPU).process_many(chains)
    assert sum(o.units_committed for o in outcomes) == 12
    ours, theirs = table_rows(open_output(spec), "frames"), table_rows(open_output(reference[0]), "frames")
    assert [(r["video_id"], r["frame_index"]) for r in ours] == [(r["video_id"], r["frame_index"]) for r in theirs]
    for a, b in zip(ours, theirs):
        same = (decode_mask_png(a["mask_png"]) == decode_mask_png(b["mask_png"])).mean()
        assert same > 0.999, (a["video_id"], a["frame_index"], same)
        assert a["mean_confidence"] == pytest.approx(b["mean_confidence"], abs=1e-4)
        assert a["temporal_state"] == b["temporal_state"] and a["source_member"] == b["source_member"]


def test_status_of_a_running_job_gives_rate_and_eta(archive, tmp_path, capsys):
    """`tv3s status` mid-job: what is committed, the driver's pace and the time left at that pace."""
    from tv3s.cli import main
    from tv3s.jobs.runner import JobRunner, JobSummary, job_partitions
    from tv3s.jobs.status import job_progress

    spec = job_spec(archive, str(tmp_path / "out"))
    runner = JobRunner(spec, progress=False)
    partitions, _ = job_partitions(spec, Store())
    runner._plan_and_record(partitions)
    chains, _ = plan_job(spec, Store())
    outcome = make_worker(spec, CPU).process(chains[0])  # one video done, the others not started
    units = sum(len(c.units) for c in chains)
    summary = JobSummary(
        spec.name,
        "running",
        4,
        len(chains),
        units,
        units_committed=outcome.units_committed,
        frames=outcome.frames,
        seconds=12.0,
    )
    runner._write_status(summary)
    report = job_progress(open_output(spec), spec.name)
    assert (report["state"], report["videos_done"], report["units_done"]) == ("running", 1, outcome.units_committed)
    assert report["eta_seconds"] == pytest.approx((units - outcome.units_committed) * 12.0 / outcome.units_committed)
    assert main(["status", spec.output]) == 0
    line = capsys.readouterr().out
    assert "running  videos 1/4" in line and "frames/s" in line and "ETA 0m" in line
    summary.state = "finished"
    runner._write_status(summary)
    assert job_progress(open_output(spec), spec.name)["eta_seconds"] is None
