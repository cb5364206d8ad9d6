"""The ``bpo-jax`` command (also ``python -m bpo_jax``).

This module imports nothing heavy, so that a Ctrl-C while JAX, Flax and the suites load (a few
seconds before anything runs) ends with the command's one-line message and exit status, not a
traceback of the import machinery, nor lost in it (see :func:`bpo_jax.errors.interrupt_deferred`).
"""
import os
import sys


def entry() -> None:
    from bpo_jax.errors import EXIT_INTERRUPTED, interrupt_deferred  # light: no JAX

    with interrupt_deferred() as pressed:
        from bpo_jax import cli
    if pressed:
        sys.stderr.write("bpo-jax: error: interrupted while starting; nothing was run or written\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # as cli.entry: JAX's threads may hold up a normal exit
    cli.entry()


if __name__ == "__main__":
    entry()
