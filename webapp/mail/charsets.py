"""Charsets: decode body and header bytes whatever charset a message declares.

Mail declares charsets that are missing, misspelt, unknown to Python or simply wrong,
and carries raw 8-bit bytes in headers. Nothing here raises on bad input: a wrong
charset falls back to a guess (UTF-8 when the bytes nearly are, else Windows-1252).
"""

from __future__ import annotations

import codecs
import functools
from email import utils as email_utils
from email.message import Message

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
def codec_for(charset: str | None) -> str | None:
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
    codec = codec_for(charset)
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


def decode_8bit(value: str, charset_hint: str | None = None) -> str:
    """Raw header text from the parser carries 8-bit bytes as surrogates; decode them.

    UTF-8 (RFC 6532) first, then the charset the message's text declares, then a guess.
    """
    if not has_surrogates(value):
        return value
    data = value.encode("ascii", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    codec = codec_for(charset_hint)
    if codec:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    return decode_bytes(data, None)


def has_surrogates(value: str) -> bool:
    """Whether the text carries raw 8-bit bytes as lone surrogates (surrogateescape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def clean_text(value: str) -> str:
    """Text safe to store: no NUL characters (PostgreSQL) and no lone surrogates."""
    if has_surrogates(value):
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "")


def declared_charset(mime: Message) -> str | None:
    """The charset parameter of a part's Content-Type, or None."""
    charset = mime.get_param("charset")
    if isinstance(charset, tuple):
        charset = email_utils.collapse_rfc2231_value(charset)
    return str(charset) if charset else None
