"""Label Studio tasks with the model's masks as brush pre-annotations, and the annotators' masks back.

A task is ``{"data": {"image": URL, ...}, "predictions": [{"result": [...]}]}``, one
`brushlabels` region per class present in the frame (its mask in brush RLE, `brush_rle`),
which Label Studio shows for correction in a project labeled with `labeling_config`. Its
JSON export returns each task with the annotators' `annotations`; `annotated_masks` turns the
latest one that was not cancelled back into a label map.
"""

from __future__ import annotations

from collections.abc import Iterator
from xml.sax.saxutils import quoteattr

import numpy as np

from ..schemas.classes import ClassSet
from .brush_rle import mask_to_rle, rle_to_mask

FROM_NAME = "label"
TO_NAME = "image"
IGNORE = 255  # pixels no region covers: not labeled


class LabelStudioError(ValueError):
    """A task export that cannot be turned into label maps; the message names the task and the fix."""


def labeling_config(classes: ClassSet) -> str:
    """The project's labeling interface: the image and a brush label per class, in the model's colours."""
    labels = "".join(
        f'    <Label value={quoteattr(name)} background="#{r:02x}{g:02x}{b:02x}"/>\n'
        for name, (r, g, b) in zip(classes.names, classes.palette)
    )
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}  </BrushLabels>\n'
        "</View>\n"
    )


def task(image_url: str, data: dict, labels: np.ndarray, classes: ClassSet, model_version: str, score: float) -> dict:
    """A task for one frame: `data` (kept by Label Studio, and so in its export) plus the image, and its
    label map as a prediction of one brush region per class present."""
    height, width = labels.shape
    regions = [
        {
            "id": f"c{int(c)}",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "brushlabels",
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "value": {"format": "rle", "rle": mask_to_rle(labels == c), "brushlabels": [classes.names[int(c)]]},
        }
        for c in np.unique(labels)
    ]
    prediction = {"model_version": model_version, "score": score, "result": regions}
    return {"data": {"image": image_url, **data}, "predictions": [prediction]}


def annotated_masks(
    tasks: list[dict], classes: ClassSet, sizes: dict[str, tuple[int, int]]
) -> Iterator[tuple[dict, np.ndarray | None]]:
    """(task data, label map) per task, IGNORE where no region is; None for a task nobody annotated.

    Regions are painted in their order in the result, later over earlier, as Label Studio stacks
    them: a region drawn over the pre-annotation wins. `sizes` gives each frame's (height, width)
    by the task's data name.
    """
    index = {name: k for k, name in enumerate(classes.names)}
    for item in tasks:
        data = item.get("data", {})
        annotation = latest_annotation(item)
        if annotation is None:
            yield data, None
            continue
        height, width = sizes[data["name"]]
        labels = np.full((height, width), IGNORE, np.uint8)
        for region in annotation.get("result", []):
            name = region_label(item, region, index)
            labels[_region_mask(item, region, height, width)] = index[name]
        yield data, labels


def check_labels(tasks: list[dict], classes: ClassSet) -> None:
    """LabelStudioError for the first region of a latest annotation that is not a brush of one model class:
    checked before anything is written, so a mistake costs no half-made import."""
    index = {name: k for k, name in enumerate(classes.names)}
    for item in tasks:
        for region in (latest_annotation(item) or {}).get("result", []):
            region_label(item, region, index)


def latest_annotation(item: dict) -> dict | None:
    """The task's most recently updated annotation that was not cancelled (skipped), if any."""
    done = [a for a in item.get("annotations", []) if not a.get("was_cancelled")]
    if not done:
        return None
    return max(enumerate(done), key=lambda p: (str(p[1].get("updated_at") or p[1].get("created_at") or ""), p[0]))[1]


def region_label(item: dict, region: dict, index: dict[str, int]) -> str:
    where = f"task {item.get('id', '?')} ({item.get('data', {}).get('name', 'no name')})"
    if region.get("type", "").lower() != "brushlabels":
        raise LabelStudioError(
            f"{where} has a {region.get('type')!r} region; only brush regions make masks: redraw it with the brush"
        )
    names = region.get("value", {}).get("brushlabels") or []
    if len(names) != 1:
        raise LabelStudioError(f"{where} has a brush region with labels {names}; give each region exactly one label")
    if names[0] not in index:
        raise LabelStudioError(
            f"{where}: label {names[0]!r} is not a class of the model ({_some(index)}); rename it in the Label "
            "Studio project to the model's class name, or import with --classes naming the classes the labels use"
        )
    return names[0]


def _region_mask(item: dict, region: dict, height: int, width: int) -> np.ndarray:
    size = (region.get("original_height"), region.get("original_width"))
    if size != (height, width):
        raise LabelStudioError(
            f"task {item.get('id', '?')}: a region drawn on a {size[1]}x{size[0]} image, the frame is "
            f"{width}x{height}; annotate the images tv3s review exported"
        )
    return rle_to_mask(region["value"]["rle"], height, width)


def _some(index: dict[str, int], shown: int = 12) -> str:
    names = list(index)
    return ", ".join(names[:shown]) + (f", ... {len(names) - shown} more" if len(names) > shown else "")
