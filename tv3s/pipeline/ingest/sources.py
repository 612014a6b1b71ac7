"""Which files make which video: the folder rule that `tv3s shards pack`, jobs over raw files and
`tv3s segment` share, over any folder or prefix fsspec can list (local, s3://).

Users bring footage as files, and one drive is often many files. The rule, applied below
a root folder (names in natural order, hidden files skipped):

* a video file directly in the root is a video of its own, id = its name without extension;
* a sub-folder holding video files is ONE video (a drive recorded in consecutive files, as
  dashcams do), id = the folder's path under the root, segments = its files;
* a folder holding images is one frame sequence, id = its path under the root (the root's
  own name for images directly in it). Frame numbers come from the trailing digits of the
  file names when every name has them (so a missing file shows up as a gap), else from the
  position.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from ...schemas.errors import ErrorKind, InputError
from ..storage import Listed, Store, redact_url
from .decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


def natural_key(name: str) -> tuple:
    """Sort key putting frame_2 before frame_10 (digit runs compare as numbers).

    Splitting on digit runs always alternates text, number, text, ... so two
    keys never compare a string with an int. The raw name breaks ties such as
    frame_01 vs frame_1 deterministically.
    """
    parts = re.split(r"(\d+)", name)
    return (*(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name)


@dataclass(frozen=True)
class SourceVideo:
    """One video made of files: segment files in order, or the frames of a frame sequence."""

    video_id: str
    sample_type: str  # "segment" | "frame"
    files: tuple[Listed, ...]


def media_type(name: str) -> str | None:
    """'segment' for a video file name, 'frame' for an image, None for anything else."""
    ext = posixpath.splitext(name)[1].lower()
    return "segment" if ext in VIDEO_EXTENSIONS else "frame" if ext in IMAGE_EXTENSIONS else None


def stem(name: str) -> str:
    """A file name without folder and extension (the id of a video that is one file)."""
    return posixpath.splitext(posixpath.basename(name))[0]


def single_file(file: Listed) -> SourceVideo:
    """A video file (or one image) named on its own: a video of its own, id = its stem."""
    return SourceVideo(stem(file.name), media_type(file.name) or "segment", (file,))


def discover(src: str, store: Store, stage: str = "index") -> tuple[list[SourceVideo], list[InputError]]:
    """The videos under the folder or prefix `src` by the rule above, in natural order; `stage` names
    the command in the records of files left out."""
    files = store.find(src)
    if not files and not store.isdir(src):
        raise FileNotFoundError(f"{redact_url(src)}: not a folder; pass a folder (or s3:// prefix) of videos")
    root_name = posixpath.basename(src.rstrip("/")) or src
    return group_files(root_name, files, redact_url(src), stage)


def group_files(
    root_name: str, files: list[Listed], where: str, stage: str = "index"
) -> tuple[list[SourceVideo], list[InputError]]:
    """Apply the rule to files listed below one root (`Listed.name` relative to it)."""
    folders: dict[str, list[Listed]] = {}
    for file in files:
        if not posixpath.basename(file.name).startswith("."):
            folders.setdefault(posixpath.dirname(file.name), []).append(file)
    videos: list[SourceVideo] = []
    errors: list[InputError] = []
    for folder in sorted(folders, key=natural_key):
        listed = sorted(folders[folder], key=lambda f: natural_key(posixpath.basename(f.name)))
        clips = tuple(f for f in listed if media_type(f.name) == "segment")
        images = tuple(f for f in listed if media_type(f.name) == "frame")
        if not folder:
            videos += [single_file(f) for f in clips]
        elif clips:
            videos.append(SourceVideo(folder, "segment", clips))
        if images and clips and folder:
            errors.append(
                InputError(
                    kind=ErrorKind.unknown_member,
                    stage=stage,
                    url=f"{where.rstrip('/')}/{folder}",
                    message=f"{len(images)} images next to video files; the images are left out",
                    hint="move the frames into a folder of their own",
                )
            )
        elif images:
            videos.append(SourceVideo(folder or root_name, "frame", images))
    return videos, errors


def frame_numbers(names: list[str]) -> list[int]:
    """Trailing numbers of the file names if all have distinct ones, else positions 0..n-1."""
    numbers = [re.search(r"(\d+)$", stem(name)) for name in names]
    if all(numbers) and len({int(m.group(1)) for m in numbers}) == len(names):
        return [int(m.group(1)) for m in numbers]
    return list(range(len(names)))
