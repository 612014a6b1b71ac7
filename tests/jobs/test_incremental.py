"""A job run again over a grown archive labels only the videos that are new or changed, and the
output equals labelling the grown archive from scratch; another model under the same name is refused."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
import torch

from tv3s.jobs.actor import make_worker
from tv3s.jobs.runner import JobError, JobRunner, check_recorded, job_partitions, open_output, plan_job
from tv3s.jobs.status import job_progress
from tv3s.pipeline.outputs.commit import Output
from tv3s.pipeline.outputs.manifest import STAGING, RunInfo
from tv3s.pipeline.storage import Store
from tv3s.schemas.manifest import UNITS_SCHEMA

from ..support.datagen import encode, segment_sample, stamped_frames, tar_bytes
from ..support.jobdata import SEG, H, W, assert_same_output, job_spec, label_reference
from ..support.manifest_data import Crash, crash_at
from ..support.raycluster import ray_cluster

SEGMENTS = 3


def video_shard(folder: Path, video: str, seed: int) -> str:
    """A shard holding one video of SEGMENTS segments whose frames are drawn from `seed`."""
    frames = stamped_frames(seed, 0, SEG * SEGMENTS, H, W)
    samples = [
        segment_sample(video, s, encode(frames[s * SEG : (s + 1) * SEG]), start_frame=s * SEG, frames=SEG, fps=12)
        for s in range(SEGMENTS)
    ]
    path = folder / f"{video}.tar"
    path.write_bytes(tar_bytes(samples))
    return str(path)


def first_archive(folder: Path) -> list[str]:
    """The archive as first labelled: cam0 and cam1, a shard each."""
    folder.mkdir(parents=True, exist_ok=True)
    return [video_shard(folder, "cam0", 0), video_shard(folder, "cam1", 1)]


def grow(folder: Path) -> list[str]:
    """The archive a day later, in the same place: cam1's shard re-written with other footage, cam2 added."""
    labelled = [str(folder / "cam0.tar"), str(folder / "cam1.tar")]
    before = {c.video_id: c.content for c in plan_job(job_spec(labelled, "unused"), Store())[0]}
    time.sleep(0.01)  # a re-write a moment later, as on any real disk
    shards = [labelled[0], video_shard(folder, "cam1", 7), video_shard(folder, "cam2", 2)]
    after = {c.video_id: c.content for c in plan_job(job_spec(shards, "unused"), Store())[0]}
    assert before["cam0"] == after["cam0"] and before["cam1"] != after["cam1"]  # what the index sees
    return shards


def label(spec) -> None:
    """Every chain of the spec's plan through one worker (no Ray), as an actor would."""
    chains, _ = plan_job(spec, Store())
    torch.set_num_threads(1)  # as label_reference: the same float reductions
    worker = make_worker(spec, torch.device("cpu"))
    for chain in chains:
        worker.process(chain)


def units_by_video(output) -> dict[str, int]:
    """Unit rows in the ledger per video, every content ever labelled included (the output's history)."""
    ledger = output.dataset("units", UNITS_SCHEMA).to_table(filter=pc.field("kind") == "units")
    videos = ledger["video_id"].to_pylist()
    return {v: videos.count(v) for v in sorted(set(videos))}


def test_a_grown_archive_relabels_only_the_new_and_the_changed_video(tmp_path):
    out = str(tmp_path / "out")
    label(job_spec(first_archive(tmp_path / "archive"), out))
    output = Output(out)
    assert units_by_video(output) == {"cam0": SEGMENTS, "cam1": SEGMENTS}
    after = grow(tmp_path / "archive")
    from_scratch = label_reference(job_spec(after, str(tmp_path / "scratch")))
    label(job_spec(after, out))
    # cam0 was not labelled again; cam1 (changed) and cam2 (new) were, once each
    assert units_by_video(output) == {"cam0": SEGMENTS, "cam1": 2 * SEGMENTS, "cam2": SEGMENTS}
    assert_same_output(from_scratch, output)  # cam1's old rows replaced, not added to
    assert not output.fs.exists(output.full(STAGING)) or not output.list(STAGING)
    label(job_spec(after, out))  # a third run over the same archive: nothing to do
    assert units_by_video(output) == {"cam0": SEGMENTS, "cam1": 2 * SEGMENTS, "cam2": SEGMENTS}


def test_a_crash_before_the_swap_then_a_rerun_gives_the_same_output(tmp_path):
    """A changed video's rows wait in staging until all its units are in; a crash there loses nothing."""
    out = str(tmp_path / "out")
    label(job_spec(first_archive(tmp_path / "archive"), out))
    spec = job_spec(grow(tmp_path / "archive"), out)
    chains, _ = plan_job(spec, Store())
    worker = make_worker(spec, torch.device("cpu"), crash_at("before_write", occurrence=SEGMENTS + 1))
    with pytest.raises(Crash):  # cam1's units are staged; the swap's ledger row never came
        for chain in chains:
            worker.process(chain)
    label(spec)
    assert_same_output(label_reference(job_spec(spec.inputs.shards, str(tmp_path / "scratch"))), open_output(spec))


