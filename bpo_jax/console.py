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
    """A stand-in for ``sys.stdout`` that passes every line on except those starting with one of
    ``prefixes``.  Lines are gathered per thread (print writes a line in pieces), so another
    thread's output goes through whole while the stand-in is in place; once closed it passes
    everything straight on (where a later stand-in put it back as sys.stdout)."""

    def __init__(self, stream: IO, prefixes: tuple[str, ...]):
        self._stream, self._prefixes = stream, prefixes
        self._pending: dict[int, str] = {}
        self._lock = threading.Lock()
        self.closed_off = False

    def write(self, text: str) -> int:
        with self._lock:
            if self.closed_off:
                kept = text
            else:
                thread = threading.get_ident()
                lines = (self._pending.pop(thread, "") + text).split("\n")
                if lines[-1]:
                    self._pending[thread] = lines[-1]
                kept = "".join(line + "\n" for line in lines[:-1] if not line.startswith(self._prefixes))
        if kept:
            self._stream.write(kept)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """The calling thread's unfinished line too (a prompt, a progress line)."""
        with self._lock:
            piece = self._pending.pop(threading.get_ident(), "")
        if piece and not piece.startswith(self._prefixes):
            self._stream.write(piece)
        self._stream.flush()

    def close_off(self) -> str:
        """Stop filtering; returns what was still pending (pieces no newline ended), each thread's
        on a line of its own, for the real stream."""
        with self._lock:
            rest, self._pending, self.closed_off = self._pending, {}, True
        return "\n".join(piece for piece in rest.values() if not piece.startswith(self._prefixes))

    def __getattr__(self, name):  # fileno, encoding, isatty, buffer, ...: the real stream's
        return getattr(self._stream, name)


@contextlib.contextmanager
def dropping_lines(*prefixes: str) -> Iterator[None]:
    """Within the body, lines printed to ``sys.stdout`` that start with one of ``prefixes`` are
    dropped; every other line, from any thread, is printed.  ``contextlib.redirect_stdout``
    would drop them all."""
    real = sys.stdout
    if real is None:  # no console (pythonw): nothing to filter
        yield
        return
    stand_in = _DroppingLines(real, prefixes)
    sys.stdout = stand_in
    try:
        yield
    finally:
        rest = stand_in.close_off()
        if sys.stdout is stand_in:
            sys.stdout = real
        # Bodies that overlapped out of order (two threads importing) put back a stand-in closed
        # off by now: take it away too.
        while isinstance(sys.stdout, _DroppingLines) and sys.stdout.closed_off:
            sys.stdout = sys.stdout._stream
        if rest:
            try:
                real.write(rest)
            except (OSError, ValueError):  # the reader has gone: nothing to tell
                pass
