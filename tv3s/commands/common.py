"""Options and model loading shared by the subcommands that run a model.

Refusals and misuse raise `UsageError` (exit code 2); the subcommand prints
the message, which always says which option to pass instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ..model.predict import MODES
from ..pipeline.local.segment import SegmentOptions

DEFAULT_PRESET = "tv3s-b0-vspw"
RANDOM_WEIGHTS_WARNING = (
    "RANDOM WEIGHTS: the model was not loaded from a checkpoint, so its masks are meaningless. "
    "Use this only to test the pipeline; pass --checkpoint PATH for real pseudo-labels."
)


class UsageError(Exception):
    """The command line asks for something impossible or unsafe; the message names the fix."""


def add_model_arguments(parser: argparse.ArgumentParser, default_preset: str | None = None) -> None:
    """--checkpoint | --preset, --random-weights, --device."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint", type=Path, metavar="PATH", help="TV3S checkpoint (.pth); the architecture is inferred from it"
    )
    source.add_argument(
        "--preset",
        metavar="NAME",
        default=default_preset,
        help=f"architecture preset name (e.g. {DEFAULT_PRESET}) or a JSON file holding a model config dict "
        "(or a config.json with a 'model' entry); only used with --random-weights",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="run the --preset architecture with random weights (pipeline smoke test; masks are meaningless)",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")


def add_run_arguments(parser: argparse.ArgumentParser, resize_default: str = "official") -> None:
    """--mode, --chunk, --max-frames, --every, --resize, --no-overlay, --overwrite."""
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="stream",
        help="stream: Mamba state carried over the whole video (default); clip: the official 4-frame test clips",
    )
    parser.add_argument(
        "--chunk", type=positive_int, default=16, metavar="N", help="frames per model call (default 16)"
    )
    parser.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames")
    add_every_argument(parser)
    add_resize_argument(parser, resize_default)
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay JPEGs")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")


def add_every_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--every",
        type=positive_int,
        default=1,
        metavar="N",
        help="label every Nth frame (frames 0, N, 2N, ... of each video; the state is carried over them)",
    )


def add_resize_argument(parser: argparse.ArgumentParser, default: str = "official") -> None:
    parser.add_argument(
        "--resize",
        choices=("official", "none"),
        default=default,
        help="model input size: official = the TV3S test rule (853x480, multiples of 32), as jobs do; "
        f"none = the source size (default {default}); masks are at the source size either way",
    )


def run_options(args: argparse.Namespace) -> SegmentOptions:
    return SegmentOptions(
        mode=args.mode,
        chunk=args.chunk,
        max_frames=args.max_frames,
        overlays=not args.no_overlay,
        overwrite=args.overwrite,
        resize=args.resize,
        stride=args.every,
    )


def resolve_device(name: str) -> torch.device:
    """--device as a torch device (the rule jobs use); a device that cannot be used is a usage error."""
    from ..model.loading import DeviceError, choose_device

    try:
        return choose_device(name)
    except DeviceError as exc:
        raise UsageError(f"--{exc}") from None


def load_model(
    checkpoint: Path | None, preset: str | None, random_weights: bool, device: torch.device
) -> tuple[Any, dict[str, Any]]:
    """The model on `device` in eval mode, plus summary entries saying where its weights came from.

    Without a checkpoint this refuses unless `random_weights`: silently
    producing random pseudo-labels is the worst failure of a labeling tool.
    """
    from ..model.loading import load_model as load

    check_weights_choice(checkpoint, random_weights)
    if checkpoint is not None:
        model = load(checkpoint, None, device)
        info: dict[str, Any] = {"checkpoint": str(checkpoint), "random_weights": False}
    else:
        try:
            model = load(None, preset_config(preset or DEFAULT_PRESET), device)
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(f"--preset {preset}: {exc}") from exc
        info = {
            "checkpoint": None,
            "preset": preset or DEFAULT_PRESET,
            "random_weights": True,
            "warning": RANDOM_WEIGHTS_WARNING,
        }
    info["device"] = str(device)
    return model, info


def check_weights_choice(checkpoint: Path | None, random_weights: bool) -> None:
    """Refuse a run without trained weights unless random weights were asked for explicitly."""
    if checkpoint is not None:
        if random_weights:
            raise UsageError("--random-weights contradicts --checkpoint; pass one of them.")
        if not checkpoint.is_file():
            raise UsageError(f"--checkpoint {checkpoint}: no such file; check the path.")
    elif not random_weights:
        raise UsageError(
            "no --checkpoint given. Segmenting needs trained weights: pass --checkpoint PATH "
            "(an official TV3S .pth). To try the pipeline anyway, add --random-weights "
            f"(uses --preset, default {DEFAULT_PRESET}; the masks will be meaningless)."
        )


def random_weights_banner() -> str:
    line = "!" * 78
    return f"{line}\n!! {RANDOM_WEIGHTS_WARNING}\n{line}"


def preset_config(preset: str) -> str | dict[str, Any]:
    """A preset name as is, or the model dict from a JSON file (a bare dict or config.json's 'model')."""
    path = Path(preset)
    if not (preset.endswith(".json") or path.is_file()):
        return preset
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--preset {preset}: cannot read a JSON model config ({exc}).") from exc
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict):
        raise UsageError(f"--preset {preset}: the JSON must be a model config object, got {type(data).__name__}.")
    return data


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
