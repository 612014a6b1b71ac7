"""Label quality: mIoU and VSPW's video consistency (`metrics`), and scoring a job's committed
masks against ground-truth PNGs or, without ground truth, by temporal agreement (`evaluate`)."""

from .evaluate import EvalError, agreement_distribution, evaluate_against_ground_truth
from .metrics import Evaluation, mean_iou

__all__ = ["EvalError", "Evaluation", "agreement_distribution", "evaluate_against_ground_truth", "mean_iou"]
