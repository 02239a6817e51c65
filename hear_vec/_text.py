"""One-line messages: :func:`first_line` squeezes an exception onto one short line (for
``prog: error: ...`` messages and the failure column of sweep summaries)."""

from __future__ import annotations

__all__ = ["first_line"]


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """``str(exc)`` squeezed onto one line (whitespace runs -> one space), at most ``limit``
    characters; the exception type's name when the message is empty."""
    text = " ".join(str(exc).split())
    if not text and isinstance(exc, BaseException):
        text = type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
