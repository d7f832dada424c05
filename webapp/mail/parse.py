"""Turn the raw bytes of one email into a ParsedMessage.

Mailboxes hold broken mail: unknown charsets, malformed address headers, missing
boundaries, raw 8-bit headers, binary junk. The header block is read by
mail/headers.py, text bytes are decoded by mail/charsets.py; this module checks the
limits, builds the MIME tree and walks its parts into text, HTML and attachments.
ParseError is raised only when the message is genuinely unusable (over a limit, not an
email at all, or an unexpected failure), always with a one-sentence reason.
"""

from __future__ import annotations

import io
import mimetypes
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy as email_policy
from email.feedparser import BytesFeedParser
from email.generator import BytesGenerator
from email.message import Message

from webapp.mail.charsets import clean_text, declared_charset, decode_8bit, decode_bytes
from webapp.mail.headers import HeaderFields, attachment_filename, mime_view, read_headers
from webapp.mail.sanitize import strip_html_to_text


@dataclass(frozen=True)
class ParseLimits:
    """Bounds that keep pathological input from tying up a worker."""

    max_raw_bytes: int = 50 * 1024 * 1024
    max_header_bytes: int = 256 * 1024
    max_parts: int = 500
    max_depth: int = 20
    max_parse_seconds: float = 10.0


