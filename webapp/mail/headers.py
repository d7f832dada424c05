"""Headers: decode a message's header block into ParsedMessage fields.

Every header is read defensively and falls back to its raw value, so a bad header
never loses the message: raw 8-bit bytes, RFC 2047 encoded words that do not decode,
address lists the stdlib refuses, Message-IDs without brackets, unparsable dates.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email import utils as email_utils
from email.message import Message

from webapp.mail.charsets import (
    clean_text,
    codec_for,
    declared_charset,
    decode_8bit,
    decode_bytes,
    has_surrogates,
)

# Control characters but TAB: in an outgoing header value they could start a new header.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]+")
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


@dataclass
class HeaderFields:
    """What a message's header block says, decoded (mail/parse.py's ParsedMessage has these)."""

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
    headers: dict[str, str] = field(default_factory=dict)
    from_addr_normalized: str = ""
    # Authentication-Results headers, top down, grouped into runs of adjacent headers (each
    # run joined with "\n"): mail/authresults.py trusts only the topmost run of our server.
    auth_results_runs: list[str] = field(default_factory=list)


def read_headers(msg: Message, out: HeaderFields, notes: list[str]) -> None:
    """Fill out's header fields from msg; what had to be guessed goes to notes."""
    raw: dict[str, list[str]] = {}
    runs: list[list[str]] = []
    has_8bit, previous = False, ""
    for name, value in msg.raw_items():
        key = name.lower()
        raw.setdefault(key, []).append(value)
        has_8bit = has_8bit or has_surrogates(value)
        if key == "authentication-results":
            if previous != key:
                runs.append([])
            runs[-1].append(value)
        previous = key
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
    out.auth_results_runs = ["\n".join(decode_header_value(v, hint) for v in run) for run in runs]


def _charset_hint(msg: Message) -> str | None:
    """The charset of the message's first text part: how its raw 8-bit headers are likely encoded."""
    for index, part in enumerate(msg.walk()):
        if index > 20:
            break
        charset = declared_charset(mime_view(part))
        if charset and codec_for(charset) not in (None, "utf-8"):
            return charset
    return None


def _addresses(
    name: str, raw: dict[str, list[str]], notes: list[str], hint: str | None
) -> list[tuple[str, str]]:
    """(display name, address) pairs of every `name` header, skipping empty ones."""
    result = []
    for value in raw.get(name, []):
        for display_name, addr in _address_pairs(_unfold(decode_8bit(value, hint)), notes):
            addr = clean_text(addr).strip()
            if addr.strip('"<> '):
                result.append((clean_text(display_name).strip(), addr))
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
    value = clean_text(decode_8bit(_unfold(values[0])))
    match = _ANGLE_ID.search(value)
    if match and match.group(1).strip():
        return "<" + _WHITESPACE.sub("", match.group(1)) + ">"
    return _WHITESPACE.sub("", value) or None


def _message_ids(values: list[str]) -> list[str]:
    """All message-ids in In-Reply-To / References headers, in order, without repeats."""
    ids: list[str] = []
    for value in values:
        value = clean_text(decode_8bit(_unfold(value)))
        found = [m for m in _ANGLE_ID.findall(value) if m.strip()]
        if not found:  # brackets missing: take bare tokens that look like ids
            found = [t.strip(",;") for t in value.split() if "@" in t]
        ids.extend("<" + _WHITESPACE.sub("", m) + ">" for m in found)
    return list(dict.fromkeys(ids))


def decode_header_value(value: str, charset_hint: str | None = None) -> str:
    """Decode a raw header value: unfold, raw 8-bit bytes, RFC 2047 encoded words."""
    value = _unfold(decode_8bit(value, charset_hint))
    if "=?" in value:
        value = _decode_encoded_words(value)
    return clean_text(value).strip()


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


def one_line(value: str) -> str:
    """An outgoing header value on one line: each run of control characters becomes a space."""
    return CONTROL_CHARACTERS.sub(" ", value)


def _unfold(value: str) -> str:
    return value.replace("\r", "").replace("\n", "")


def mime_view(part: Message) -> Message:
    """The part itself, or a copy of its Content-* headers with raw 8-bit bytes decoded
    (compat32 turns those into Header objects, which the query methods cannot read)."""
    if not any(has_surrogates(value) for _, value in part.raw_items()):
        return part
    view = Message()
    for name, value in part.raw_items():
        if name.lower() in ("content-type", "content-disposition", "content-id"):
            view[name] = _unfold(decode_8bit(value))
    view.set_default_type(part.get_default_type())
    return view


def attachment_filename(mime: Message) -> str | None:
    """A part's filename parameter, decoded and made safe, or None."""
    name = mime.get_filename()
    if not name:
        return None
    name = decode_8bit(str(name))
    if "=?" in name:
        name = _decode_encoded_words(name)
    return safe_filename(name) or None


def safe_filename(name: str) -> str:
    """The last path component, without control characters, at most 255 characters."""
    name = clean_text(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch >= " " and ch != "\x7f").strip()
    return "" if name in {".", ".."} else name[:255]
