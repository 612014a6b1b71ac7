"""A resumed job hands out only the chains of unfinished videos, reading what is done in one listing."""

from __future__ import annotations

import torch

from tv3s.jobs.actor import make_worker
from tv3s.jobs.plan import ChainPlan
from tv3s.jobs.runner import _Pending, open_output, plan_job
from tv3s.pipeline.outputs.manifest import ManifestWriter
from tv3s.pipeline.storage import Store
from tv3s.schemas.job import StateSpec

from ..support.jobdata import job_spec, write_archive
from .test_plan import index_table


def drain(pending: _Pending) -> list[str]:
    out = []
    while pending:
        out.append(pending.popleft()[0].id)
    return out


def test_chains_of_finished_videos_are_skipped_and_counted_across_partitions():
    parts = [index_table([(v, "segment", s) for v in videos for s in range(3)]) for videos in (["a", "b"], ["c"])]
    plans = [ChainPlan.build(t, StateSpec())[0] for t in parts]
    content = {c.video_id: c.content for plan in plans for c in plan}
    finished = {"a": content["a"], "c": content["c"], "b": "f" * 16}
    skipped = []  # b finished with other content: its new content is handed out
    pending = _Pending(iter(plans), 3, finished, lambda v, n: skipped.append((v, n)))
    assert drain(pending) == ["b@0"]
    assert skipped == [("a", 3), ("c", 3)] and len(pending) == 0
    assert drain(_Pending(iter(ChainPlan.build(t, StateSpec())[0] for t in parts), 3)) == ["a@0", "b@0", "c@0"]


def test_retries_go_first_and_an_all_finished_job_hands_out_nothing():
    (plan,) = [ChainPlan.build(index_table([("a", "segment", 0)]), StateSpec())[0]]
    pending = _Pending(iter([plan]), 1, {"a": plan[0].content})
    assert not pending and drain(pending) == []
    retry = ChainPlan.build(index_table([("r", "segment", 0)]), StateSpec())[0][0]
    pending.appendleft((retry, 2))
    assert pending and pending.popleft() == (retry, 2)


def test_the_finished_videos_are_read_from_one_listing_of_the_output(tmp_path):
    spec = job_spec(write_archive(tmp_path / "archive"), str(tmp_path / "out"))
    plan, _ = plan_job(spec, Store())
    worker = make_worker(spec, torch.device("cpu"))
    worker.process(plan[0])  # one video finished, the others not started
    writer = ManifestWriter(open_output(spec), worker.run)
    assert writer.finished_videos() == {plan[0].video_id: plan[0].content}
