"""Synthetic driving scenes with exact ground truth, for demos, tests, training and evaluation.

`scenes` renders videos and their label maps; `archive` writes them as segment shards
(the demo's archive); `training_data` reads and writes (frame, mask) training shards and
samples official training clips; `heldout` scores a model on unseen scenes per mode.
"""

from .archive import write_synthetic_archive
from .heldout import evaluate_modes
from .scenes import NUM_CLASSES, render_scene
from .training_data import Augment, ClipSampler, read_training_shards, write_synthetic_shards

__all__ = [
    "NUM_CLASSES",
    "Augment",
    "ClipSampler",
    "evaluate_modes",
    "read_training_shards",
    "render_scene",
    "write_synthetic_archive",
    "write_synthetic_shards",
]
