"""Label quality: mIoU and VSPW's video consistency (`metrics`), and scoring a job's committed
masks against ground-truth PNGs or, without ground truth, by temporal agreement (`evaluate`)."""

import importlib

from .metrics import Evaluation, mean_iou

# `evaluate` reads an output with DuckDB: imported when first asked for, so the metrics alone
# (synthetic.heldout, on the GPU machines of benchmarks/device) need no DuckDB.
_EVALUATE = ("EvalError", "agreement_distribution", "evaluate_against_ground_truth")

__all__ = ["EvalError", "Evaluation", "agreement_distribution", "evaluate_against_ground_truth", "mean_iou"]


def __getattr__(name: str):
    """`evaluate`'s names, imported on first use."""
    if name not in _EVALUATE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(".evaluate", __name__), name)
