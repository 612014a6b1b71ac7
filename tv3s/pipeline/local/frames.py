"""Read segmentation inputs (a video file or a folder of frames) as uint8 RGB chunks.

Every reader yields arrays shaped [t, H, W, 3] with t <= chunk, so callers hold
at most one chunk of decoded frames in memory no matter how long the video is.
Problems with an input are raised as `FramesError` naming the file and what to
do about it, because a bare FFmpeg or Pillow message rarely says which of ten
thousand inputs was broken.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..ingest.decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, DecodeError, decode_image, decode_video
from ..ingest.sources import natural_key


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
    batch: list[np.ndarray] = []
    first_shape = None
    try:
        for index, rgb in enumerate(decode_video(path)):
            first_shape = first_shape or rgb.shape
            if rgb.shape != first_shape:
                raise FramesError(
                    f"{path}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]} but earlier "
                    f"frames are {first_shape[1]}x{first_shape[0]}; the resolution "
                    "changes mid-stream. Re-encode the video at one resolution "
                    "(e.g. ffmpeg -i IN -vf scale=W:H OUT.mp4)."
                )
            batch.append(rgb)
            if len(batch) == chunk:
                yield np.stack(batch)
                batch = []
    except DecodeError as exc:
        raise FramesError(f"{path}: {exc}. The file is corrupt or truncated; {exc.hint}.") from exc
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
        return decode_image(path).rgb
    except DecodeError as exc:
        raise FramesError(f"{path}: {exc}; replace or delete the file.") from exc


# --- shared checks ---------------------------------------------------------------------


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FramesError(f"{path}: no such file or folder; check the input path.")
    return path


def _check_chunk(chunk: int) -> None:
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 frame, got {chunk}")
