"""The `tv3s` console script: a dispatcher over the subcommand modules in tv3s.commands.

Adding a subcommand means writing a module with `register` and `run` and
listing it in COMMANDS; nothing else here changes.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence

from . import __version__
from .commands import (
    compact,
    demo,
    demo_clip,
    diff,
    export,
    index,
    job_control,
    k8s,
    query,
    render,
    review,
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
from .commands.mistakes import explain

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
    diff,
    review,
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


# The status of a process killed by SIGPIPE as shells report it (128 + 13): what `tv3s ... | head` gives
# when head stops reading, like any other tool in the pipe, so `set -o pipefail` scripts see the same.
STDOUT_CLOSED = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit code (argparse's own exits are returned, not raised)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 1
    try:
        code = args.run(args)
        sys.stdout.flush()  # a reader gone shows here rather than in the flush at exit
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe or socket broke: a real error, with its traceback
        return _quiet_exit()
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise  # not a user's mistake: a bug, with its traceback
        print(f"tv3s {args.command}: error: {message}", file=sys.stderr)
        return 1
    return code


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader is gone (poll says POLLERR), as after `| head -1`."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # replaced or closed stdout: not a pipe of ours
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _quiet_exit() -> int:
    """Stop writing to the closed stdout, as the Python docs advise for SIGPIPE: output still buffered
    would fail again in the flush at exit, with a traceback, so stdout is pointed at /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return STDOUT_CLOSED
