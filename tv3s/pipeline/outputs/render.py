"""Draw committed masks for people: overlay videos/GIFs/sheets with a class legend, and a
contact sheet of the frames the model was least sure about.

Everything comes from the output's `frames` table (masks, statistics, where each frame
came from) through the read-only query layer; source pixels are re-read by reference
(`source_frames`). With `masks_only` the class colours are drawn alone, for outputs
whose inputs are gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ...schemas.classes import DATASETS, ClassSet, classes_for
from ..ingest.source_frames import FrameRef, read_frames
from ..storage import Store
from .masks import colorize, decode_mask_png, overlay
from .video_write import write_video

SUFFIXES = (".mp4", ".gif", ".png")
LEGEND_WIDTH = 220
ROW_HEIGHT = 18
CAPTION_HEIGHT = 18
SHEET_COLUMNS = 4
FETCH_FRAMES = 32  # masks fetched per query while streaming a video
_COLUMNS = (
    "job_id, video_id, frame_index, mask_png, class_histogram, source_url, source_member, "
    "source_frame_index, mean_confidence, low_confidence_fraction"
)


class RenderError(ValueError):
    """What was asked cannot be drawn; the message says what to ask instead."""


@dataclass(frozen=True)
class RenderOptions:
    alpha: float = 0.5
    masks_only: bool = False
    fps: float = 10.0
    width: int | None = None  # scale frames to this width (None: source width)
    classes: str = "auto"  # auto | vspw | cityscapes
    storage_options: dict | None = None  # for re-reading sources


def render_video(
    con: duckdb.DuckDBPyConnection,
    job_id: str,
    video_id: str,
    out: Path,
    options: RenderOptions = RenderOptions(),
    frames: tuple[int, int] | None = None,
    sheet_tiles: int = 8,
) -> int:
    """Write one video's overlays to `out` (.mp4, .gif, or .png: a sheet of `sheet_tiles`
    evenly spaced frames), with a legend of the classes present; returns the frames drawn.

    Masks are fetched a few at a time, so a long 1080p video never sits in memory.
    """
    suffix = _suffix(out)
    lo, hi = frames if frames else (0, 2**62)
    where = "job_id = ? AND video_id = ? AND frame_index BETWEEN ? AND ?"
    params = [job_id, video_id, lo, hi]
    listed = con.sql(f"SELECT frame_index FROM frames WHERE {where} ORDER BY 1", params=params).fetchall()
    indices = [i for (i,) in listed]
    if not indices:
        raise RenderError(
            f"no frames of video {video_id!r} in job {job_id!r}{_range_text(frames)}; list them with "
            'tv3s query OUTPUT "SELECT job_id, video_id, count(*) FROM frames GROUP BY ALL"'
        )
    present = _present_classes(con, where, params)
    sql = f"SELECT len(class_histogram) FROM frames WHERE {where} LIMIT 1"
    ((num_classes,),) = con.sql(sql, params=params).fetchall()
    classes = resolve_classes(con, job_id, video_id, num_classes, options.classes)
    if suffix == ".png":
        picks = np.unique(np.linspace(0, len(indices) - 1, min(len(indices), sheet_tiles)).round().astype(int))
        records = [r for i in picks for r in _rows(con, where, [job_id, video_id, indices[i], indices[i]])]
        drawn = _draw(records, classes, options)
        tiles = [(img, f"frame {r['frame_index']}") for r, img in zip(records, drawn, strict=True)]
        Image.fromarray(contact_sheet(tiles, legend(classes, present, None))).save(out)
        return len(tiles)
    chunks = (indices[k : k + FETCH_FRAMES] for k in range(0, len(indices), FETCH_FRAMES))
    records = (r for c in chunks for r in _rows(con, where, [job_id, video_id, c[0], c[-1]]))
    drawn = (_with_legend(img, classes, present) for img in _draw(records, classes, options))
    return write_animation(drawn, out, options.fps)


def render_lowest_confidence(
    con: duckdb.DuckDBPyConnection,
    out: Path,
    count: int,
    options: RenderOptions = RenderOptions(),
    job_id: str | None = None,
    video_id: str | None = None,
) -> int:
    """A PNG contact sheet of the `count` frames with the lowest mean confidence, lowest first."""
    if _suffix(out) != ".png":
        raise RenderError(f"{out}: the lowest-confidence sheet is a .png")
    scope = "(? IS NULL OR job_id = ?) AND (? IS NULL OR video_id = ?)"
    keys = con.sql(
        f"SELECT job_id, video_id, frame_index FROM frames WHERE {scope} "
        "ORDER BY mean_confidence, job_id, video_id, frame_index LIMIT ?",
        params=[job_id, job_id, video_id, video_id, count],
    ).fetchall()
    if not keys:
        raise RenderError("no frames to show: the output (or the --job/--video filter) has no frames")
    where = "job_id = ? AND video_id = ? AND frame_index BETWEEN ? AND ?"
    records = [r for j, v, i in keys for r in _rows(con, where, [j, v, i, i])]
    jobs = {r["job_id"] for r in records}
    classes = resolve_classes(
        con, jobs.pop() if len(jobs) == 1 else None, None, len(records[0]["class_histogram"]), options.classes
    )
    tiles = [
        (
            img,
            f"{r['video_id']} #{r['frame_index']} conf {r['mean_confidence']:.2f} "
            f"low {r['low_confidence_fraction']:.0%}",
        )
        for r, img in zip(records, _draw(records, classes, options), strict=True)
    ]
    present = sorted({c for r in records for c, n in enumerate(r["class_histogram"]) if n})
    Image.fromarray(contact_sheet(tiles, legend(classes, present, None))).save(out)
    return len(tiles)


def resolve_classes(
    con: duckdb.DuckDBPyConnection, job_id: str | None, video_id: str | None, num_classes: int, choice: str
) -> ClassSet:
    """The names and colours to draw with: a named dataset, or (auto) the model's own as
    recorded in `videos`, else the published dataset of that many classes, else generic."""
    if choice != "auto":
        dataset = DATASETS.get(choice)
        if dataset is None:
            raise RenderError(f"unknown class set {choice!r}; choose auto, {', '.join(DATASETS)}")
        if dataset.num_classes != num_classes:
            raise RenderError(f"the masks have {num_classes} classes, {choice} has {dataset.num_classes}; use auto")
        return dataset
    sql = (
        "SELECT class_names, palette FROM videos "
        "WHERE (? IS NULL OR job_id = ?) AND (? IS NULL OR video_id = ?) LIMIT 1"
    )
    rows = con.sql(sql, params=[job_id, job_id, video_id, video_id]).fetchall()
    names, palette = rows[0] if rows else (None, None)
    return classes_for(num_classes, names, palette)


# --- drawing --------------------------------------------------------------------------------


def legend(classes: ClassSet, class_ids: list[int], height: int | None, width: int = LEGEND_WIDTH) -> np.ndarray:
    """A white panel listing `class_ids` as colour swatch + name; `height` None fits them all,
    otherwise the classes that do not fit are summed up as '+N more'."""
    fits = len(class_ids) if height is None else max(0, (height - 4) // ROW_HEIGHT)
    shown = class_ids if len(class_ids) <= fits else class_ids[: max(fits - 1, 0)]
    height = height if height is not None else 4 + ROW_HEIGHT * max(len(shown), 1)
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default(size=12)
    palette = classes.palette_array()
    for row, class_id in enumerate(shown):
        top = 2 + row * ROW_HEIGHT
        draw.rectangle((4, top + 2, 18, top + 15), fill=tuple(int(v) for v in palette[class_id]), outline=(0, 0, 0))
        draw.text((24, top + 2), f"{class_id} {classes.names[class_id]}", fill=(0, 0, 0), font=font)
    if len(shown) < len(class_ids):
        more = f"+{len(class_ids) - len(shown)} more"
        draw.text((24, 2 + len(shown) * ROW_HEIGHT + 2), more, fill=(0, 0, 0), font=font)
    return np.asarray(panel)


def contact_sheet(
    tiles: list[tuple[np.ndarray, str]], legend_panel: np.ndarray, columns: int = SHEET_COLUMNS
) -> np.ndarray:
    """Tiles with a caption strip above each, in a grid, and the legend on the right."""
    if not tiles:
        raise RenderError("nothing to put on the sheet")
    tile_h = max(t.shape[0] for t, _ in tiles) + CAPTION_HEIGHT
    tile_w = max(t.shape[1] for t, _ in tiles)
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    height = max(rows * tile_h, legend_panel.shape[0])
    grid = np.full((height, columns * tile_w + legend_panel.shape[1], 3), 255, np.uint8)
    font = ImageFont.load_default(size=12)
    for k, (tile, caption) in enumerate(tiles):
        top, left = (k // columns) * tile_h, (k % columns) * tile_w
        strip = Image.new("RGB", (tile_w, CAPTION_HEIGHT), (255, 255, 255))
        ImageDraw.Draw(strip).text((3, 2), caption, fill=(0, 0, 0), font=font)
        grid[top : top + CAPTION_HEIGHT, left : left + tile_w] = np.asarray(strip)
        grid[top + CAPTION_HEIGHT : top + CAPTION_HEIGHT + tile.shape[0], left : left + tile.shape[1]] = tile
    grid[: legend_panel.shape[0], columns * tile_w :] = legend_panel
    return grid


def write_animation(frames: Iterator[np.ndarray], out: Path, fps: float) -> int:
    """An .mp4 (H.264, sizes padded to even) or a looping .gif; returns the frame count."""
    if _suffix(out) == ".mp4":
        count = 0

        def counted() -> Iterator[np.ndarray]:
            nonlocal count
            for frame in frames:
                count += 1
                yield np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))

        write_video(out, counted(), fps=fps)
        return count
    images = [Image.fromarray(f) for f in frames]
    if not images:
        raise RenderError(f"{out}: no frames to write")
    images[0].save(out, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return len(images)


def _draw(records: Iterable[dict], classes: ClassSet, options: RenderOptions) -> Iterator[np.ndarray]:
    """The overlay (or the class colours alone) of each record, scaled to options.width."""
    palette = classes.palette_array()
    for record, source in _with_sources(records, options):
        labels = decode_mask_png(record["mask_png"])
        image = colorize(labels, palette) if source is None else overlay(source, labels, palette, options.alpha)
        yield _scaled(image, options.width)


def _with_sources(records: Iterable[dict], options: RenderOptions) -> Iterator[tuple[dict, np.ndarray | None]]:
    if options.masks_only:
        for record in records:
            yield record, None
        return
    pending: list[dict] = []

    def refs() -> Iterator[FrameRef]:
        for record in records:
            pending.append(record)
            yield FrameRef(record["source_url"], record["source_member"], record["source_frame_index"])

    store = Store(options.storage_options or {})
    for frame in read_frames(refs(), store, "render with --masks-only to draw the masks without it"):
        yield pending.pop(0), frame


def _with_legend(image: np.ndarray, classes: ClassSet, present: list[int]) -> np.ndarray:
    return np.concatenate([image, legend(classes, present, image.shape[0])], axis=1)


def _scaled(image: np.ndarray, width: int | None) -> np.ndarray:
    if width is None or width == image.shape[1]:
        return image
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.NEAREST))


def _present_classes(con: duckdb.DuckDBPyConnection, where: str, params: list) -> list[int]:
    """Classes present in the selected frames, most pixels first (from the histograms: no decoding)."""
    sql = (
        "SELECT class_id, sum(pixels) AS total FROM (SELECT unnest(range(len(class_histogram))) AS class_id, "
        f"unnest(class_histogram) AS pixels FROM frames WHERE {where}) GROUP BY class_id HAVING total > 0 "
        "ORDER BY total DESC, class_id"
    )
    return [int(c) for c, _ in con.sql(sql, params=params).fetchall()]


def _rows(con: duckdb.DuckDBPyConnection, where: str, params: list) -> list[dict]:
    sql = f"SELECT {_COLUMNS} FROM frames WHERE {where} ORDER BY frame_index"
    return con.sql(sql, params=params).to_arrow_table().to_pylist()


def _suffix(out: Path) -> str:
    suffix = Path(out).suffix.lower()
    if suffix not in SUFFIXES:
        raise RenderError(f"{out}: choose a file ending in {', '.join(SUFFIXES)}")
    return suffix


def _range_text(frames: tuple[int, int] | None) -> str:
    return f" between frames {frames[0]} and {frames[1]}" if frames else ""
