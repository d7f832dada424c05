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


# A file's type in words, by its MIME type (then by its name's ending).
FILE_KINDS = {
    "application/pdf": "PDF document",
    "application/msword": "Word document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word document",
    "application/vnd.ms-excel": "Excel spreadsheet",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "Excel spreadsheet",
    "application/vnd.ms-powerpoint": "PowerPoint presentation",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation":
        "PowerPoint presentation",
    "application/vnd.oasis.opendocument.text": "OpenDocument text",
    "application/vnd.oasis.opendocument.spreadsheet": "OpenDocument spreadsheet",
    "application/zip": "ZIP archive",
    "application/x-zip-compressed": "ZIP archive",
    "application/gzip": "Compressed file",
    "application/x-7z-compressed": "7-Zip archive",
    "application/json": "JSON file",
    "application/xml": "XML file",
    "application/rtf": "Rich text document",
    "application/vnd.ms-outlook": "Outlook message",
    "application/ics": "Calendar invitation",
    "message/rfc822": "Email message",
    "text/plain": "Text file",
    "text/csv": "CSV file",
    "text/html": "Web page",
    "text/calendar": "Calendar invitation",
    "image/svg+xml": "SVG image",
}  # fmt: skip
FILE_KINDS_BY_ENDING = {
    ".pdf": "PDF document", ".doc": "Word document", ".docx": "Word document",
    ".xls": "Excel spreadsheet", ".xlsx": "Excel spreadsheet", ".csv": "CSV file",
    ".ppt": "PowerPoint presentation", ".pptx": "PowerPoint presentation",
    ".zip": "ZIP archive", ".txt": "Text file", ".eml": "Email message", ".ics": "Calendar invitation",
}  # fmt: skip
GENERIC_TYPES = ("application/octet-stream", "")


def file_size(size: int | None) -> str:
    """Bytes as people read them: "812 bytes", "24 KB", "1.2 MB" (1 KB = 1,024 bytes)."""
    size = max(0, int(size or 0))
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    value, units = size / 1024, ["KB", "MB", "GB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    number = f"{value:.1f}".removesuffix(".0") if value < 10 else f"{value:.0f}"
    return f"{number} {units[0]}"


def file_type(content_type: str | None, name: str = "") -> str:
    """A MIME type in words: "Excel spreadsheet", "PNG image"; the type itself when unknown."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in FILE_KINDS:
        return FILE_KINDS[ctype]
    if ctype in GENERIC_TYPES or not ctype:
        ending = "." + name.rpartition(".")[2].lower() if "." in (name or "") else ""
        return FILE_KINDS_BY_ENDING.get(ending, "File")
    major, _, minor = ctype.partition("/")
    if major in ("image", "audio", "video"):
        return f"{minor.split('+')[0].removeprefix('x-').upper()} {major}"
    return ctype


def file_kind(attachment) -> str:
    """An attachment (content_type, size, name) as "Excel spreadsheet, 24 KB"."""
    kind = file_type(attachment.content_type, getattr(attachment, "name", "") or "")
    return f"{kind}, {file_size(attachment.size)}"


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
    app.add_template_filter(file_kind, "file_kind")
    app.add_template_filter(when, "when")
    app.add_template_filter(day, "day")
