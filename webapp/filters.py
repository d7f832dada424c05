"""Template filters of the whole app: formatting only, never a query."""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask import Flask
from markupsafe import Markup

from webapp.mail.folders import since_text


def utc(value: datetime | None, empty: str = "—") -> str:
    """A stored time as "YYYY-MM-DD HH:MM UTC" (SQLite gives them back naive, in UTC)."""
    if value is None:
        return empty
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M") + " UTC"


def relative(value: datetime, now: datetime | None = None) -> str:
    """ "just now", "3 minutes ago", "in 2 hours", "5 days ago"; the date past two weeks."""
    value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    ahead, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size * 0.9 or unit == "minute":
            if unit == "day" and seconds >= 14 * 86400:
                return value.astimezone(UTC).strftime("%Y-%m-%d")
            count = max(1, round(seconds / size))
            amount = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {amount}" if ahead else f"{amount} ago"
    raise AssertionError("unreachable")


def when(value: datetime | None, empty: str = "—") -> Markup | str:
    """A time as `<time>`: relative, computed now; the exact UTC time on hover. app.js turns
    the hover into the reader's local time and keeps the words fresh."""
    if value is None:
        return empty
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    iso = aware.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return Markup('<time datetime="{}" title="{}" data-when>{}</time>').format(
        iso, utc(value), relative(aware)
    )


def day(value: date | None, empty: str = "—") -> str:
    """A day as "1 March 2026"."""
    if value is None:
        return empty
    return since_text(value)


def register_filters(app: Flask) -> None:
    app.add_template_filter(utc, "utc")
    app.add_template_filter(when, "when")
    app.add_template_filter(day, "day")
