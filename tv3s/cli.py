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
    label,
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
    label,
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


DEBUG_ENV = "TV3S_DEBUG"
DEBUG_HELP = f"show the traceback of an error (also {DEBUG_ENV}=1), e.g. to report a bug"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tv3s", description="Batch pseudo-labeling of video with TV3S (temporal state space sharing)."
    )
    parser.add_argument("--version", action="version", version=f"tv3s {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    _accept_debug_everywhere(subparsers)
    return parser


def _accept_debug_everywhere(subparsers: argparse._SubParsersAction) -> None:
    """`--debug` after any subcommand too (`tv3s run job.yaml --debug`), as users type it."""
    for parser in subparsers.choices.values():
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _accept_debug_everywhere(action)


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
        if args.debug or os.environ.get(DEBUG_ENV):
            raise
        message = explain(exc)
        if message is None:  # not a recognised mistake: most likely a bug of tv3s
            message = (
                f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (run again with "
                "--debug for the traceback, and report it if the inputs look right)"
            )
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
