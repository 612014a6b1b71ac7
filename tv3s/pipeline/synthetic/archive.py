"""A small archive of synthetic driving videos with ground truth, as WebDataset video shards.

What the demo and the pipeline benchmark label: each video (generator seed `seed + i`) is
cut into H.264 segments of `segment_frames` frames with the segment json the data plane
reads (start_frame, frames, fps), spread over `shards` shards.
"""

from __future__ import annotations

import io
import json

import numpy as np

from ..outputs.video_write import encode_video
from ..storage import Store
from .scenes import render_scene


def segment_samples(video_id: str, frames: np.ndarray, segment_frames: int = 12, fps: int = 12) -> list[dict]:
    samples = []
    for index, start in enumerate(range(0, len(frames), segment_frames)):
        part = frames[start : start + segment_frames]
        meta = {"video_id": video_id, "segment_index": index, "start_frame": start, "frames": len(part), "fps": fps}
        samples.append(
            {"__key__": f"{video_id}/{index:06d}", "mp4": encode_video(part, fps), "json": json.dumps(meta).encode()}
        )
    return samples


def tar_shard(samples: list[dict]) -> bytes:
    import webdataset as wds

    buf = io.BytesIO()
    with wds.TarWriter(buf, encoder=False) as writer:
        for sample in samples:
            writer.write(sample)
    return buf.getvalue()


def write_synthetic_archive(
    root: str,
    store: Store,
    videos: int,
    frames: int,
    height: int,
    width: int,
    seed: int = 20_000,
    shards: int = 2,
    segment_frames: int = 12,
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Shard URLs under `root`/archive, and each video's ground-truth labels [T, H, W]."""
    truth: dict[str, np.ndarray] = {}
    urls = []
    for shard, numbers in enumerate(np.array_split(np.arange(videos), max(1, min(shards, videos)))):
        samples = []
        for v in numbers:
            video_id = f"drive{int(v):03d}"
            clip, labels = render_scene(seed + int(v), frames, height, width)
            truth[video_id] = labels
            samples += segment_samples(video_id, clip, segment_frames)
        url = f"{root.rstrip('/')}/archive/shard-{shard:04d}.tar"
        store.write(url, tar_shard(samples))
        urls.append(url)
    return urls, truth
