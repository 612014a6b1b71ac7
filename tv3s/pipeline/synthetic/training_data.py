"""Training clips from WebDataset shards of (frame, mask) samples.

Shard layout (what ``tv3s synth`` writes and ``tv3s export`` will write): one sample per
frame, key ``{video_id}/{frame_index:06d}``, members ``KEY.jpg`` (RGB frame), ``KEY.png``
(uint8 label map, 255 = ignore) and ``KEY.json`` (``video_id``, ``frame_index`` and
whatever else the producer records). Frames of a video may span shards.

Clips follow the official training sampler: the target frame t and frames t-9, t-6, t-3
(``dilation``), all augmented with the same random scale, crop, flip and photometric jitter.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import fsspec
import numpy as np
from PIL import Image

from .scenes import render_scene

IGNORE_INDEX = 255
DILATION = (-9, -6, -3)


@dataclass(frozen=True)
class FrameSample:
    video_id: str
    frame_index: int
    image: bytes  # encoded RGB (jpg/png)
    mask: bytes  # encoded label PNG


def read_training_shards(urls: Iterable[str], storage_options: dict | None = None) -> dict[str, list[FrameSample]]:
    """Every (frame, mask) sample of the shards, grouped by video and ordered by frame index."""
    videos: dict[str, dict[int, FrameSample]] = {}
    for url in urls:
        members: dict[str, dict[str, bytes]] = {}
        with fsspec.open(url, "rb", **(storage_options or {})) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, _, ext = info.name.rpartition(".")
                members.setdefault(key, {})[ext.lower()] = tar.extractfile(info).read()
        for key, parts in members.items():
            image = parts.get("jpg") or parts.get("jpeg")
            if image is None or "png" not in parts or "json" not in parts:
                raise ValueError(f"{url}: sample {key!r} lacks a .jpg frame, .png mask or .json (has {sorted(parts)})")
            meta = json.loads(parts["json"])
            sample = FrameSample(str(meta["video_id"]), int(meta["frame_index"]), image, parts["png"])
            if sample.frame_index in videos.setdefault(sample.video_id, {}):
                raise ValueError(f"{url}: frame {sample.frame_index} of video {sample.video_id!r} appears twice")
            videos[sample.video_id][sample.frame_index] = sample
    return {vid: [frames[i] for i in sorted(frames)] for vid, frames in sorted(videos.items())}


def write_synthetic_shards(
    out_dir: str,
    videos: int,
    frames: int,
    height: int,
    width: int,
    seed: int = 0,
    per_shard: int = 400,
    quality: int = 95,
) -> list[str]:
    """Render synthetic videos (``synthetic.render_scene``) into training shards; returns their paths."""
    import webdataset as wds

    fs, root = fsspec.core.url_to_fs(out_dir)
    fs.makedirs(root, exist_ok=True)
    paths, writer, count = [], None, 0
    try:
        for v in range(videos):
            clip, labels = render_scene(seed + v, frames, height, width)
            for i in range(frames):
                if writer is None or count >= per_shard:
                    if writer is not None:
                        writer.close()
                    paths.append(f"{out_dir.rstrip('/')}/train-{len(paths):05d}.tar")
                    writer = wds.TarWriter(fsspec.open(paths[-1], "wb").open())
                    count = 0
                writer.write(
                    {
                        "__key__": f"synth{seed + v:05d}/{i:06d}",
                        "jpg": _encode(clip[i], "JPEG", quality),
                        "png": _encode(labels[i], "PNG"),
                        "json": json.dumps(
                            {
                                "video_id": f"synth{seed + v:05d}",
                                "frame_index": i,
                                "source": "synthetic",
                                "seed": seed + v,
                            }
                        ).encode(),
                    }
                )
                count += 1
    finally:
        if writer is not None:
            writer.close()
    return paths


def _encode(array: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def clip_indices(t: int, dilation: Sequence[int] = DILATION) -> list[int]:
    """Frames of the training clip ending at ``t`` (clamped at the video start)."""
    return [max(0, t + d) for d in dilation] + [t]


@dataclass(frozen=True)
class Augment:
    """Clip augmentation: one random scale/crop/flip/jitter shared by every frame of a clip."""

    crop: tuple[int, int] = (256, 256)
    scale: tuple[float, float] = (0.75, 1.5)
    flip: bool = True
    jitter: float = 0.2


class ClipSampler:
    """Random training clips [T, H, W, 3] uint8 + labels [T, H, W] uint8 from grouped samples."""

    def __init__(
        self, videos: dict[str, list[FrameSample]], augment: Augment, seed: int = 0, dilation: Sequence[int] = DILATION
    ) -> None:
        if not videos:
            raise ValueError("no training samples: the shards hold no (frame, mask) samples")
        self.videos = list(videos.values())
        self.augment, self.dilation = augment, tuple(dilation)
        self.rng = np.random.default_rng(seed)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        frames = self.videos[self.rng.integers(len(self.videos))]
        t = int(self.rng.integers(len(frames)))
        picked = [frames[i] for i in clip_indices(t, self.dilation)]
        images = [np.asarray(Image.open(io.BytesIO(s.image)).convert("RGB")) for s in picked]
        masks = [np.asarray(Image.open(io.BytesIO(s.mask))) for s in picked]
        return self._augment(np.stack(images), np.stack(masks))

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        clips = [self.sample() for _ in range(size)]
        return np.stack([c[0] for c in clips]), np.stack([c[1] for c in clips])

    def _augment(self, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        aug, rng = self.augment, self.rng
        t, h, w = masks.shape
        s = float(rng.uniform(*aug.scale))
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        images = np.stack([np.asarray(Image.fromarray(im).resize((nw, nh), Image.BILINEAR)) for im in images])
        masks = np.stack([np.asarray(Image.fromarray(m).resize((nw, nh), Image.NEAREST)) for m in masks])
        ch, cw = aug.crop
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        if ph or pw:
            images = np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)))
            masks = np.pad(masks, ((0, 0), (0, ph), (0, pw)), constant_values=IGNORE_INDEX)
        y = int(rng.integers(images.shape[1] - ch + 1))
        x = int(rng.integers(images.shape[2] - cw + 1))
        images, masks = images[:, y : y + ch, x : x + cw], masks[:, y : y + ch, x : x + cw]
        if aug.flip and rng.random() < 0.5:
            images, masks = images[:, :, ::-1], masks[:, :, ::-1]
        if aug.jitter:
            gain = 1 + rng.uniform(-aug.jitter, aug.jitter)
            bias = rng.uniform(-aug.jitter, aug.jitter) * 64
            images = np.clip(images.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(images), np.ascontiguousarray(masks)
