"""Turn the raw bytes of one email into a ParsedMessage.

Mailboxes hold broken mail: unknown charsets, malformed address headers, missing
boundaries, raw 8-bit headers, binary junk. Every header is read defensively and
falls back to its raw value, so a bad header never loses the message. ParseError is
raised only when the message is genuinely unusable (over a limit, not an email at
all, or an unexpected failure), always with a one-sentence reason.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import io
import mimetypes
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email import utils as email_utils
from email.feedparser import BytesFeedParser
from email.generator import BytesGenerator
from email.message import Message

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
class ParsedMessage:
    message_id: str | None = None
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    subject: str = ""
    from_name: str = ""
    from_addr: str = ""
    reply_to: str | None = None
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    date: datetime | None = None
    text: str = ""
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)
    is_report: bool = False
    report_type: str | None = None
    from_addr_normalized: str = ""
    # The reply above the quotes (mail/reply.py), when parse_ahead computed it already.
    reply_text: str | None = None

    def __post_init__(self) -> None:
        if not self.from_addr_normalized:
            self.from_addr_normalized = self.from_addr.lower()


DEFAULT_LIMITS = ParseLimits()

# Header names kept in ParsedMessage.headers; repeated headers are joined with "\n".
HEADERS_OF_INTEREST = (
    "auto-submitted",
    "precedence",
    "list-id",
    "list-unsubscribe",
    "return-path",
    "x-auto-response-suppress",
    "x-autoreply",
    "x-autorespond",
    "x-apple-action",
    "authentication-results",
    "content-type",
)

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
    _read_headers(msg, out, notes)
    _read_parts(msg, out, notes, limits, started)
    out.defects = list(dict.fromkeys(notes))
    return out


# -- headers -----------------------------------------------------------------------


def _read_headers(msg: Message, out: ParsedMessage, notes: list[str]) -> None:
    raw: dict[str, list[str]] = {}
    has_8bit = False
    for name, value in msg.raw_items():
        raw.setdefault(name.lower(), []).append(value)
        has_8bit = has_8bit or _has_surrogates(value)
    hint = _charset_hint(msg) if has_8bit else None
    out.message_id = _message_id(raw.get("message-id", []))
    out.in_reply_to = _message_ids(raw.get("in-reply-to", []))
    out.references = _message_ids(raw.get("references", []))
    out.subject = decode_header_value(raw["subject"][0], hint) if "subject" in raw else ""
    sender = _addresses("from", raw, notes, hint) or _addresses("sender", raw, notes, hint)
    if sender:
        out.from_name, out.from_addr = sender[0]
        out.from_addr_normalized = out.from_addr.lower()
    reply_to = _addresses("reply-to", raw, notes, hint)
    out.reply_to = reply_to[0][1] if reply_to else None
    out.to = [addr for _, addr in _addresses("to", raw, notes, hint)]
    out.cc = [addr for _, addr in _addresses("cc", raw, notes, hint)]
    out.date = _date(raw.get("date", []), notes)
    for name in HEADERS_OF_INTEREST:
        if name in raw:
            out.headers[name] = "\n".join(decode_header_value(v, hint) for v in raw[name])


def _charset_hint(msg: Message) -> str | None:
    """The charset of the message's first text part: how its raw 8-bit headers are likely encoded."""
    for index, part in enumerate(msg.walk()):
        if index > 20:
            break
        charset = _charset(_mime_view(part))
        if charset and _codec(charset) not in (None, "utf-8"):
            return charset
    return None


def _addresses(
    name: str, raw: dict[str, list[str]], notes: list[str], hint: str | None
) -> list[tuple[str, str]]:
    """(display name, address) pairs of every `name` header, skipping empty ones."""
    result = []
    for value in raw.get(name, []):
        for display_name, addr in _address_pairs(_unfold(_decode_8bit(value, hint)), notes):
            addr = _clean(addr).strip()
            if addr.strip('"<> '):
                result.append((_clean(display_name).strip(), addr))
    return result


# One element of an address list: quoted strings, <angle addresses>, (comments) and
# any other text, up to a comma outside of those.
_ADDRESS_ELEMENT = re.compile(
    r'(?:"(?:[^"\\]|\\.)*(?:"|\Z)|<[^<>]*(?:>|\Z)|\([^()]*(?:\)|\Z)|[^,"<(])+'
)
_NAME_ADDR = re.compile(r'\s*(?P<name>"(?:[^"\\]|\\.)*"|[^<>"()]*?)\s*<(?P<addr>[^<>\s:;,]*)>\s*\Z')
_ADDR_COMMENT = re.compile(
    r'\s*<?(?P<addr>[^\s<>"(),;:]+@[^\s<>"(),;:]+)>?\s*(?:\((?P<name>[^()]*)\))?\s*\Z'
)
_MAX_STRICT_ADDRESS = 2000
_ANY_ADDR = re.compile(r'[^\s<>"(),;:]+@[^\s<>"(),;:]+')


