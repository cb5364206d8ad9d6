"""Lines for the person at the console that never stop a command: a stream whose reader has
gone (``| head``, a closed pipe) or that refuses writes (``>/dev/full``) is silenced, so that a
finished run is not reported as failed for want of its last line.  Imports nothing heavy."""
from __future__ import annotations

import os
import sys
from typing import IO, Optional


def silence(stream: IO) -> None:
    """Point ``stream``'s file descriptor at /dev/null: its reader has gone (a closed pipe), and
    neither a later write nor the interpreter's final flush may fail on it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not backed by a file descriptor (e.g. StringIO): dropping writes is all we can do


def say(text: str, stream: Optional[IO] = None) -> None:
    """Print a line (to stderr unless ``stream``); one that cannot be written silences the stream."""
    stream = stream or sys.stderr
    try:
        print(text, file=stream, flush=True)
    except OSError:
        silence(stream)
