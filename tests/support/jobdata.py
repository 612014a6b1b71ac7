"""A small multi-video archive for the job tests, and helpers to compare job outputs."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from tv3s import DEMO_CHECKPOINT
from tv3s.pipeline.outputs.commit import Output
from tv3s.schemas.job import JobSpec

from .datagen import encode, encode_image, frame_sample, segment_sample, stamped_frames, tar_bytes
from .manifest_data import read_visible

H, W = 64, 96
SEG = 5  # frames per video segment


def archive_samples(videos: int = 3, segments: int = 3, frame_video_frames: int = 10) -> list[list[dict]]:
    """Shards' samples: `videos` H.264 videos of `segments` segments (spread over two shards),
    and one frame-sequence video of JPEG frames."""
    first, second = [], []
    for v in range(videos):
        frames = stamped_frames(v, 0, SEG * segments, H, W)
        for s in range(segments):
            sample = segment_sample(
                f"cam{v}", s, encode(frames[s * SEG : (s + 1) * SEG]), start_frame=s * SEG, frames=SEG, fps=12
            )
            (first if s % 2 == 0 else second).append(sample)
    stills = stamped_frames(9, 0, frame_video_frames, H, W)
    second += [frame_sample("stills", t, encode_image(stills[t])) for t in range(frame_video_frames)]
    return [first, second]


def write_archive(root: Path, **kwargs) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, samples in enumerate(archive_samples(**kwargs)):
        path = root / f"shard-{i:04d}.tar"
        path.write_bytes(tar_bytes(samples))
        paths.append(str(path))
    return paths


def job_spec(shards: list[str], output: str, name: str = "job", **overrides) -> JobSpec:
    data = {
        "name": name,
        "inputs": {"shards": shards, "resize": "none"},
        "model": {"checkpoint": str(DEMO_CHECKPOINT)},
        "output": output,
        "resources": {"actors": 1, "chunk_frames": 4, "cpus_per_actor": 1},
        "state": {"frames_per_unit": 4},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return JobSpec.model_validate(data)


def table_rows(output: Output, table: str, drop: tuple[str, ...] = ()) -> list[dict]:
    """A table's visible rows, sorted, without columns that may differ between equal runs."""
    t: pa.Table = read_visible(output, table)
    if t.num_rows == 0:
        return []
    t = t.drop_columns([c for c in drop if c in t.column_names])
    rows = t.to_pylist()

    def key(r: dict) -> tuple:
        return (
            str(r.get("video_id")),
            r.get("frame_index") if r.get("frame_index") is not None else -1,
            r.get("segment_index") if r.get("segment_index") is not None else -1,
            str(r.get("member")),
            str(r.get("kind")),
            str(r.get("message")),
        )

    return sorted(rows, key=key)


def assert_same_output(a: Output, b: Output) -> None:
    """Frames (mask bytes and every statistic), videos and errors are identical."""
    frames_a, frames_b = table_rows(a, "frames"), table_rows(b, "frames")
    assert len(frames_a) == len(frames_b)
    keys = [(r["video_id"], r["frame_index"]) for r in frames_a]
    assert len(set(keys)) == len(keys), "a frame appears twice"
    for ra, rb in zip(frames_a, frames_b):
        assert ra == rb, f"frame {ra['video_id']}:{ra['frame_index']} differs: " + str(
            {k: (ra[k], rb[k]) for k in ra if ra[k] != rb[k] and k != "mask_png"}
        )
    assert table_rows(a, "errors") == table_rows(b, "errors")
    assert table_rows(a, "videos") == table_rows(b, "videos")


def label_reference(spec: JobSpec) -> Output:
    """The job labeled without Ray, in one uninterrupted pass per chain, with the actors' one thread
    (float reductions over more threads can differ in the last bit): what every run must equal."""
    import torch

    from tv3s.jobs.actor import make_worker
    from tv3s.jobs.runner import open_output, plan_job
    from tv3s.pipeline.storage import Store

    chains, _ = plan_job(spec, Store(spec.storage_options()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        worker = make_worker(spec, torch.device("cpu"))
        for chain in chains:
            worker.process(chain)
    finally:
        torch.set_num_threads(threads)
    return open_output(spec)
