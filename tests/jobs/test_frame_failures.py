"""Frames the model cannot take are recorded against their video with the cause; the job goes on.

Only a bug of the code fails a chain, and then the driver records the actor's real exception,
not Ray's task header.
"""

from __future__ import annotations

import dataclasses
import threading
import traceback

import numpy as np
import pytest
import torch

from tv3s.jobs.actor import make_worker
from tv3s.jobs.runner import failure_reason, open_output, plan_job
from tv3s.jobs.worker import FrameFailure
from tv3s.model.predict import StepRequest
from tv3s.pipeline.ingest.resize import ResizeRule
from tv3s.pipeline.storage import Store

from ..support.datagen import encode, encode_image, frame_sample, segment_sample, stamped_frames, tar_bytes
from ..support.jobdata import job_spec, table_rows
from ..support.manifest_data import Crash, crash_at, read_visible

CPU = torch.device("cpu")


def frames_video(video_id: str, frames: np.ndarray) -> list[dict]:
    return [frame_sample(video_id, t, encode_image(f), ext="png") for t, f in enumerate(frames)]


def solid(count: int, height: int, width: int) -> np.ndarray:
    return np.full((count, height, width, 3), 120, np.uint8)


def label(tmp_path, samples: list[dict], resize: str, worker_resize: ResizeRule | None = None):
    shard = tmp_path / "shard.tar"
    shard.write_bytes(tar_bytes(samples))
    spec = job_spec([str(shard)], str(tmp_path / "out"), inputs={"resize": resize})
    chains, _ = plan_job(spec, Store())
    worker = make_worker(spec, CPU)
    if worker_resize is not None:
        worker.options = dataclasses.replace(worker.options, resize=worker_resize)
    outcomes = [worker.process(chain) for chain in chains]
    output = open_output(spec)
    return outcomes, table_rows(output, "frames"), table_rows(output, "errors")


@pytest.mark.parametrize(
    "resize,tiny,hint",
    [("none", (20, 20), "resize: official"), ("official", (1, 2000), "aspect ratio"), ("none", (1, 400), "official")],
)
def test_frames_too_small_for_the_model_are_reported_once_and_the_rest_is_labelled(tmp_path, resize, tiny, hint):
    good = stamped_frames(1, 0, 6, 64, 96)
    mixed = np.concatenate([good[:3]]), solid(3, *tiny), good[3:]
    samples = frames_video("good", good)
    samples += frames_video("mixed", mixed[0]) + [
        frame_sample("mixed", 3 + t, encode_image(f), ext="png") for t, f in enumerate(mixed[1])
    ]
    samples += [frame_sample("mixed", 6 + t, encode_image(f), ext="png") for t, f in enumerate(mixed[2])]
    outcomes, frames, errors = label(tmp_path, samples, resize)
    assert {o.video_id for o in outcomes} == {"good", "mixed"}
    assert [r["frame_index"] for r in frames if r["video_id"] == "good"] == list(range(6))
    labelled = [r for r in frames if r["video_id"] == "mixed"]
    assert [r["frame_index"] for r in labelled] == [0, 1, 2, 6, 7, 8]  # the tiny ones left out, none else
    assert labelled[3]["temporal_state"] == "reset" and labelled[3]["state_reset_reason"] == "missing_segment"
    (error,) = [e for e in errors if e["kind"] == "frame_too_small"]  # once per video and size
    assert error["video_id"] == "mixed" and error["frame_index"] == 3
    assert f"{tiny[1]}x{tiny[0]}" in error["message"] and "32 pixels" in error["message"]
    assert hint in error["hint"]


