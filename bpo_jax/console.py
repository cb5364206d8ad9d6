"""Lines for the person at the console that never stop a command: a stream whose reader has
gone (``| head``, a closed pipe) or that refuses writes (``>/dev/full``) is silenced, so that a
finished run is not reported as failed for want of its last line.  Imports nothing heavy."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import IO, Iterator, Optional


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


class _DroppingLines:
    """A stand-in for ``sys.stdout`` that passes every line on except those starting with
    ``prefix``.  Lines are gathered per thread (print writes a line in pieces), so another
    thread's output goes through whole while the stand-in is in place."""

    def __init__(self, stream: IO, prefix: str):
        self._stream, self._prefix = stream, prefix
        self._pending: dict[int, str] = {}
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            thread = threading.get_ident()
            lines = (self._pending.pop(thread, "") + text).split("\n")
            if lines[-1]:
                self._pending[thread] = lines[-1]
            kept = [line + "\n" for line in lines[:-1] if not line.startswith(self._prefix)]
        if kept:
            self._stream.write("".join(kept))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> str:
        """Everything still pending (pieces no newline ended), for the real stream."""
        with self._lock:
            rest, self._pending = self._pending, {}
        return "".join(piece for piece in rest.values() if not piece.startswith(self._prefix))

    def __getattr__(self, name):  # fileno, encoding, isatty, ...: the real stream's
        return getattr(self._stream, name)


@contextlib.contextmanager
def dropping_lines(prefix: str) -> Iterator[None]:
    """Within the body, lines printed to ``sys.stdout`` that start with ``prefix`` are dropped;
    every other line, from any thread, is printed.  ``contextlib.redirect_stdout`` would drop
    them all."""
    real = sys.stdout
    if real is None:  # no console (pythonw): nothing to filter
        yield
        return
    stand_in = _DroppingLines(real, prefix)
    sys.stdout = stand_in
    try:
        yield
    finally:
        if sys.stdout is stand_in:
            sys.stdout = real
        rest = stand_in.close()
        if rest:
            real.write(rest)
