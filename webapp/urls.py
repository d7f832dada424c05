"""Where a form may send the browser back to."""

from __future__ import annotations


def local_path(target: str | None) -> str | None:
    """The target if it is a path on this site, else None: never an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None
