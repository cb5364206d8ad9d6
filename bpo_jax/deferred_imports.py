"""Third-party libraries that load, at their own import, a heavy module they seldom use.

Two cost every run's start seconds on a 2-core CPU: gymnax imports seaborn (and with it
scipy.stats, 1.4 s) for one colour map that only its Pong renderer reads, and tensorboardX
imports torch where it is installed (2.5 s) only to accept torch tensors, which bpo-jax never
passes.  :func:`deferred` imports such a library with the heavy module left unloaded; once the
library is imported, everything else imports that module as usual.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import types
from typing import Iterator


class _StandIn(types.ModuleType):
    """What the library's ``import name`` binds: the real module is loaded on first use."""

    def __getattr__(self, attr: str):
        if sys.modules.get(self.__name__) is self:  # used while the library still imports: load it now
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


@contextlib.contextmanager
def deferred(name: str, *, hidden: bool = False) -> Iterator[None]:
    """Within the block, an ``import name`` does not load the top-level module ``name``: with
    ``hidden``, it raises ImportError (for a library that treats ``name`` as optional: it then
    does without it), otherwise it binds a stand-in that loads the module on first attribute
    access.  Nothing changes where ``name`` is loaded already; after the block, ``import name``
    loads the real module as usual.  sys.modules is the process's: another thread importing
    ``name`` during the block gets the same answer, so the package defers only where it imports
    a library itself, in the thread that sets up a run."""
    if name in sys.modules:
        yield
        return
    placeholder = None if hidden else _StandIn(name)
    sys.modules[name] = placeholder  # a None entry makes `import name` raise ImportError
    try:
        yield
    finally:
        if name in sys.modules and sys.modules[name] is placeholder:
            del sys.modules[name]
