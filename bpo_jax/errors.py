"""Errors and error text shared by the library's modules."""
from __future__ import annotations


def first_line(e: BaseException) -> str:
    """First non-empty line of str(e), or the exception's type name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
