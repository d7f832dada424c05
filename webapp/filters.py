"""Template filters of the whole app: formatting only, never a query."""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask import Flask

from webapp.mail.folders import since_text


def utc(value: datetime | None, empty: str = "—") -> str:
    """A stored time as "YYYY-MM-DD HH:MM UTC" (SQLite gives them back naive, in UTC)."""
    if value is None:
        return empty
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M") + " UTC"


def day(value: date | None, empty: str = "—") -> str:
    """A day as "1 March 2026"."""
    if value is None:
        return empty
    return since_text(value)


def register_filters(app: Flask) -> None:
    app.add_template_filter(utc, "utc")
    app.add_template_filter(day, "day")
