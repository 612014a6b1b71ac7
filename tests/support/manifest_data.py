"""Generated labeling results for the output tests: real rows from real logits, no model needed."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from tv3s.pipeline.outputs.commit import Output
from tv3s.pipeline.outputs.manifest import FrameSource, ManifestWriter, RunInfo, VideoLabeler
from tv3s.pipeline.outputs.masks import decode_mask_png
from tv3s.pipeline.outputs.video_write import write_video
from tv3s.schemas.classes import generic_classes
from tv3s.schemas.errors import ErrorKind, InputError
from tv3s.schemas.manifest import FrameRow, ResetReason, TemporalState

NUM_CLASSES = 5
SIZE = (24, 32)  # H, W of the source frames


class Crash(BaseException):
    """A simulated process death (BaseException: nothing in the code under test catches it)."""


def run_info(job_id: str = "job-1", num_classes: int = NUM_CLASSES) -> RunInfo:
    classes = generic_classes(num_classes)
    return RunInfo(job_id, "test:model:0", None, "{}", classes.names, classes.palette, "stream")


def smooth_logits(num_classes: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Spatially smooth logits [C, h, w] (regions of classes, like a real decode head's)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, num_classes, max(2, h // 3), max(2, w // 3), generator=g) * 4
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]


def video_rows(
    run: RunInfo,
    video_id: str,
    segments: int = 2,
    per_segment: int = 3,
    size: tuple[int, int] = SIZE,
    seed: int = 0,
    perturbation: float = 0.0,
) -> dict[int, list[FrameRow]]:
    """Rows of one video, by segment, from smooth logits at 1/4 of `size` that drift from
    frame to frame (so consecutive masks mostly agree, like a real video's). A `perturbation`
    adds that much of other smooth logits: another model's labels of the same video."""
    labeler = VideoLabeler(run)
    h, w = -(-size[0] // 4), -(-size[1] // 4)
    base = smooth_logits(run.num_classes, h, w, seed)
    out: dict[int, list[FrameRow]] = {}
    for segment in range(segments):
        rows = []
        for k in range(per_segment):
            index = segment * per_segment + k
            first = index == 0
            source = FrameSource(
                video_id=video_id,
                unit_index=segment,
                frame_index=index,
                source_url=f"file:///data/{video_id}.mp4",
                width=size[1],
                height=size[0],
                source_frame_index=index,
                timestamp_s=index / 10,
                temporal_state=TemporalState.reset if first else TemporalState.carried,
                state_reset_reason=ResetReason.video_start if first else None,
            )
            drift = 0.3 * smooth_logits(run.num_classes, h, w, seed * 1000 + index + 1)
            logits = base + drift
            if perturbation:
                logits = logits + perturbation * smooth_logits(run.num_classes, h, w, 7919 + seed * 1000 + index)
            row, _ = labeler.label(logits, source)
            rows.append(row)
        out[segment] = rows
    return out


def sample_job(run: RunInfo, videos: int = 2, segments: int = 2, per_segment: int = 3) -> dict[str, dict[int, list]]:
    return {f"video {v}/x": video_rows(run, f"video {v}/x", segments, per_segment, seed=v) for v in range(videos)}


def decode_error(video_id: str, segment: int) -> InputError:
    return InputError(
        kind=ErrorKind.corrupt_member,
        stage="decode",
        url=f"file:///data/{video_id}.mp4",
        video_id=video_id,
        segment_index=segment,
        message="frame 3 does not decode",
        hint="re-encode the video",
    )


def write_job(
    output: Output, run: RunInfo, job: dict[str, dict[int, list]], observer=None, contents: dict | None = None
) -> ManifestWriter:
    """Commit every segment of every video (one unit per segment), as a runner would; errors
    with segment 1 of each video. `contents`: each video's content digest, as a job's plan has it."""
    writer = ManifestWriter(output, run) if observer is None else ManifestWriter(output, run, observer)
    for video_id, segments in job.items():
        content = (contents or {}).get(video_id, "")
        for segment, rows in segments.items():
            errors = [decode_error(video_id, segment)] if segment == 1 else []
            writer.commit_units(video_id, segment, segment, rows, errors, units_expected=len(segments), content=content)
    return writer


def read_visible(output: Output, table: str) -> pa.Table:
    """All rows of a table as any Delta reader sees them (deltalake's own reader, not tv3s's)."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(output.table_uri(table), storage_options=output.delta_options()):
        return pa.table({})
    return DeltaTable(output.table_uri(table), storage_options=output.delta_options()).to_pyarrow_table()


def frame_keys(table: pa.Table) -> Counter:
    """How often each (job, video, frame) occurs."""
    if table.num_rows == 0:
        return Counter()
    return Counter(zip(*(table.column(c).to_pylist() for c in ("job_id", "video_id", "frame_index")), strict=True))


def expected_keys(run: RunInfo, job: dict[str, dict[int, list]]) -> Counter:
    rows = [r for segments in job.values() for rows in segments.values() for r in rows]
    return Counter((run.job_id, r.video_id, r.frame_index) for r in rows)


def crash_at(step: str, occurrence: int = 2, raw_fs=None):
    """An observer that dies at the `occurrence`-th time `step` is reached.

    At mid_write on an object store, where a PUT is all or nothing, it first leaves a
    truncated object at the path, as a store with visible partial writes would.
    """
    seen = Counter()

    def observer(reached: str, path: str) -> None:
        if reached != step:
            return
        seen[step] += 1
        if seen[step] == occurrence:
            if step == "mid_write" and raw_fs is not None:
                raw_fs.pipe_file(raw_fs._strip_protocol(path), b"PAR1 truncated by a crash")
            raise Crash(f"{step} at {path}")

    return observer


def sorted_rows(table: pa.Table) -> list[dict]:
    rows = table.to_pylist()
    keys = ("job_id", "video_id", "frame_index", "kind", "url")
    return sorted(rows, key=lambda r: tuple(str(r.get(k)) for k in keys))


# --- an output over real source files (render, export) -------------------------------------

SCENE_H, SCENE_W, SCENE_FRAMES = 48, 64, 6


def scene(t: int, shift: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    """A frame (grey gradient) and logits: class 0 left, class 2 right, class 4 a box moving right
    (`shift` logit cells further right: another model's labels); later frames are less sure
    (smaller logits), so the last is the least confident."""
    h, w = SCENE_H, SCENE_W
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 0] = np.linspace(40, 200, w, dtype=np.uint8)[None]
    frame[..., 1] = 90
    logits = torch.zeros(5, h // 4, w // 4)
    logits[0, :, : w // 8] = 1
    logits[2, :, w // 8 :] = 1
    logits[4, 4:8, t + shift : t + shift + 4] = 2
    return frame, logits * (6.0 - t)


def scene_frames() -> list[np.ndarray]:
    return [scene(t)[0] for t in range(SCENE_FRAMES)]


def scene_sources() -> dict[str, bytes]:
    """The scene as an H.264 ``clip.mp4`` and as ``shard.tar`` of PNG frames ``still/NNNNNN.png``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        write_video(path, scene_frames(), fps=5)
        sources = {"clip.mp4": path.read_bytes()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for t, frame in enumerate(scene_frames()):
            png = io.BytesIO()
            Image.fromarray(frame).save(png, format="PNG")
            info = tarfile.TarInfo(f"still/{t:06d}.png")
            info.size = len(png.getvalue())
            tar.addfile(info, io.BytesIO(png.getvalue()))
    sources["shard.tar"] = buf.getvalue()
    return sources


def commit_scene_output(
    out: Output, run: RunInfo, urls: dict[str, str], shift: int = 0
) -> dict[str, dict[int, np.ndarray]]:
    """Label videos 'clip' (urls['clip.mp4']) and 'still' (urls['shard.tar']) into `out` (the box
    `shift` cells further right); their masks."""
    writer = ManifestWriter(out, run)
    masks: dict[str, dict[int, np.ndarray]] = {}
    for video_id in ("clip", "still"):
        labeler = VideoLabeler(run)
        rows = []
        for t in range(SCENE_FRAMES):
            source = FrameSource(
                video_id=video_id,
                unit_index=0,
                frame_index=t,
                width=SCENE_W,
                height=SCENE_H,
                source_url=urls["clip.mp4" if video_id == "clip" else "shard.tar"],
                source_member=None if video_id == "clip" else f"still/{t:06d}.png",
                source_frame_index=t if video_id == "clip" else 0,
                temporal_state=TemporalState.reset if t == 0 else TemporalState.carried,
                state_reset_reason=ResetReason.video_start if t == 0 else None,
            )
            rows.append(labeler.label(scene(t, shift)[1], source)[0])
        writer.commit_units(video_id, 0, 0, rows, units_expected=1)
        masks[video_id] = {r.frame_index: decode_mask_png(r.mask_png) for r in rows}
    return masks


def local_scene_output(root: Path, run: RunInfo) -> tuple[Output, dict[str, dict[int, np.ndarray]], dict[str, str]]:
    """The scene's sources written under `root` and committed into `root`/out: (output, masks, urls)."""
    urls = {}
    for name, data in scene_sources().items():
        (root / name).write_bytes(data)
        urls[name] = str(root / name)
    out = Output(str(root / "out"))
    return out, commit_scene_output(out, run, urls), urls
