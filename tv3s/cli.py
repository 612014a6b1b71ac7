"""The `tv3s` console script: a dispatcher over the subcommand modules in tv3s.commands.

Adding a subcommand means writing a module with `register` and `run` and
listing it in COMMANDS; nothing else here changes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import __version__
from .commands import (
    compact,
    demo,
    demo_clip,
    export,
    index,
    job_control,
    k8s,
    query,
    render,
    run,
    schema,
    segment,
    shards,
    submit,
    synth,
    synth_eval,
    train,
)
from .commands import eval as eval_

COMMANDS = (
    run,
    submit,
    job_control,
    schema,
    demo,
    segment,
    demo_clip,
    index,
    shards,
    synth,
    synth_eval,
    train,
    query,
    compact,
    render,
    export,
    eval_,
    k8s,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tv3s", description="Batch pseudo-labeling of video with TV3S (temporal state space sharing)."
    )
    parser.add_argument("--version", action="version", version=f"tv3s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit code (argparse's own exits are returned, not raised)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 1
    return args.run(args)
