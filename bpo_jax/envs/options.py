"""Environment options checked against their defaults: one rule for every suite.

A suite's options (``envs.make(id, n, **options)``, ``--env-options key=value``) each have a
default: a field of gymnax's ``EnvParams``, a keyword default of a brax or Gymnasium-style
constructor, a leaf of a playground config.  A given value must be of the default's kind, so
that a wrong one is refused by name when the env is made instead of failing inside JAX after
compiling (or, worse, training on something else):

* ``bool`` default: ``True`` or ``False``;
* ``int`` default: an integer, not a bool (``1.5`` is refused, not truncated);
* ``float`` default: a real number, ints allowed (converted), not a bool, and finite (``nan``
  never; ``inf`` only where the default is infinite or inside a range such as ``(0.7, inf)``);
* ``tuple`` default: a tuple or list of as many values, each checked against the default's
  item; ``list`` default: a list or tuple of any length, items of the default's kind;
* array default (e.g. gymnax's ``available_torque``): an array-like of the same shape with
  numbers of the default's kind, converted to its dtype;
* ``Enum`` default: a member, or the value of one;
* ``str`` default: text; ``None`` default: anything; any other: an instance of its type;
* by name: a ``*_range`` pair low <= high, a time step ``dt`` or ``*_dt`` > 0.

:func:`check_option` returns the value in the default's type (``10`` for a float default is
``10.0``, a list for a tuple default a tuple).
"""
from __future__ import annotations

import enum
import inspect
import math
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Optional

import numpy as np


def is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def is_int(value: Any) -> bool:
    """An integer that is not a bool (``True`` is an ``int`` in Python)."""
    return isinstance(value, (int, np.integer)) and not is_bool(value)


