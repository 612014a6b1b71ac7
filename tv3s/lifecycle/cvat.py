"""CVAT's "Segmentation mask 1.1" format, out (pre-annotations) and back (the annotators' export).

Layout (CVAT's documented format, Pascal VOC's segmentation layout)::

    labelmap.txt                     # label:color_rgb:parts:actions, one label a line
    ImageSets/Segmentation/default.txt   image names without extension, one a line
    SegmentationClass/NAME.png       the class mask: each pixel the colour of its label
    SegmentationObject/NAME.png      the instance mask (palette indices; here one object per class)
    JPEGImages/NAME.jpg              the frames

Colour (0, 0, 0) is CVAT's background, which here means "not labeled" (ignored in
training) unless the model has a class named background. Masks are told apart by colour
alone, so every class gets a colour of its own: its palette colour, unless black or taken by
an earlier class (VSPW's published palette repeats one), then the first free VOC colour.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from functools import partial

import numpy as np
from PIL import Image

from ..schemas.classes import ClassSet, default_palette

LABELMAP = "labelmap.txt"
IMAGE_SET = "ImageSets/Segmentation/default.txt"
CLASS_DIR = "SegmentationClass"
OBJECT_DIR = "SegmentationObject"
IMAGE_DIR = "JPEGImages"
BACKGROUND = "background"
BLACK = (0, 0, 0)


class CvatError(ValueError):
    """An export that is not the Segmentation mask layout, or whose labels do not fit; says which."""


def cvat_colours(classes: ClassSet) -> list[tuple[int, int, int]]:
    """Each class's mask colour: its own unless black or already taken (then a free VOC colour)."""
    taken = {BLACK}
    free = (tuple(int(v) for v in c) for c in default_palette(len(classes.names) + 256))
    colours = []
    for name, colour in zip(classes.names, classes.palette):
        colour = BLACK if name == BACKGROUND else tuple(int(v) for v in colour)
        if colour in taken and name != BACKGROUND:
            colour = next(c for c in free if c not in taken)
        taken.add(colour)
        colours.append(colour)
    return colours


def labelmap_text(classes: ClassSet, colours: list[tuple[int, int, int]]) -> str:
    """labelmap.txt: background first (unless the model has that class), then the classes."""
    bad = [n for n in classes.names if ":" in n]
    if bad:
        raise CvatError(f"class name {bad[0]!r} holds ':', which labelmap.txt uses as its separator")
    lines = ["# label:color_rgb:parts:actions"]
    if BACKGROUND not in classes.names:
        lines.append(f"{BACKGROUND}:0,0,0::")
    lines += [f"{name}:{r},{g},{b}::" for name, (r, g, b) in zip(classes.names, colours)]
    return "\n".join(lines) + "\n"


class CvatWriter:
    """Writes frames and their label maps into a Segmentation mask 1.1 zip, one frame at a time."""

    def __init__(self, path: str, classes: ClassSet) -> None:
        self.colours = np.asarray(cvat_colours(classes), np.uint8)
        self.names: list[str] = []
        self._zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
        self._zip.writestr(LABELMAP, labelmap_text(classes, [tuple(c) for c in self.colours.tolist()]))

    def add(self, name: str, jpeg: bytes, labels: np.ndarray) -> None:
        self._zip.writestr(f"{IMAGE_DIR}/{name}.jpg", jpeg)
        self._zip.writestr(f"{CLASS_DIR}/{name}.png", _png(Image.fromarray(self.colours[labels])))
        self._zip.writestr(f"{OBJECT_DIR}/{name}.png", _png(object_mask(labels)))
        self.names.append(name)

    def close(self) -> None:
        self._zip.writestr(IMAGE_SET, "".join(f"{n}\n" for n in self.names))
        self._zip.close()


def object_mask(labels: np.ndarray) -> Image.Image:
    """The instance mask: the k-th class present (k from 1) as palette index k, in VOC colours."""
    present = np.unique(labels)
    index = np.zeros(int(labels.max()) + 1, np.uint8)
    index[present] = np.arange(1, len(present) + 1)
    image = Image.fromarray(index[labels], mode="P")
    image.putpalette(default_palette(256).ravel().tolist())
    return image


def read_labelmap(text: str) -> dict[tuple[int, int, int], str]:
    """Colour -> label name of a labelmap.txt; CvatError on a line it cannot read or a colour used twice."""
    found: dict[tuple[int, int, int], str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(":")
        try:
            colour = tuple(int(v) for v in parts[1].split(","))
        except (IndexError, ValueError):
            colour = ()
        if len(colour) != 3:
            raise CvatError(f"{LABELMAP} line {number} ({line!r}) is not 'label:r,g,b:parts:actions'")
        if colour in found:
            raise CvatError(f"{LABELMAP} gives {found[colour]!r} and {parts[0]!r} the same colour {colour}")
        found[colour] = parts[0]
    return found


def zip_files(data: bytes) -> dict[str, Callable[[], bytes]]:
    """The members of a zip as `read_export` takes them: path -> a reader of its bytes."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    return {name: partial(archive.read, name) for name in archive.namelist() if not name.endswith("/")}


def read_export(
    files: dict[str, Callable[[], bytes]],
) -> tuple[dict[tuple[int, int, int], str], list[str], Callable[[str], np.ndarray]]:
    """An export's labelmap, its image names, and a reader of one name's class-colour mask [H, W, 3], given
    its files by path inside it (a zip's members or a folder's files), so masks are read one at a time."""
    if LABELMAP not in files:
        raise CvatError(f"it has no {LABELMAP}: export the CVAT task as 'Segmentation mask 1.1'")
    labelmap = read_labelmap(files[LABELMAP]().decode())
    if IMAGE_SET in files:
        names = [n.strip() for n in files[IMAGE_SET]().decode().splitlines() if n.strip()]
    else:
        prefix = f"{CLASS_DIR}/"
        names = sorted(m[len(prefix) : -4] for m in files if m.startswith(prefix) and m.endswith(".png"))

    def mask(name: str) -> np.ndarray:
        member = f"{CLASS_DIR}/{name}.png"
        if member not in files:
            raise CvatError(f"{IMAGE_SET} lists {name!r} but there is no {member}")
        with Image.open(io.BytesIO(files[member]())) as image:
            return np.asarray(image.convert("RGB"))

    return labelmap, names, mask


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
