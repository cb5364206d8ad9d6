"""Errors and error text shared by the library's modules."""
from __future__ import annotations

import contextlib
import functools
import signal
import threading
from typing import Optional

# The bpo-jax command's exit codes, every subcommand's.
EXIT_USAGE = 2  # bad input, refused before anything is written
EXIT_FAILURE = 1  # a run that stopped (a NaN, the file system)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def first_line(e: BaseException) -> str:
    """First non-empty line of str(e), or the exception's type name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def unknown_name(what: str, name: str, valid) -> str:
    """"unknown <what> 'name'; did you mean 'X'? valid: a, b, ..." -- the suggestion (the
    valid names that start with ``name``, else the closest spellings; case ignored; at most
    three) because lists such as Atari's 100+ games bury the one meant."""
    import difflib

    valid = list(valid)
    prefixed = [v for v in valid if v.lower().startswith(name.lower())] if name else []
    score = {v: difflib.SequenceMatcher(None, name.lower(), v.lower()).ratio() for v in valid}
    best = max(score.values(), default=0.0)
    close = [v for v in valid if score[v] == best >= 0.6]
    guesses = prefixed if 0 < len(prefixed) <= 3 else close if len(close) <= 3 else []
    hint = f"; did you mean {' or '.join(map(repr, guesses))}?" if guesses else ";"
    return f"unknown {what} {name!r}{hint} valid: {', '.join(valid)}"


FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max
FLOAT32_TINY = 1.1754943508222875e-38  # its smallest normal number; XLA flushes smaller ones to 0


def float32_problem(name: str, value: float) -> Optional[str]:
    """Why a finite setting ``value`` cannot be used by programs that compute in float32 (None
    where it can): past float32's range it is inf there, below its smallest normal number 0, and
    the run would stop on a NaN much later, blamed on the learning rate."""
    if abs(value) > FLOAT32_MAX:
        return f"{name} = {value:g} is past float32's range (±3.4e38), in which the programs compute"
    if value != 0 and abs(value) < FLOAT32_TINY:
        return f"{name} = {value:g} is below float32's smallest normal number (1.2e-38), which XLA flushes to 0"
    return None


@contextlib.contextmanager
def interrupt_deferred():
    """Hold a Ctrl-C (SIGINT) until the body ends; yields a list that is non-empty if one came.

    For the command's start, which is mostly imports: a KeyboardInterrupt raised inside an
    import does not reliably reach the caller.  An extension module's initialisation turns it
    into an ImportError (which optional-dependency probes then catch), and one raised in a
    garbage-collector callback (JAX registers one) is printed and dropped, so the command would
    go on to train as if never interrupted.  Where SIGINT is ignored (a background job) it stays
    ignored; off the main thread, where no handler can be set, nothing is deferred."""
    pressed: list = []
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield pressed
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def finishes_before_interrupt(fn):
    """Decorator: ``fn`` runs to its end with Ctrl-C held (:func:`interrupt_deferred`), then a
    Ctrl-C that came meanwhile is raised as KeyboardInterrupt.  For writes that must not stop
    half-way, such as a checkpoint."""

    @functools.wraps(fn)
    def held(*args, **kwargs):
        with interrupt_deferred() as pressed:
            result = fn(*args, **kwargs)
        if pressed:
            raise KeyboardInterrupt
        return result

    return held
