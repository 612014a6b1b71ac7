"""Read segmentation inputs (a video file or a folder of frames) as uint8 RGB chunks.

Every reader yields arrays shaped [t, H, W, 3] with t <= chunk, so callers hold
at most one chunk of decoded frames in memory no matter how long the video is.
Problems with an input are raised as `FramesError` naming the file and what to
do about it, because a bare FFmpeg or Pillow message rarely says which of ten
thousand inputs was broken.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np
from PIL import Image, UnidentifiedImageError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".avi", ".mov"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})


class FramesError(ValueError):
    """An input cannot be read as frames; the message names the file and the fix."""


@dataclass(frozen=True)
class FramesInfo:
    """What is known about an input before decoding it.

    `frames` is exact for a folder; for a video it comes from the container and
    is an estimate (`frames_estimated`) when the container does not record it.
    `fps` is None for a folder of frames, which has no timing.
    """

    frames: int
    width: int
    height: int
    fps: float | None
    frames_estimated: bool = False


def open_frames(path: str | Path, chunk: int) -> Iterator[np.ndarray]:
    """Iterate over a video file or a frame folder in chunks of up to `chunk` frames.

    Problems that can be seen without decoding everything (missing path,
    unsupported extension, unreadable container, a folder's odd-sized frame) are raised
    here, before the first chunk, so a batch job fails before spending GPU time.
    """
    path = _existing(path)
    if path.is_dir():
        return iter_frame_folder(path, chunk)
    return iter_video_frames(path, chunk)


def probe_frames(path: str | Path) -> FramesInfo:
    """Frame count, size and fps of a video file or frame folder, without decoding pixels."""
    path = _existing(path)
    if path.is_dir():
        return folder_info(path)
    return video_info(path)


# --- videos ---------------------------------------------------------------------------


def video_info(path: str | Path) -> FramesInfo:
    """Frame count (estimated from the duration when not recorded), fps, width, height."""
    path = _video_path(path)
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        frames = int(stream.frames or 0)
        estimated = frames <= 0
        if estimated:
            frames = _estimate_frame_count(container, stream, fps)
        return FramesInfo(
            frames=frames,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            fps=fps or None,
            frames_estimated=estimated,
        )


def iter_video_frames(path: str | Path, chunk: int) -> Iterator[np.ndarray]:
    """Decode a video with PyAV into RGB chunks [t<=chunk, H, W, 3] uint8.

    The container is probed eagerly (raising `FramesError` for a corrupt file)
    and reopened by the returned generator, so an iterator that is never
    consumed holds no open file.
    """
    _check_chunk(chunk)
    path = _video_path(path)
    video_info(path)
    return _decode_video(path, chunk)


def _decode_video(path: Path, chunk: int) -> Iterator[np.ndarray]:
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        batch: list[np.ndarray] = []
        first_shape = None
        index = 0
        try:
            for frame in container.decode(stream):
                rgb = frame.to_ndarray(format="rgb24")
                first_shape = first_shape or rgb.shape
                if rgb.shape != first_shape:
                    raise FramesError(
                        f"{path}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]} but earlier "
                        f"frames are {first_shape[1]}x{first_shape[0]}; the resolution "
                        "changes mid-stream. Re-encode the video at one resolution "
                        "(e.g. ffmpeg -i IN -vf scale=W:H OUT.mp4)."
                    )
                batch.append(rgb)
                index += 1
                if len(batch) == chunk:
                    yield np.stack(batch)
                    batch = []
        except av.error.FFmpegError as exc:
            raise FramesError(
                f"{path}: decoding failed after {index} frames ({exc}). The file is "
                "corrupt or truncated; re-download or re-encode it "
                "(e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)."
            ) from exc
        if batch:
            yield np.stack(batch)


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise FramesError(
            f"{path}: not a readable video ({exc}). The file is corrupt, truncated or not "
            "really a video; re-download it or re-encode it with "
            "ffmpeg -i IN -c:v libx264 OUT.mp4."
        ) from exc


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise FramesError(f"{path}: the file has no video stream; pass a video with picture content.")
    return container.streams.video[0]


def _estimate_frame_count(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, fps: float
) -> int:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    else:
        return 0
    return max(0, round(seconds * fps))


def _video_path(path: str | Path) -> Path:
    path = _existing(path)
    if path.is_dir():
        raise FramesError(f"{path}: is a folder; use iter_frame_folder / open_frames for frame folders.")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise FramesError(
            f"{path}: unsupported extension {path.suffix or '(none)'!r}; pass a video "
            f"({', '.join(sorted(VIDEO_EXTENSIONS))}) or a folder of "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} frames."
        )
    return path


# --- frame folders ----------------------------------------------------------------------


def natural_key(name: str) -> tuple:
    """Sort key putting frame_2 before frame_10 (digit runs compare as numbers).

    Splitting on digit runs always alternates text, number, text, ... so two
    keys never compare a string with an int. The raw name breaks ties such as
    frame_01 vs frame_1 deterministically.
    """
    parts = re.split(r"(\d+)", name)
    return (*(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name)


def list_frame_files(path: str | Path) -> list[Path]:
    """The image files of a frame folder in natural order (hidden files and other types skipped)."""
    path = _existing(path)
    if not path.is_dir():
        raise FramesError(f"{path}: is a file, not a frame folder; use open_frames for videos.")
    files = [
        p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not files:
        raise FramesError(
            f"{path}: no frames found; a frame folder must contain {', '.join(sorted(IMAGE_EXTENSIONS))} files."
        )
    return sorted(files, key=lambda p: natural_key(p.name))


def folder_info(path: str | Path) -> FramesInfo:
    """Frame count and common size of a frame folder (reads only image headers)."""
    files = list_frame_files(path)
    width, height = _common_size(files)
    return FramesInfo(frames=len(files), width=width, height=height, fps=None)


def iter_frame_folder(path: str | Path, chunk: int) -> Iterator[np.ndarray]:
    """Read a folder of frames, sorted naturally by name, as RGB chunks [t<=chunk, H, W, 3].

    All image headers are checked before the first chunk so a frame of the
    wrong size is reported up front, by name.
    """
    _check_chunk(chunk)
    files = list_frame_files(path)
    _common_size(files)
    return _read_images(files, chunk)


def _read_images(files: list[Path], chunk: int) -> Iterator[np.ndarray]:
    for start in range(0, len(files), chunk):
        yield np.stack([_read_rgb(f) for f in files[start : start + chunk]])


def _common_size(files: list[Path]) -> tuple[int, int]:
    expected = _image_size(files[0])
    for f in files[1:]:
        size = _image_size(f)
        if size != expected:
            raise FramesError(
                f"{f}: frame is {size[0]}x{size[1]} but {files[0].name} is "
                f"{expected[0]}x{expected[1]}; all frames of a folder must have the same size. "
                "Resize the odd frames or move them to their own folder."
            )
    return expected


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise FramesError(f"{path}: not a readable image ({exc}); replace or delete the file.") from exc


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise FramesError(f"{path}: not a readable image ({exc}); replace or delete the file.") from exc


# --- shared checks ---------------------------------------------------------------------


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FramesError(f"{path}: no such file or folder; check the input path.")
    return path


def _check_chunk(chunk: int) -> None:
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 frame, got {chunk}")


# --- synthetic demo input ------------------------------------------------------------------


def generate_demo_clip(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic synthetic driving-like clip [T, H, W, 3] uint8 for demos and tests.

    Sky gradient, grass verge, a road trapezoid with lane dashes that move
    towards the camera, and a few coloured boxes ("cars") driving across. It
    gives a segmentation model real structure and motion without shipping
    video files; everything is broadcast numpy over [T, H, W], so a few dozen
    frames take milliseconds.
    """
    if num_frames < 1 or height < 8 or width < 8:
        raise ValueError(f"need num_frames >= 1 and a frame of at least 8x8, got {num_frames}x{height}x{width}")
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames, dtype=np.float32)[:, None, None]
    y = np.arange(height, dtype=np.float32)[None, :, None]
    x = np.arange(width, dtype=np.float32)[None, None, :]
    horizon = 0.42 * height
    below = np.clip((y - horizon) / (height - horizon), 0.0, 1.0)  # 0 at horizon, 1 at bottom

    # sky: light blue at the horizon to deep blue at the top; grass below the horizon
    sky_mix = np.clip(y / horizon, 0.0, 1.0)
    sky = (
        np.array([60, 110, 200], np.float32) * (1 - sky_mix[..., None])
        + np.array([170, 200, 235], np.float32) * sky_mix[..., None]
    )
    grass = np.array([70, 130, 60], np.float32) * (0.75 + 0.25 * below[..., None])
    img = np.where((y < horizon)[..., None], sky, grass)
    img = np.broadcast_to(img, (num_frames, height, width, 3)).copy()

    # road: a trapezoid whose half-width grows linearly from the horizon to the bottom
    centre = width / 2.0
    half = (0.04 + 0.46 * below) * width
    road = (y >= horizon) & (np.abs(x - centre) <= half)
    img[np.broadcast_to(road, img.shape[:3])] = (95, 95, 100)

    # lane dashes on the centre line; depth ~ 1/below, so dashes speed up near the camera
    depth = 1.0 / np.maximum(below, 1e-3)
    dash_on = ((depth * 0.9 + t * 0.35) % 1.0) < 0.5
    lane = road & (np.abs(x - centre) <= np.maximum(1.0, 0.012 * width * below)) & dash_on & (below > 0.02)
    img[lane] = (235, 235, 220)

    # cars: boxes at fixed depths, moving sideways and wrapping around the frame
    for _ in range(3):
        depth_pos = rng.uniform(0.25, 0.9)
        car_h = max(2.0, 0.22 * depth_pos * height)
        car_w = car_h * rng.uniform(1.4, 2.0)
        bottom = horizon + depth_pos * (height - horizon)
        speed = rng.uniform(-0.04, 0.04) * width
        left = (rng.uniform(0, width) + speed * t) % (width + car_w) - car_w
        colour = rng.integers(40, 256, size=3)
        car = (y <= bottom) & (y > bottom - car_h) & (x >= left) & (x < left + car_w)
        img[car] = colour

    noise = rng.normal(0.0, 3.0, size=(1, height, width, 1)).astype(np.float32)
    return np.clip(img + noise, 0, 255).astype(np.uint8)