def is_real(value: Any) -> bool:
    """A real number (int or float, NumPy's included) that is not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not is_bool(value)


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not np.isscalar(value)


def show(value: Any) -> str:
    """``repr`` of a default for a message; arrays as their list of values."""
    if _is_array(value):
        return repr(np.asarray(value).tolist())
    if isinstance(value, enum.Enum):
        return repr(value.value)
    return repr(value)


def describe(default: Any) -> str:
    """What a value must be to replace ``default`` ("an integer", "a tuple of 2 numbers", ...)."""
    if is_bool(default):
        return "True or False"
    if is_int(default):
        return "an integer"
    if is_real(default):
        return "a number"
    if _is_array(default):
        kind = "True/False values" if np.asarray(default).dtype.kind == "b" else (
            "integers" if np.asarray(default).dtype.kind in "iu" else "numbers")
        return f"an array of shape {tuple(np.shape(default))} of {kind}"
    if isinstance(default, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in type(default))
    if isinstance(default, (tuple, list)):
        items = {describe(x) for x in default}
        what = {"a number": "numbers", "an integer": "integers", "True or False": "True/False values",
                "text": "texts"}.get(next(iter(items)), "values") if len(items) == 1 else "values"
        if isinstance(default, tuple):
            return f"a tuple of {len(default)} {what}" if len(default) != 1 else f"a tuple of one {what[:-1]}"
        return f"a list of {what}"
    if isinstance(default, str):
        return "text"
    return f"a {type(default).__name__}"


class _Refused(Exception):
    """A value does not fit its default; ``takes`` says what would."""

    def __init__(self, takes: str):
        super().__init__(takes)
        self.takes = takes


def _fit(value: Any, default: Any, in_range: bool = False) -> Any:
    """``value`` converted to the type of ``default``, or :class:`_Refused`."""
    if default is None:
        return value
    if _is_array(value) and np.ndim(value) == 0 and not _is_array(default):
        value = np.asarray(value)[()]  # a 0-d array for a scalar default: its NumPy scalar
    if is_bool(default):
        if not is_bool(value):
            raise _Refused(describe(default))
        return bool(value)
    if is_int(default):
        if not is_int(value):
            raise _Refused(describe(default))
        return int(value)
    if is_real(default):
        if not is_real(value):
            raise _Refused("a finite number" if _non_finite_text(value) else describe(default))
        x = float(value)
        if math.isnan(x):
            raise _Refused("a number, not NaN")
        if math.isinf(x) and not (in_range or math.isinf(float(default))):
            raise _Refused("a finite number")
        return x
    if _is_array(default):
        return _fit_array(value, default)
    if isinstance(default, enum.Enum):
        if isinstance(value, type(default)):
            return value
        try:
            return type(default)(value)
        except (ValueError, TypeError):
            raise _Refused(describe(default)) from None
    if isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)) or (isinstance(default, tuple) and len(value) != len(default)):
            raise _Refused(describe(default))
        if isinstance(default, tuple):
            items = default
        elif default and len({type(x) for x in default}) == 1:
            items = [default[0]] * len(value)  # a list: any length, items like the default's
        else:
            items = [None] * len(value)
        try:
            return type(default)(_fit(v, d, in_range=True) for v, d in zip(value, items))
        except _Refused as item:
            raise _Refused(describe(default) + (", not NaN" if "NaN" in item.takes else "")) from None
    if isinstance(default, str):
        if not isinstance(value, str):
            raise _Refused("text")
        return value
    if not isinstance(value, type(default)):
        raise _Refused(describe(default))
    return value


def _non_finite_text(value: Any) -> bool:
    """Text such as ``'inf'`` or ``'nan'`` (``--env-options gravity=inf`` arrives as text)."""
    try:
        return isinstance(value, str) and not math.isfinite(float(value))
    except ValueError:
        return False


def _fit_array(value: Any, default: Any) -> Any:
    import jax.numpy as jnp

    dtype = np.asarray(default).dtype
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged
        raise _Refused(describe(default)) from None
    kinds = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}.get(dtype.kind, dtype.kind)
    if array.shape != np.shape(default) or array.dtype.kind not in kinds:
        raise _Refused(describe(default))
    if dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise _Refused(describe(default) + ", all finite")
    return jnp.asarray(array, dtype)


def check_option(where: str, option: str, value: Any, default: Any) -> Any:
    """``value`` for ``option`` (default ``default``) in the default's type, else a one-line
    ValueError: ``"<where>: option <option> takes an integer (default 500), got 'abc'"``.  Two
    rules by name besides: a ``*_range`` pair is (low, high) with low <= high (else every state
    is out of range), and a time step ``*_dt`` is > 0."""
    try:
        fitted = _fit(value, default)
        if option.endswith("_range") and isinstance(fitted, (tuple, list)) and len(fitted) == 2 \
                and all(is_real(x) for x in fitted) and fitted[0] > fitted[1]:
            raise _Refused("(low, high) with low <= high")
        if (option == "dt" or option.endswith("_dt")) and is_real(fitted) and fitted <= 0:
            raise _Refused("a time step > 0")
        return fitted
    except _Refused as refused:
        raise ValueError(f"{where}: option {option} takes {refused.takes} (default {show(default)}), "
                         f"got {value!r}") from None


def check_options(where: str, given: Mapping[str, Any], defaults: Mapping[str, Any],
                  skip: Iterable[str] = ()) -> dict[str, Any]:
    """:func:`check_option` for every given option that has a default (those in ``skip`` and
    those without one pass as they are); the given options, converted."""
    skip = set(skip)
    return {k: v if k in skip or k not in defaults else check_option(where, k, v, defaults[k])
            for k, v in given.items()}


def refuse_unknown(where: str, given: Iterable[str], valid: Iterable[str], listed: Optional[Iterable[str]] = None,
                   noun: str = "option", note: str = "") -> None:
    """A one-line ValueError naming the ``given`` names not in ``valid`` and listing ``listed``
    (default: ``valid``), sorted; ``note`` ends the line."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        choices = ", ".join(sorted(set(valid if listed is None else listed)))
        raise ValueError(f"{where} has no {noun}(s) {', '.join(unknown)}; valid: {choices}{note}")


def keyword_defaults(fn: Callable) -> dict[str, Any]:
    """``{parameter: default}`` of ``fn``'s parameters that have one (``self`` and ``*args``,
    ``**kwargs`` excluded)."""
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def positive_int(where: str, option: str, value: Any) -> int:
    """``value`` as an int >= 1 (a whole float such as ``1e3`` too), else a one-line ValueError."""
    if not is_real(value) or not math.isfinite(float(value)) or int(value) != value or value < 1:
        raise ValueError(f"{where}: {option} must be a positive integer, got {value!r}")
    return int(value)
