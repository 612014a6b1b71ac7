"""Class names and palettes of the datasets TV3S is published for: VSPW (124) and Cityscapes (19).

Copied from the official TV3S code (utils/datasets/vspw.py, cityscapes.py) so that
rendered overlays and legends match the paper's figures. VSPW's label 0 ("others")
is not a class: masks store VSPW class k as k - 1 (the official reduce-zero-label
convention), so index 0 here is "wall". The official VSPW palette gives
"Playground_slide" (6) and "car" (48) the same grey; it is kept as published.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def default_palette(num_classes: int) -> np.ndarray:
    """Deterministic, pairwise distinct colours [C, 3] uint8 (the PASCAL VOC bit-spreading scheme)."""
    ids = np.arange(num_classes, dtype=np.int64)
    palette = np.zeros((num_classes, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (ids >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    if num_classes > 1 << 24:
        raise ValueError(f"cannot make {num_classes} distinct RGB colours")
    return palette.astype(np.uint8)


@dataclass(frozen=True)
class ClassSet:
    """Names and RGB colours of a label space, index = label value."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.palette):
            raise ValueError(f"class set {self.name}: {len(self.names)} names but {len(self.palette)} colours")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette_array(self) -> np.ndarray:
        return np.asarray(self.palette, dtype=np.uint8).reshape(-1, 3)


VSPW_CLASSES = (
    "wall",
    "ceiling",
    "door",
    "stair",
    "ladder",
    "escalator",
    "Playground_slide",
    "handrail_or_fence",
    "window",
    "rail",
    "goal",
    "pillar",
    "pole",
    "floor",
    "ground",
    "grass",
    "sand",
    "athletic_field",
    "road",
    "path",
    "crosswalk",
    "building",
    "house",
    "bridge",
    "tower",
    "windmill",
    "well_or_well_lid",
    "other_construction",
    "sky",
    "mountain",
    "stone",
    "wood",
    "ice",
    "snowfield",
    "grandstand",
    "sea",
    "river",
    "lake",
    "waterfall",
    "water",
    "billboard_or_Bulletin_Board",
    "sculpture",
    "pipeline",
    "flag",
    "parasol_or_umbrella",
    "cushion_or_carpet",
    "tent",
    "roadblock",
    "car",
    "bus",
    "truck",
    "bicycle",
    "motorcycle",
    "wheeled_machine",
    "ship_or_boat",
    "raft",
    "airplane",
    "tyre",
    "traffic_light",
    "lamp",
    "person",
    "cat",
    "dog",
    "horse",
    "cattle",
    "other_animal",
    "tree",
    "flower",
    "other_plant",
    "toy",
    "ball_net",
    "backboard",
    "skateboard",
    "bat",
    "ball",
    "cupboard_or_showcase_or_storage_rack",
    "box",
    "traveling_case_or_trolley_case",
    "basket",
    "bag_or_package",
    "trash_can",
    "cage",
    "plate",
    "tub_or_bowl_or_pot",
    "bottle_or_cup",
    "barrel",
    "fishbowl",
    "bed",
    "pillow",
    "table_or_desk",
    "chair_or_seat",
    "bench",
    "sofa",
    "shelf",
    "bathtub",
    "gun",
    "commode",
    "roaster",
    "other_machine",
    "refrigerator",
    "washing_machine",
    "Microwave_oven",
    "fan",
    "curtain",
    "textiles",
    "clothes",
    "painting_or_poster",
    "mirror",
    "flower_pot_or_vase",
    "clock",
    "book",
    "tool",
    "blackboard",
    "tissue",
    "screen_or_television",
    "computer",
    "printer",
    "Mobile_phone",
    "keyboard",
    "other_electronic_product",
    "fruit",
    "food",
    "instrument",
    "train",
)

