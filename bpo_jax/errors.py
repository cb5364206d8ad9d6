"""Errors and error text shared by the library's modules."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import re
import signal
import sys
import threading
from typing import Any, Callable, Collection, Optional

# The bpo-jax command's exit codes, every subcommand's.
EXIT_USAGE = 2  # bad input, refused before anything is written
EXIT_FAILURE = 1  # a run that stopped (a NaN, the file system)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def first_line(e: BaseException) -> str:
    """First non-empty line of str(e), or the exception's type name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def what_stopped(e: BaseException, told: tuple = ()) -> str:
    """How a stopped run's note begins: "interrupted (Ctrl-C)"; "stopped: <message>" for an
    error of the types ``told``, whose message says what happened (a NaN at update N); else
    "stopped: <type>: <message>"."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(e, told):
        return f"stopped: {first_line(e)}"
    return f"stopped: {type(e).__name__}: {first_line(e)}"


def in_words(message: str, flag_of: Callable[[str], Optional[str]]) -> str:
    """A library message in a front end's words: each name the library writes in backticks
    (`overwrite`) becomes ``flag_of(name)`` (--overwrite), or the bare name where that is None
    (a setting the front end has no flag for); `name=False` is a switch turned off:
    ``flag_of("name=False")`` (--no-tensorboard), or ``name=False`` as written where None."""
    return re.sub(r"`(\w+(?:=False)?)`", lambda m: flag_of(m.group(1)) or m.group(1), message)


# After "unknown algorithm/suite ...": where a plug-in's names come from.
PLUGIN_HINT = " (a plug-in's: import the module that registers it first; bpo-jax: --plugin MODULE)"


def unknown_name(what: str, name: str, valid) -> str:
    """"unknown <what> 'name'; did you mean 'X'? valid: a, b, ..." -- the suggestion (the
    valid names that start with ``name``, or whose last part after a slash does; else those
    whose name without its ``-vN`` version starts ``name``, as Pong-v5 for the Gym id
    PongNoFrameskip-v4; else the closest spellings; case ignored; at most five) because lists
    such as Atari's 100+ games bury the one meant."""
    import difflib
    import re

    valid = list(valid)
    low = name.lower()
    prefixed = [v for v in valid if v.lower().startswith(low) or v.lower().rpartition("/")[2].startswith(low)] \
        if name else []
    versioned = {v: re.fullmatch(r"(.+)-v\d+", v.lower().rpartition("/")[2]) for v in valid}
    bases = {v: m.group(1) for v, m in versioned.items() if m and len(m.group(1)) >= 2 and low.startswith(m.group(1))}
    longest = max(map(len, bases.values()), default=0)  # Atlantis2NoFrameskip-v4: Atlantis2-v5, not Atlantis-v5
    versions = [v for v, base in bases.items() if len(base) == longest]
    score = {v: difflib.SequenceMatcher(None, low, v.lower()).ratio() for v in valid}
    best = max(score.values(), default=0.0)
    close = [v for v in valid if score[v] == best >= 0.6]
    guesses = next((g for g in (prefixed, versions, close) if 0 < len(g) <= 5), [])
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


def float_settings_problem(settings: Any, may_be_infinite: Collection[str] = ()) -> Optional[str]:
    """The first float field of the dataclass ``settings`` that a run cannot use (None where
    every one can): not finite (inf would pass range checks, nan fail them with a less clear
    message), unless its name is in ``may_be_infinite`` (inf there switches a limit off), or
    outside what float32 represents (:func:`float32_problem`)."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if not isinstance(value, float):
            continue
        if f.name not in may_be_infinite and not math.isfinite(value):
            return f"`{f.name}` must be finite, got {value}"
        if math.isfinite(value) and (problem := float32_problem(f"`{f.name}`", value)) is not None:
            return problem
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
    with _sigint_noted(raises=False, every_press=False) as pressed:
        yield pressed


@contextlib.contextmanager
def interrupts_never_lost(every_press: bool = False):
    """The body with Ctrl-C stopping it once: the first SIGINT raises KeyboardInterrupt; later
    ones are ignored until the body ends.  From the first on the command is on its way out (the
    INCOMPLETE note, the one-line message, exit 130), and a further KeyboardInterrupt would only
    break that: cut the note short, or print a traceback after the message.  The handler before
    is back afterwards (the command exits next; an in-process caller goes on as it was).  Yields
    a list that is non-empty once a Ctrl-C came, also where the body lost the KeyboardInterrupt.

    ``every_press``: raise at each one instead (around a plug-in's import, which may catch the
    first as the ImportError an extension module turned it into, and hang on).

    Python drops a KeyboardInterrupt raised inside a garbage-collector callback (JAX registers
    one, which runs at any allocation) or a finaliser, printing "Exception ignored in ...": the
    command would train on to its end, deaf to Ctrl-C.  One dropped is sent again
    (:func:`_send_again`), untold, and raised wherever the program is next.  As
    :func:`interrupt_deferred`: where SIGINT is ignored (a background job), or off the main
    thread, nothing changes."""
    with _sigint_noted(raises=True, every_press=every_press) as pressed:
        yield pressed


@contextlib.contextmanager
def _sigint_noted(raises: bool, every_press: bool):
    """The one SIGINT handler behind :func:`interrupt_deferred` and :func:`interrupts_never_lost`:
    notes each press in the list it yields and, where ``raises``, raises KeyboardInterrupt at the
    first (at each, with ``every_press``), sending one that a gc callback dropped again."""
    pressed: list = []
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield pressed
        return
    out = []  # non-empty while a KeyboardInterrupt of ours is on its way out
    inside = [True]  # emptied at the end: a Ctrl-C sent again after it is not raised into the caller

    def note(signum, frame):
        pressed.append(signum)
        if raises and (every_press or not out):
            out.append(signum)
            raise KeyboardInterrupt

    def unraisable(info):
        if isinstance(info.exc_value, KeyboardInterrupt) and out:
            out.clear()
            _send_again(inside)
        else:
            hook(info)

    previous, hook = signal.signal(signal.SIGINT, note), sys.unraisablehook
    if raises:
        sys.unraisablehook = unraisable
    try:
        yield pressed
    finally:
        inside.clear()
        if raises:
            sys.unraisablehook = hook
        signal.signal(signal.SIGINT, previous)


def _send_again(inside: list, delay: float = 0.01) -> None:
    """SIGINT to this process again in ``delay`` seconds, from another thread (sent now, it would
    be handled in the callback that dropped the last one, still running), while ``inside``."""
    def send() -> None:
        if inside:
            os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(delay, send)
    timer.daemon = True
    timer.start()


def finishes_before_interrupt(fn):
    """Decorator: ``fn`` runs to its end with Ctrl-C held (:func:`interrupt_deferred`), then a
    Ctrl-C that came meanwhile is delivered to the handler in force, as if pressed now (inside
    :func:`interrupts_never_lost`: raised once, ignored while the command stops).  For writes
    that must not stop half-way, such as a checkpoint."""

    @functools.wraps(fn)
    def held(*args, **kwargs):
        with interrupt_deferred() as pressed:
            result = fn(*args, **kwargs)
        if pressed:
            if callable(signal.getsignal(signal.SIGINT)):
                signal.raise_signal(signal.SIGINT)  # its handler runs before this call returns
            else:
                raise KeyboardInterrupt
        return result

    return held