def _address_pairs(value: str, notes: list[str]) -> list[tuple[str, str]]:
    """Split an address list; the common forms by regex, the rest by the stdlib parser."""
    pairs = []
    for element in _ADDRESS_ELEMENT.findall(value):
        if not element.strip():
            continue
        match = _NAME_ADDR.match(element) or _ADDR_COMMENT.match(element)
        if match:
            pairs.append((_display_name(match.group("name") or ""), match.group("addr")))
        else:
            pairs.extend(_parse_address_strictly(element, notes))
    return pairs


def _parse_address_strictly(element: str, notes: list[str]) -> list[tuple[str, str]]:
    """RFC 5322 parsing for groups, comments and odd forms; raw addresses if it fails."""
    if len(element) > _MAX_STRICT_ADDRESS:  # the stdlib parser is quadratic on junk like this
        notes.append("address header element is too long to parse strictly")
        return [("", addr) for addr in _ANY_ADDR.findall(element)]
    try:
        header = email_policy.default.header_factory("to", element)
        return [(a.display_name or "", a.addr_spec or "") for a in header.addresses]
    except Exception as exc:  # the stdlib raises on e.g. "unlisted-recipients:; (...)"
        notes.append(f"address header could not be parsed strictly ({type(exc).__name__})")
        return [("", addr) for addr in _ANY_ADDR.findall(element)]