VSPW_PALETTE = (
    (120, 120, 120),
    (180, 120, 120),
    (6, 230, 230),
    (80, 50, 50),
    (4, 200, 3),
    (120, 120, 80),
    (140, 140, 140),
    (204, 5, 255),
    (230, 230, 230),
    (4, 250, 7),
    (224, 5, 255),
    (235, 255, 7),
    (150, 5, 61),
    (120, 120, 70),
    (8, 255, 51),
    (255, 6, 82),
    (143, 255, 140),
    (204, 255, 4),
    (255, 51, 7),
    (204, 70, 3),
    (0, 102, 200),
    (61, 230, 250),
    (255, 6, 51),
    (11, 102, 255),
    (255, 7, 71),
    (255, 9, 224),
    (9, 7, 230),
    (220, 220, 220),
    (255, 9, 92),
    (112, 9, 255),
    (8, 255, 214),
    (7, 255, 224),
    (255, 184, 6),
    (10, 255, 71),
    (255, 41, 10),
    (7, 255, 255),
    (224, 255, 8),
    (102, 8, 255),
    (255, 61, 6),
    (255, 194, 7),
    (255, 122, 8),
    (0, 255, 20),
    (255, 8, 41),
    (255, 5, 153),
    (6, 51, 255),
    (235, 12, 255),
    (160, 150, 20),
    (0, 163, 255),
    (140, 140, 140),
    (250, 10, 15),
    (20, 255, 0),
    (31, 255, 0),
    (255, 31, 0),
    (255, 224, 0),
    (153, 255, 0),
    (0, 0, 255),
    (255, 71, 0),
    (0, 235, 255),
    (0, 173, 255),
    (31, 0, 255),
    (11, 200, 200),
    (255, 82, 0),
    (0, 255, 245),
    (0, 61, 255),
    (0, 255, 112),
    (0, 255, 133),
    (255, 0, 0),
    (255, 163, 0),
    (255, 102, 0),
    (194, 255, 0),
    (0, 143, 255),
    (51, 255, 0),
    (0, 82, 255),
    (0, 255, 41),
    (0, 255, 173),
    (10, 0, 255),
    (173, 255, 0),
    (0, 255, 153),
    (255, 92, 0),
    (255, 0, 255),
    (255, 0, 245),
    (255, 0, 102),
    (255, 173, 0),
    (255, 0, 20),
    (255, 184, 184),
    (0, 31, 255),
    (0, 255, 61),
    (0, 71, 255),
    (255, 0, 204),
    (0, 255, 194),
    (0, 255, 82),
    (0, 10, 255),
    (0, 112, 255),
    (51, 0, 255),
    (0, 194, 255),
    (0, 122, 255),
    (0, 255, 163),
    (255, 153, 0),
    (0, 255, 10),
    (255, 112, 0),
    (143, 255, 0),
    (82, 0, 255),
    (163, 255, 0),
    (255, 235, 0),
    (8, 184, 170),
    (133, 0, 255),
    (0, 255, 92),
    (184, 0, 255),
    (255, 0, 31),
    (0, 184, 255),
    (0, 214, 255),
    (255, 0, 112),
    (92, 255, 0),
    (0, 224, 255),
    (112, 224, 255),
    (70, 184, 160),
    (163, 0, 255),
    (153, 0, 255),
    (71, 255, 0),
    (255, 0, 163),
    (255, 204, 0),
    (255, 0, 143),
    (0, 255, 235),
    (133, 255, 0),
)

CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

CITYSCAPES_PALETTE = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
)

VSPW = ClassSet("vspw", VSPW_CLASSES, VSPW_PALETTE)
CITYSCAPES = ClassSet("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE)
DATASETS = {c.name: c for c in (VSPW, CITYSCAPES)}


def generic_classes(num_classes: int) -> ClassSet:
    """class_0 .. class_{C-1} with the distinct default palette, for other label spaces."""
    palette = tuple(tuple(int(v) for v in rgb) for rgb in default_palette(num_classes))
    return ClassSet(f"generic{num_classes}", tuple(f"class_{i}" for i in range(num_classes)), palette)


def classes_for(num_classes: int, names: list[str] | None = None, palette: list | None = None) -> ClassSet:
    """The best class set for a label space: the model's own names (and colours) when it has
    real ones, else the published dataset of that size (VSPW 124, Cityscapes 19), else generic.

    Models built without a checkpoint name their classes class_0.. ; those names carry no
    information, so a dataset of the same size is preferred over them.
    """
    generic = generic_classes(num_classes)
    if names is not None and len(names) == num_classes and tuple(names) != generic.names:
        if palette is None or len(palette) != num_classes:
            return ClassSet("model", tuple(names), generic.palette)
        return ClassSet("model", tuple(names), tuple(tuple(int(v) for v in rgb) for rgb in palette))
    for dataset in DATASETS.values():
        if dataset.num_classes == num_classes:
            return dataset
    return generic
