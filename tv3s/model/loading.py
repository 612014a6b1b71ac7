"""Where a model runs and where its weights come from: one rule for jobs and the CLI alike.

A labeling tool that silently runs random weights produces garbage that looks like
labels, so random weights are always an explicit choice (`build_random_model`), seeded
the same everywhere so that two actors or two runs of one spec give the same outputs.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .checkpoint import build_model, build_model_from_checkpoint
from .config import ModelConfig
from .segmentor import TV3S

RANDOM_WEIGHTS_SEED = 0


class DeviceError(RuntimeError):
    """The requested device cannot be used here; the message says what to choose instead."""


def choose_device(requested: str, gpu_ids: list | None = None) -> torch.device:
    """`cuda` when asked for (or `auto`) and a GPU that CUDA can use is here, else `cpu`.

    `gpu_ids` are the GPUs a scheduler (Ray) gave this process; None means "whatever CUDA
    sees". A node can advertise a GPU that is not one (an autoscaler test, a misconfigured
    pool): then `auto` falls back to CPU instead of failing, and `cuda` fails with the reason.
    """
    if requested not in ("auto", "cuda", "cpu"):
        raise DeviceError(f"device {requested!r}: use auto, cuda or cpu")
    usable = torch.cuda.is_available() and (gpu_ids is None or bool(gpu_ids))
    if requested == "cuda" and not usable:
        given = "" if gpu_ids is None else f"GPU ids given {gpu_ids}, "
        raise DeviceError(
            f"device cuda: torch {torch.__version__} has no usable GPU here ({given}"
            f"torch.cuda.is_available() = {torch.cuda.is_available()}); use auto or cpu, "
            "or install a CUDA build of torch on a GPU machine"
        )
    return torch.device("cuda" if requested != "cpu" and usable else "cpu")


def build_random_model(config: str | dict[str, Any] | ModelConfig, seed: int = RANDOM_WEIGHTS_SEED) -> TV3S:
    """A model with random weights, the same for a given seed on every machine and run.

    The global RNG is left as it was, so callers' own randomness does not depend on
    whether a model was built.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config)


def load_model(
    checkpoint: str | os.PathLike | bytes | None,
    config: str | dict[str, Any] | ModelConfig | None,
    device: torch.device,
) -> TV3S:
    """The model on `device` in eval mode: from a checkpoint (path or bytes, strict, weights only)
    when given, else random weights for `config` (the caller has checked that this was asked for)."""
    if checkpoint is not None:
        model = build_model_from_checkpoint(checkpoint)
    elif config is not None:
        model = build_random_model(config)
    else:
        raise ValueError("a checkpoint or a model config is needed")
    return model.to(device).eval()