def test_another_checkpoint_under_the_same_name_is_refused_with_the_way_out(tmp_path):
    before = first_archive(tmp_path / "archive")
    out = str(tmp_path / "out")
    spec = job_spec(before, out)
    runner = JobRunner(spec, progress=False)
    runner._plan_and_record(job_partitions(spec, Store())[0])
    after = grow(tmp_path / "archive")
    assert check_recorded(job_spec(after, out), runner.output)["name"] == "job"  # other inputs: welcome
    other = job_spec(before, out, model={"checkpoint": str(tmp_path / "v2.pth")})
    with pytest.raises(JobError, match=r"another name \(`tv3s label --name job-v2`"):
        check_recorded(other, runner.output)
    plan_path = "_tv3s/jobs/job/plan.json"
    recorded = json.loads(runner.output.read(plan_path))
    older = {k: v for k, v in recorded.items() if k not in ("planned_at", "model_id")} | {"fingerprint": "0" * 16}
    runner.output.fs.pipe_file(runner.output.full(plan_path), json.dumps(older).encode())
    assert check_recorded(job_spec(after, out), runner.output)  # a plan an older tv3s recorded: its spec decides
    with pytest.raises(JobError):
        check_recorded(other, runner.output)
    model = RunInfo("job", "tv3s:m:abc:1111", "1111", "{}", ("a",), ((0, 0, 0),), "stream")
    runner._check_model(model)  # the first run records its model
    assert json.loads(runner.output.read("_tv3s/jobs/job/plan.json"))["model_id"] == model.model_id
    replaced = RunInfo("job", "tv3s:m:abc:2222", "2222", "{}", ("a",), ((0, 0, 0),), "stream")
    with pytest.raises(JobError, match="is now tv3s:m:abc:2222"):  # same file name, other weights
        runner._check_model(replaced)


@pytest.mark.ray
def test_a_job_run_again_over_a_grown_archive_skips_what_it_labelled(tmp_path):
    out = str(tmp_path / "out")
    with ray_cluster(worker_nodes=1, cpus_per_node=2):
        first = JobRunner(job_spec(first_archive(tmp_path / "archive"), out), progress=False).run()
        after = grow(tmp_path / "archive")
        second = JobRunner(job_spec(after, out), progress=False).run()
    from_scratch = label_reference(job_spec(after, str(tmp_path / "scratch")))
    assert first.units_committed == 2 * SEGMENTS
    assert second.units_committed == 2 * SEGMENTS  # cam1 and cam2; cam0 skipped without an actor
    assert second.state == "finished"
    output = open_output(job_spec(after, out))
    assert_same_output(from_scratch, output)
    progress = job_progress(output, "job")
    assert (progress["videos"], progress["videos_done"]) == (3, 3)
    assert (progress["units"], progress["units_done"]) == (3 * SEGMENTS, 3 * SEGMENTS)  # cam1's old units not counted


def contents(shards: list[str]) -> dict[str, str]:
    return {c.video_id: c.content for c in plan_job(job_spec(shards, "unused"), Store())[0]}


def test_a_shard_rewritten_with_members_of_the_same_sizes_is_new_content(tmp_path):
    (shard,) = first_archive(tmp_path / "a")[:1]
    before = contents([shard])
    first = plan_job(job_spec([shard], "unused"), Store())[0][0].units[0].rows[0]
    data = bytearray(Path(shard).read_bytes())
    data[first["media_offset"] + first["media_size"] // 2] ^= 0xFF  # same members, same sizes, other footage
    time.sleep(0.01)
    Path(shard).write_bytes(bytes(data))
    assert contents([shard])["cam0"] != before["cam0"]


def test_an_archive_copied_elsewhere_as_it_is_is_not_new_content(tmp_path):
    (shard,) = first_archive(tmp_path / "a")[:1]
    (tmp_path / "b").mkdir()
    moved = shutil.copy2(shard, tmp_path / "b")  # bytes and modification time kept
    assert contents([shard]) == contents([str(moved)])


def test_a_shard_restored_to_a_version_labelled_before_is_labelled_again(tmp_path):
    """cam1 labelled, replaced by other footage (labelled), then the original shard restored (the same
    bytes and time, as a restore from a backup keeps them): its labels must be the original's again,
    not the replacement's, though that content was labelled and finished once before."""
    folder, out = tmp_path / "archive", str(tmp_path / "out")
    original = first_archive(folder)
    backup = shutil.copy2(original[1], tmp_path / "cam1.original.tar")
    label(job_spec(original, out))
    label(job_spec(grow(folder), out))
    shutil.copy2(backup, original[1])
    (folder / "cam2.tar").unlink()
    label(job_spec(original, out))
    output = Output(out)
    assert units_by_video(output) == {"cam0": SEGMENTS, "cam1": 3 * SEGMENTS, "cam2": SEGMENTS}
    assert_same_output(label_reference(job_spec(original, str(tmp_path / "scratch"))), _without(output, "cam2"))
    assert job_progress_of(out, original)["units_done"] == 2 * SEGMENTS  # cam1's earlier labellings not counted


def job_progress_of(out: str, shards: list[str]) -> dict:
    runner = JobRunner(job_spec(shards, out), progress=False)
    runner._plan_and_record(job_partitions(runner.spec, Store())[0])
    return job_progress(runner.output, "job")


def _without(output: Output, video_id: str) -> Output:
    """The output with a video's rows deleted (a video that left the archive keeps its rows)."""
    from tv3s.pipeline.outputs.commit import video_predicate

    for table in ("frames", "videos", "errors"):
        if output.table(table) is not None:
            output.table(table).delete(video_predicate("job", video_id))
    return output
