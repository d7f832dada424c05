"""Where a form may send the browser back to."""

from __future__ import annotations

from urllib.parse import urlsplit


def local_path(target: str | None) -> str | None:
    """The target if it is a path on this site, else None: never an open redirect.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so `/\\t/evil`
    or `/\\evil` would leave the site: any control character, backslash or leading `//` is
    refused, and what is left must parse as a bare path (no scheme, no host).
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    return target
