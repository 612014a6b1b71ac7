"""The `tv3s` command as a separate process, for what only a real process shows (pipes, exit status)."""

from __future__ import annotations

import os
import subprocess
import sys


def run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """`python -m tv3s ARGS` writing into a pipe whose reader, `head -1`, has already read its line and exited.

    Any write to stdout then fails (EPIPE), as in `tv3s ... | head -1` when head wins the race; here it
    always does. The child inherits the environment (PYTHONPATH included)."""
    read, write = os.pipe()
    with subprocess.Popen(["head", "-1"], stdin=read, stdout=subprocess.PIPE) as head:
        os.close(read)
        os.write(write, b"a line\n")
        assert head.communicate(timeout=30)[0] == b"a line\n"
    try:
        return subprocess.run(
            [sys.executable, "-m", "tv3s", *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=300
        )
    finally:
        os.close(write)