def _display_name(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    return decode_header_value(name)


def _date(values: list[str], notes: list[str]) -> datetime | None:
    if not values:
        return None
    try:
        parsed = email_utils.parsedate_to_datetime(_unfold(values[0]).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is None:
        notes.append("Date header could not be parsed")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        notes.append("Date header is out of range")
        return None


_ANGLE_ID = re.compile(r"<([^<>]*)>")
_WHITESPACE = re.compile(r"\s+")


def _message_id(values: list[str]) -> str | None:
    if not values:
        return None
    value = _clean(_decode_8bit(_unfold(values[0])))
    match = _ANGLE_ID.search(value)
    if match and match.group(1).strip():
        return "<" + _WHITESPACE.sub("", match.group(1)) + ">"
    return _WHITESPACE.sub("", value) or None


def _message_ids(values: list[str]) -> list[str]:
    """All message-ids in In-Reply-To / References headers, in order, without repeats."""
    ids: list[str] = []
    for value in values:
        value = _clean(_decode_8bit(_unfold(value)))
        found = [m for m in _ANGLE_ID.findall(value) if m.strip()]
        if not found:  # brackets missing: take bare tokens that look like ids
            found = [t.strip(",;") for t in value.split() if "@" in t]
        ids.extend("<" + _WHITESPACE.sub("", m) + ">" for m in found)
    return list(dict.fromkeys(ids))


def decode_header_value(value: str, charset_hint: str | None = None) -> str:
    """Decode a raw header value: unfold, raw 8-bit bytes, RFC 2047 encoded words."""
    value = _unfold(_decode_8bit(value, charset_hint))
    if "=?" in value:
        value = _decode_encoded_words(value)
    return _clean(value).strip()


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def _decode_encoded_words(value: str) -> str:
    """RFC 2047, leniently: a word that fails to decode is kept as written."""
    pieces: list[list] = []  # [text or bytes, charset or None]
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        pos = match.end()
        if between and not (between.isspace() and pieces and pieces[-1][1]):
            pieces.append([between, None])
        charset, data = match.group(1).lower(), _word_bytes(match.group(2), match.group(3))
        if data is None:
            pieces.append([match.group(0), None])
        elif pieces and pieces[-1][1] == charset:  # multi-byte characters may span words
            pieces[-1][0].extend(data)
        else:
            pieces.append([bytearray(data), charset])
    pieces.append([value[pos:], None])
    return "".join(p if cs is None else decode_bytes(bytes(p), cs) for p, cs in pieces)


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        data = payload.encode("ascii")
        if encoding in "qQ":
            return binascii.a2b_qp(data, header=True)
        data = data.rstrip(b"=")
        if len(data) % 4 == 1:
            data = data[:-1]
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except (binascii.Error, UnicodeError, ValueError):
        return None


# -- charsets ----------------------------------------------------------------------

_CHARSET_ALIASES = {
    "unicode-1-1-utf-7": "utf-7",
    "uft-8": "utf-8",
    "utf8": "utf-8",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
}
_UNKNOWN_CHARSETS = {"", "us-ascii", "ascii", "x-unknown", "unknown", "unknown-8bit", "none"}


@functools.lru_cache(maxsize=256)
def _codec(charset: str | None) -> str | None:
    """Python codec for a MIME charset label, or None when unknown or not a text codec."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").split("*", 1)[0].lower()
    if name in _UNKNOWN_CHARSETS:
        return None
    if "2022-jp" in name:
        return "iso2022_jp_2"
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or "escape" in info.name:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None, notes: list[str] | None = None) -> str:
    """Decode text bytes; a missing, unknown or wrong charset never raises."""
    codec = _codec(charset)
    if codec:
        try:
            return data.decode(codec)
        except (UnicodeError, LookupError):
            pass
        if codec == "cp1252":
            return data.decode("latin-1")
        if notes is not None:
            notes.append(f"text is not valid {charset}; undecodable bytes replaced")
        try:
            return data.decode(codec, "replace")
        except (UnicodeError, LookupError):  # codecs such as "undefined" always raise
            return _guess_decode(data)
    if charset and notes is not None and charset.lower() not in _UNKNOWN_CHARSETS:
        notes.append(f"unknown charset {charset[:40]!r}; guessed the encoding")
    if b"\x1b$" in data or b"\x1b(" in data:  # undeclared ISO-2022-JP
        try:
            return data.decode("iso2022_jp_2")
        except UnicodeError:
            pass
    return _guess_decode(data)


def _guess_decode(data: bytes) -> str:
    """UTF-8 if the bytes are (nearly) UTF-8, e.g. cut off mid-character; else Windows-1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    if non_ascii - bad >= 4 * bad:
        return text
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decode_8bit(value: str, charset_hint: str | None = None) -> str:
    """Raw header text from the parser carries 8-bit bytes as surrogates; decode them.

    UTF-8 (RFC 6532) first, then the charset the message's text declares, then a guess.
    """
    if not _has_surrogates(value):
        return value
    data = value.encode("ascii", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    codec = _codec(charset_hint)
    if codec:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    return decode_bytes(data, None)


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unfold(value: str) -> str:
    return value.replace("\r", "").replace("\n", "")


def _clean(value: str) -> str:
    """Text safe to store: no NUL characters (PostgreSQL) and no lone surrogates."""
    if _has_surrogates(value):
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "")


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
        filename = _filename(mime)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text = _newlines(decode_bytes(_payload_bytes(part), _charset(mime), notes))
            (html if ctype == "text/html" else plain).append(_clean(text))
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
        out.text = _clean(_newlines("\n".join(inline_text))).strip("\n")


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
        mime = _mime_view(part)
        yield part, mime
        if part.is_multipart() and mime.get_content_maintype() == "multipart":
            children = part.get_payload()
            stack.extend((child, depth + 1) for child in reversed(children))


def _mime_view(part: Message) -> Message:
    """The part itself, or a copy of its Content-* headers with raw 8-bit bytes decoded
    (compat32 turns those into Header objects, which the query methods cannot read)."""
    if not any(_has_surrogates(value) for _, value in part.raw_items()):
        return part
    view = Message()
    for name, value in part.raw_items():
        if name.lower() in ("content-type", "content-disposition", "content-id"):
            view[name] = _unfold(_decode_8bit(value))
    view.set_default_type(part.get_default_type())
    return view


def _disposition(mime: Message) -> str | None:
    value = mime.get("content-disposition")
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def _charset(mime: Message) -> str | None:
    charset = mime.get_param("charset")
    if isinstance(charset, tuple):
        charset = email_utils.collapse_rfc2231_value(charset)
    return str(charset) if charset else None


def _filename(mime: Message) -> str | None:
    name = mime.get_filename()
    if not name:
        return None
    name = _decode_8bit(str(name))
    if "=?" in name:
        name = _decode_encoded_words(name)
    return safe_filename(name) or None


def safe_filename(name: str) -> str:
    """The last path component, without control characters, at most 255 characters."""
    name = _clean(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch >= " " and ch != "\x7f").strip()
    return "" if name in {".", ".."} else name[:255]


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
    content_id = _clean(_decode_8bit(raw_id)).strip().strip("<>").strip() if raw_id else None
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
