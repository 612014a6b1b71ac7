"""Sheets of the frames a diff found most changed: A | B | difference, one PNG per frame.

Each sheet puts A's and B's masks over the source frame (re-read by reference, as `tv3s
render` does, with its legend and sheet layout) and a third tile where the changed pixels
are drawn in CHANGED on the dimmed frame, so a reviewer sees at once where the labels moved.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..pipeline.ingest.source_frames import FrameRef, SourceReader
from ..pipeline.outputs.commit import Output
from ..pipeline.outputs.masks import colorize, decode_mask_png, overlay
from ..pipeline.outputs.render import contact_sheet, legend
from ..pipeline.storage import Store
from ..schemas.classes import ClassSet
from .diff_schema import DIFF_TABLES
from .sides import Side
from .tables import connect_tables

CHANGED = (255, 0, 255)
SHEETS = "most-changed"
_HINT = "the diff tables are written; to draw the sheets without sources, diff into a new --out with --masks-only"


def most_changed(dest: Output, count: int) -> list[dict]:
    """The `count` diff frames rows of lowest agreement (most changed first)."""
    con = connect_tables(dest, list(DIFF_TABLES))
    sql = "SELECT * EXCLUDE (class_iou) FROM frames ORDER BY agreement, video_id, frame_index LIMIT ?"
    return con.sql(sql, params=[count]).to_arrow_table().to_pylist()


def render_most_changed(
    a: Side, b: Side, dest: Output, classes: ClassSet, count: int, masks_only: bool, store: Store
) -> list[str]:
    """Write `SHEETS/NNN.png` under `dest` for the `count` most changed frames; their paths."""
    reader = None if masks_only else SourceReader(store, _HINT)
    written = []
    for rank, row in enumerate(most_changed(dest, count)):
        video_id, index = row["video_id"], row["frame_index"]
        labels_a = decode_mask_png(a.rows(video_id, [index])[index]["mask_png"])
        labels_b = decode_mask_png(b.rows(video_id, [index])[index]["mask_png"])
        source = None
        if reader is not None:
            source = reader.frame(FrameRef(row["source_url"], row["source_member"], row["source_frame_index"]))
        sheet = diff_sheet(row, (a, b), (labels_a, labels_b), source, classes)
        rel = f"{SHEETS}/{rank:03d}.png"
        buf = io.BytesIO()
        Image.fromarray(sheet).save(buf, format="PNG")
        dest.write_once(rel, buf.getvalue())
        written.append(dest.uri(rel))
    return written


def diff_sheet(
    row: dict,
    sides: tuple[Side, Side],
    labels: tuple[np.ndarray, np.ndarray],
    source: np.ndarray | None,
    classes: ClassSet,
) -> np.ndarray:
    """One frame's sheet: A's and B's masks (over the source, if given) and the changed pixels."""
    palette = classes.palette_array()
    tiles = [
        (
            colorize(mask, palette) if source is None else overlay(source, mask, palette),
            f"{side.name} {side.job_id} {row['video_id']} #{row['frame_index']}",
        )
        for side, mask in zip(sides, labels)
    ]
    base = colorize(labels[0], palette) if source is None else source
    tiles.append((difference(base, labels[0] != labels[1]), f"changed {1 - row['agreement']:.1%}"))
    present = sorted(set(np.unique(labels[0]).tolist()) | set(np.unique(labels[1]).tolist()))
    return contact_sheet(tiles, legend(classes, present, None), columns=3)


def difference(image: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """The image dimmed to grey, with the changed pixels in CHANGED."""
    grey = (image.astype(np.float32).mean(axis=2, keepdims=True) * 0.5).astype(np.uint8)
    out = np.repeat(grey, 3, axis=2)
    out[changed] = CHANGED
    return out