class ParseError(Exception):
    """The message cannot be used; `reason` says why in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooLarge(ParseError):
    """The raw message is over `max_raw_bytes`: store its metadata only."""


@dataclass
class Attachment:
    filename: str
    content_type: str
    size: int
    data: bytes = field(repr=False)
    inline: bool = False
    content_id: str | None = None  # without angle brackets, as cid: URLs use it
    disposition: str | None = None


@dataclass
class ParsedMessage(HeaderFields):
    """A parsed message: its header fields (mail/headers.py), its texts and attachments."""

    text: str = ""
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    is_report: bool = False
    report_type: str | None = None
    # The reply above the quotes (mail/reply.py), when parse_ahead computed it already.
    reply_text: str | None = None

    def __post_init__(self) -> None:
        if not self.from_addr_normalized:
            self.from_addr_normalized = self.from_addr.lower()


DEFAULT_LIMITS = ParseLimits()

_FEED_CHUNK = 1024 * 1024
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# The header block as the stdlib feed parser sees it: an optional mbox "From " line,
# then header and continuation lines, up to the first line that is neither.
_HEADER_BLOCK = re.compile(
    rb"(?:From [^\r\n]*(?:\r\n|\r|\n))?"
    rb"(?:(?:From |[\x21-\x39\x3b-\x7e]*:|[ \t])[^\r\n]*(?:\r\n|\r|\n|\Z))*"
)
_CONTENT_TYPE_LINE = re.compile(rb"^content-type:", re.I | re.M)
# Re-serialising enclosed messages: the default policy with refold_source="none" keeps
# header lines byte for byte; compat32 (trims trailing blanks, never parses a header
# value, so it cannot raise on one) is the fallback.
_FLATTEN_POLICIES = (
    email_policy.default.clone(linesep="\n", refold_source="none", max_line_length=None),
    email_policy.compat32.clone(linesep="\n", max_line_length=None),
)


def parse_message(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedMessage:
    """Parse one raw message; raise ParseError (or TooLarge) if it is unusable."""
    started = time.monotonic()
    raw = _strip_leading_junk(bytes(raw))
    _check_before_parsing(raw, limits)
    try:
        msg = _build_tree(raw, limits, started)
        return _read_message(msg, limits, started)
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("the MIME structure is nested too deeply to parse") from None
    except Exception as exc:  # a parser bug must not kill the fetch of a whole mailbox
        detail = str(exc)[:200]
        raise ParseError(f"unexpected {type(exc).__name__} while parsing: {detail}") from exc


def _strip_leading_junk(raw: bytes) -> bytes:
    """Drop a UTF-8 byte order mark and blank lines in front of the first header."""
    stripped = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    stripped = stripped.lstrip(b"\r\n")
    return stripped if _HEADER_BLOCK.match(stripped[:1000]).end() else raw


def _check_before_parsing(raw: bytes, limits: ParseLimits) -> None:
    """Reject what we can from the raw bytes, before building the tree."""
    if len(raw) > limits.max_raw_bytes:
        raise TooLarge(
            f"message is {_size(len(raw))}, over the {_size(limits.max_raw_bytes)} limit"
        )
    if not raw.strip():
        raise ParseError("the message is empty")
    if raw.startswith(_OLE_MAGIC):
        raise ParseError("this is an Outlook .msg file (OLE binary), not an RFC 5322 message")
    header_end = _HEADER_BLOCK.match(raw).end()
    if header_end > limits.max_header_bytes:
        raise ParseError(
            f"header block is {_size(header_end)}, over the {_size(limits.max_header_bytes)} limit"
        )
    if header_end == 0 and b"\x00" in raw[:1024]:
        raise ParseError("no header lines found and the data is binary, so this is not an email")
    # Each MIME part has at most one Content-Type line; twice the limit leaves room
    # for header lines quoted in bodies while still bounding the parse.
    content_types = sum(1 for _ in _CONTENT_TYPE_LINE.finditer(raw))
    if content_types > 2 * limits.max_parts:
        raise ParseError(
            f"message has about {content_types} MIME parts, over the {limits.max_parts} limit"
        )


def _build_tree(raw: bytes, limits: ParseLimits, started: float) -> Message:
    # compat32 keeps header values as raw strings: 4x faster than the default policy,
    # whose Content-Type objects are rebuilt on every access. Headers are decoded here.
    parser = BytesFeedParser(policy=email_policy.compat32)
    for start in range(0, len(raw), _FEED_CHUNK):
        parser.feed(raw[start : start + _FEED_CHUNK])
        _check_time(started, limits)
    return parser.close()


def _check_time(started: float, limits: ParseLimits) -> None:
    if time.monotonic() - started > limits.max_parse_seconds:
        raise ParseError(f"parsing took longer than {limits.max_parse_seconds:g} s")


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.0f} MB"
    return f"{-(-n // 1024)} KB"


def _read_message(msg: Message, limits: ParseLimits, started: float) -> ParsedMessage:
    out = ParsedMessage()
    notes: list[str] = []
    read_headers(msg, out, notes)
    _read_parts(msg, out, notes, limits, started)
    out.defects = list(dict.fromkeys(notes))
    return out


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- MIME parts --------------------------------------------------------------------

_DEFAULT_NAMES = {
    "message/rfc822": "forwarded-message.eml",
    "message/global": "forwarded-message.eml",
    "message/partial": "partial-message.eml",
    "message/news": "forwarded-message.eml",
    "message/rfc822-headers": "rfc822-headers.txt",
    "message/delivery-status": "delivery-status.txt",
    "message/global-delivery-status": "delivery-status.txt",
    "message/disposition-notification": "disposition-notification.txt",
    "message/feedback-report": "feedback-report.txt",
    "message/external-body": "external-body.txt",
    "text/rfc822-headers": "rfc822-headers.txt",
    "text/calendar": "invite.ics",
    "application/ms-tnef": "winmail.dat",
    "application/vnd.ms-tnef": "winmail.dat",
    "application/pgp-signature": "signature.asc",
    "application/pkcs7-signature": "smime.p7s",
    "application/x-pkcs7-signature": "smime.p7s",
    "application/pkcs7-mime": "smime.p7m",
    "application/x-pkcs7-mime": "smime.p7m",
}


def _read_parts(
    msg: Message, out: ParsedMessage, notes: list[str], limits: ParseLimits, started: float
) -> None:
    plain: list[str] = []
    html: list[str] = []
    for part, mime in _walk(msg, limits, started):
        notes.extend(type(defect).__name__ for defect in part.defects)
        ctype = mime.get_content_type()
        if ctype.startswith("multipart/"):
            if ctype == "multipart/report" and not out.is_report:
                out.is_report = True
                report_type = mime.get_param("report-type")
                out.report_type = str(report_type).lower() if report_type else None
            if part.is_multipart():
                continue
            ctype = "text/plain"  # boundary missing: the "multipart" is really text
        disposition = _disposition(mime)
        filename = attachment_filename(mime)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text = _newlines(decode_bytes(_payload_bytes(part), declared_charset(mime), notes))
            (html if ctype == "text/html" else plain).append(clean_text(text))
            continue
        out.attachments.append(_attachment(part, mime, ctype, disposition, filename, notes))
    out.html = "\n".join(html) if html else None
    out.text = "\n".join(t for t in plain if t.strip()).strip("\n")
    if not out.text.strip() and out.html:
        out.text = strip_html_to_text(out.html)
    if not out.text.strip() and out.html is None:
        # Only inline text files (e.g. Apple Mail): show them as the body too.
        inline_text = [
            decode_bytes(a.data, None)
            for a in out.attachments
            if a.content_type == "text/plain" and a.disposition == "inline"
        ]
        out.text = clean_text(_newlines("\n".join(inline_text))).strip("\n")


def _walk(msg: Message, limits: ParseLimits, started: float) -> Iterator[tuple[Message, Message]]:
    """Yield (part, its _mime_view) in MIME order, not entering message/* parts."""
    stack = [(msg, 0)]
    count = 0
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > limits.max_parts:
            raise ParseError(f"message has more than {limits.max_parts} MIME parts")
        if depth > limits.max_depth:
            raise ParseError(f"MIME parts are nested more than {limits.max_depth} levels deep")
        _check_time(started, limits)
        mime = mime_view(part)
        yield part, mime
        if part.is_multipart() and mime.get_content_maintype() == "multipart":
            children = part.get_payload()
            stack.extend((child, depth + 1) for child in reversed(children))


def _disposition(mime: Message) -> str | None:
    value = mime.get("content-disposition")
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def _payload_bytes(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _attachment(
    part: Message,
    mime: Message,
    ctype: str,
    disposition: str | None,
    filename: str | None,
    notes: list[str],
) -> Attachment:
    if part.is_multipart() or ctype.startswith("message/"):
        data = _embedded_bytes(part, ctype, notes)
    else:
        data = _payload_bytes(part)
    raw_id = mime.get("content-id")
    content_id = clean_text(decode_8bit(raw_id)).strip().strip("<>").strip() if raw_id else None
    content_id = content_id or None
    return Attachment(
        filename=filename or _default_filename(ctype),
        content_type=ctype,
        size=len(data),
        data=data,
        inline=disposition == "inline" or (disposition is None and content_id is not None),
        content_id=content_id,
        disposition=disposition,
    )


def _default_filename(ctype: str) -> str:
    if ctype in _DEFAULT_NAMES:
        return _DEFAULT_NAMES[ctype]
    extension = mimetypes.guess_extension(ctype) or ".bin"
    return ("image" if ctype.startswith("image/") else "attachment") + extension


def _embedded_bytes(part: Message, ctype: str, notes: list[str]) -> bytes:
    """The body of a message/* part (an enclosed email, a delivery report) as bytes."""
    for policy in _FLATTEN_POLICIES:
        buffer = io.BytesIO()
        try:
            BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(part)
            break
        except Exception as exc:  # keep the rest of the message even if one part is odd
            failure = type(exc).__name__
    else:
        notes.append(f"could not re-serialise a {ctype} part ({failure})")
        return b""
    data = buffer.getvalue()
    if data.startswith(b"\n"):  # the part had no headers of its own
        return data[1:]
    return data.split(b"\n\n", 1)[1] if b"\n\n" in data else b""
