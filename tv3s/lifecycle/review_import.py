"""`tv3s review import`: the annotators' corrected masks back as training shards `tv3s train` reads.

SRC is what the annotation tool exported: CVAT's Segmentation mask 1.1 (a .zip, or its
folder) or Label Studio's JSON export (a .json task list). The review folder that `tv3s
review export` wrote maps its image names back to (video, frame) and holds the frames; the
labels are matched to the model's classes by name, and a label the model does not have
stops the import with its name and the fix. Pixels no label covers (CVAT's background, or
outside every Label Studio region) become 255, which training ignores. Frames nobody
annotated (Label Studio) and masks with no labeled pixel are left out and counted.

Shards are written by `tv3s export`'s writer (`export.write_shard`): the same layout,
each placed whole. DEST also gets `_import.json`, written last: what was imported from where.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..pipeline.outputs.export import training_sample, write_shard
from ..pipeline.outputs.masks import encode_mask_png
from ..pipeline.storage import Store
from ..schemas.classes import DATASETS, ClassSet, classes_for
from .cvat import BACKGROUND, read_export, zip_files
from .label_studio import IGNORE, annotated_masks, check_labels, latest_annotation
from .review_export import IMAGES, REVIEW, ReviewError
from .tables import is_used

RECORD = "_import.json"


@dataclass
class ImportResult:
    shards: list[str] = field(default_factory=list)
    samples: int = 0
    not_annotated: list[str] = field(default_factory=list)  # frame names
    empty: list[str] = field(default_factory=list)  # annotated, but no pixel labeled


def import_review(
    src: str, review_url: str, dest: str, store: Store, classes: ClassSet | None = None, shard_frames: int = 1000
) -> ImportResult:
    """Write the annotated frames of `src` as shards under `dest` (a new location)."""
    dest, review_url = dest.rstrip("/"), review_url.rstrip("/")
    if is_used(*store.filesystem(dest)):
        raise ReviewError(f"{dest} is not empty; import to a new --to, or delete {dest} first")
    review = load_review(review_url, store)
    classes = classes or ClassSet("model", tuple(review["class_names"]), tuple(map(tuple, review["palette"])))
    if classes.num_classes > IGNORE:
        raise ReviewError(f"{classes.num_classes} classes do not fit 8-bit training masks with 255 as ignore")
    entries = {e["name"]: e for e in review["frames"]}
    fmt, labeled = annotations(src, store, entries, classes)
    result = ImportResult()
    items = sorted(labeled, key=lambda item: (item[0]["video_id"], item[0]["frame_index"]))
    for start in range(0, len(items), shard_frames):
        url = f"{dest}/shard-{len(result.shards):05d}.tar"
        samples = _samples(items[start : start + shard_frames], review_url, store, fmt, result)
        result.samples += write_shard(samples, url, store)
        result.shards.append(url)
    record = {"src": src, "review": review_url, "format": fmt, "classes": list(classes.names), **result.__dict__}
    store.write(f"{dest}/{RECORD}", json.dumps(record, indent=1).encode())
    return result


def _samples(
    items: list[tuple[dict, Callable[[], np.ndarray | None]]],
    review_url: str,
    store: Store,
    fmt: str,
    result: ImportResult,
) -> Iterator[dict]:
    """Training samples of the items with labeled pixels; the others are counted in `result`."""
    for entry, labels_of in items:
        labels = labels_of()
        if labels is None:
            result.not_annotated.append(entry["name"])
            continue
        if (labels == IGNORE).all():
            result.empty.append(entry["name"])
            continue
        jpeg = store.read_all(f"{review_url}/{IMAGES}/{entry['name']}.jpg")
        meta = {"video_id": entry["video_id"], "frame_index": entry["frame_index"], "source": "review", "format": fmt}
        yield training_sample(entry["video_id"], entry["frame_index"], jpeg, encode_mask_png(labels), meta)


def load_review(review_url: str, store: Store) -> dict:
    fs, path = store.filesystem(f"{review_url}/{REVIEW}")
    if not fs.exists(path):
        raise ReviewError(f"{review_url} has no {REVIEW}: pass --review the folder `tv3s review export` wrote")
    return json.loads(store.read_all(f"{review_url}/{REVIEW}"))


def annotations(
    src: str, store: Store, entries: dict[str, dict], classes: ClassSet
) -> tuple[str, list[tuple[dict, Callable[[], np.ndarray | None]]]]:
    """The export's format and, per frame, (review entry, a reader of its label map: None if not annotated).

    Labels are read when the shard writer comes to them, so a large export is never all in memory."""
    fs, path = store.filesystem(src)
    if not fs.exists(path):
        raise ReviewError(f"{src}: no such file or folder; give CVAT's .zip (or its folder) or Label Studio's .json")
    if src.endswith(".json"):
        tasks = json.loads(store.read_all(src))
        check_labels(tasks, classes)
        if not any(latest_annotation(item) for item in tasks):
            raise ReviewError(f"{src}: no task has an annotation; annotate in Label Studio, then export the JSON again")
        by_name = {}
        for item in tasks:
            entry = _entry(entries, item.get("data", {}).get("name"), "Label Studio task")
            by_name[entry["name"]] = (entry, partial(_task_labels, item, classes, entry))
        return "label-studio", list(by_name.values())
    labelmap, names, mask = read_export(_cvat_files(src, store))
    lookup = colour_classes(labelmap, classes)
    return "cvat", [(_entry(entries, n, "CVAT image"), partial(_colour_labels, n, mask, lookup)) for n in names]


def _task_labels(item: dict, classes: ClassSet, entry: dict) -> np.ndarray | None:
    ((_, labels),) = annotated_masks([item], classes, {entry["name"]: (entry["height"], entry["width"])})
    return labels


def colour_classes(labelmap: dict[tuple[int, int, int], str], classes: ClassSet) -> dict[int, int]:
    """Packed colour (r << 16 | g << 8 | b) -> class index (IGNORE for background); an unknown label stops."""
    index = {name: k for k, name in enumerate(classes.names)}
    lookup = {}
    for (r, g, b), name in labelmap.items():
        if name not in index and name != BACKGROUND:
            raise ReviewError(
                f"CVAT label {name!r} (colour {r},{g},{b}) is not a class of the model ({', '.join(classes.names[:12])}"
                f"{', ...' if classes.num_classes > 12 else ''}); rename the label in the CVAT task to the model's class "
                "name, or import with --classes naming the classes the labels use"
            )
        lookup[r << 16 | g << 8 | b] = index.get(name, IGNORE)
    return lookup


def _colour_labels(name: str, mask: Callable[[str], np.ndarray], lookup: dict[int, int]) -> np.ndarray:
    rgb = mask(name).astype(np.int32)
    packed = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    unknown = [int(c) for c in colours if int(c) not in lookup]
    if unknown:
        c = unknown[0]
        raise ReviewError(
            f"CVAT mask {name!r} has pixels of colour {c >> 16},{c >> 8 & 255},{c & 255}, which labelmap.txt does not "
            "list; export the task again as 'Segmentation mask 1.1'"
        )
    return np.asarray([lookup[int(c)] for c in colours], np.uint8)[inverse.reshape(packed.shape)]


def _entry(entries: dict[str, dict], name: str | None, what: str) -> dict:
    if name not in entries:
        raise ReviewError(f"{what} {name!r} is not a frame of this review; pass --review the folder it was exported to")
    return entries[name]


def _cvat_files(src: str, store: Store) -> dict[str, Callable[[], bytes]]:
    """A CVAT export's files by path inside it: the members of SRC.zip, or the files under folder SRC."""
    if src.endswith(".zip"):
        return zip_files(store.read_all(src))
    fs, root = store.filesystem(src)
    if not fs.isdir(root):
        raise ReviewError(f"{src}: give CVAT's .zip (or its unpacked folder) or Label Studio's .json export")
    root = root.rstrip("/")
    found = fs.find(root)
    return {p[len(root) + 1 :]: partial(store.read_all, fs.unstrip_protocol(p) if "://" in src else p) for p in found}


def parse_classes(spec: str) -> ClassSet:
    """--classes: a published class set by name, or a text file of class names, one a line, in label order."""
    if spec in DATASETS:
        return DATASETS[spec]
    try:
        with open(spec) as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise ReviewError(
            f"--classes {spec}: not {' or '.join(DATASETS)}, nor a readable file of names ({exc})"
        ) from exc
    if not names:
        raise ReviewError(f"--classes {spec}: the file lists no class names")
    return classes_for(len(names), names)
