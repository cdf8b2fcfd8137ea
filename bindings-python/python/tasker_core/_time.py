"""The engine's timestamps as :class:`datetime` values."""

from __future__ import annotations

from datetime import datetime


def parse_time(text: str) -> datetime:
    """Parses the engine's RFC 3339 timestamps (``...Z``, up to nanoseconds) on Python 3.9+,
    whose ``fromisoformat`` takes neither ``Z`` nor more than six fractional digits."""
    s = text
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    dot = s.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(s) and s[end].isdigit():
            end += 1
        frac = s[dot + 1 : end][:6].ljust(6, "0")
        s = s[: dot + 1] + frac + s[end:]
    return datetime.fromisoformat(s)