def test_a_model_failure_on_one_chunk_is_recorded_and_the_chain_goes_on(tmp_path):
    """Frames the reader lets through (min_side lowered) that the model refuses: the model's own
    error is recorded against the video with its cause, and later frames are labelled afresh."""
    good = stamped_frames(2, 0, 8, 64, 96)
    samples = [frame_sample("v", t, encode_image(f), ext="png") for t, f in enumerate(good[:4])]
    samples += [frame_sample("v", 4 + t, encode_image(f), ext="png") for t, f in enumerate(solid(4, 16, 16))]
    samples += [frame_sample("v", 8 + t, encode_image(f), ext="png") for t, f in enumerate(good[4:])]
    outcomes, frames, errors = label(tmp_path, samples, "none", ResizeRule(scale=None, min_side=1))
    assert [r["frame_index"] for r in frames] == [0, 1, 2, 3, 8, 9, 10, 11]
    assert frames[4]["temporal_state"] == "reset" and frames[4]["state_reset_reason"] == "frame_size_changed"
    model_errors = [e for e in errors if e["kind"] == "model_error"]
    assert [e["frame_index"] for e in model_errors] == [4]  # chunk_frames 4: one chunk failed
    assert "ValueError" in model_errors[0]["message"] and "too small" in model_errors[0]["message"]
    assert outcomes[0].units_committed == 3


def test_in_a_batch_only_the_failing_video_gets_a_failure(tmp_path, small_model):
    from tv3s.jobs.worker import ChainWorker, WorkerOptions

    frames = stamped_frames(3, 0, 2, 64, 96)
    _, foreign = small_model.predict_stream(frames)
    foreign = dataclasses.replace(foreign, weights_digest="another model's")
    worker = ChainWorker(small_model, None, None, None, WorkerOptions())
    good, bad = worker._predict([StepRequest(frames, None), StepRequest(frames, foreign)])
    assert isinstance(bad, FrameFailure) and "other weights" in str(bad)
    alone, _ = small_model.predict_stream(frames, on_device=True)
    torch.testing.assert_close(good[0].logits, alone)


def test_a_chain_failure_is_recorded_with_the_actors_exception_not_rays_header():
    from ray.exceptions import RayTaskError

    try:
        raise KeyError("unit 7 missing from the plan")
    except KeyError as exc:
        wrapped = RayTaskError(
            "LabelActor.process", traceback.format_exc(), exc, proctitle="ray::LabelActor.process()", pid=1
        ).as_instanceof_cause()
    assert str(wrapped).startswith("\x1b[36mray::LabelActor")  # what used to be stored
    assert failure_reason(wrapped) == "KeyError: 'unit 7 missing from the plan'"
    assert failure_reason(RuntimeError("actor died\nmore")) == "RuntimeError: actor died"


def reading_finished_first(worker) -> None:
    """Make the model wait for the decode thread to have read the whole chain (it runs ahead of the
    model by `prefetch_chunks` items), the order a slow GPU step or a fast store gives."""
    predict = worker.model.predict_stream

    def after_reading(*args, **kwargs):
        for thread in threading.enumerate():
            if thread.name == "tv3s-decode":
                thread.join(timeout=30)
        return predict(*args, **kwargs)

    worker.model.predict_stream = after_reading


@pytest.mark.parametrize("crash_after_first_unit", [False, True])
def test_an_input_error_is_committed_with_its_own_unit_however_far_reading_runs_ahead(tmp_path, crash_after_first_unit):
    def seg(index: int, data: bytes | None = None) -> dict:
        data = encode(stamped_frames(7, index * 4, 4, 64, 96)) if data is None else data
        return segment_sample("dmg", index, data, start_frame=index * 4, frames=4, fps=12)

    shard = tmp_path / "shard.tar"
    shard.write_bytes(tar_bytes([seg(0), seg(1, b"\x00garbage" * 300), seg(2), seg(3)]))
    spec = job_spec([str(shard)], str(tmp_path / "out"), resources={"prefetch_chunks": 64})
    (chain,), _ = plan_job(spec, Store())
    if crash_after_first_unit:  # unit 0 committed with its resume point, then the actor dies
        crashing = make_worker(spec, CPU, crash_at("after_commit", 1))
        reading_finished_first(crashing)
        with pytest.raises(Crash):
            crashing.process(chain)
    worker = make_worker(spec, CPU)
    reading_finished_first(worker)
    worker.process(chain)
    output = open_output(spec)
    errors = table_rows(output, "errors")
    assert [(e["kind"], e["segment_index"]) for e in errors] == [("corrupt_member", 1)]
    units = {
        r["unit_first"]: r["error_rows"] for r in read_visible(output, "units").to_pylist() if r["kind"] == "units"
    }
    assert units == {0: 0, 1: 1, 2: 0, 3: 0}
