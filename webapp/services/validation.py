"""Checks on what an admin types, each returning a message fit to show next to the field."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def email_error(value: str) -> str | None:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"This is not a valid email address: {exc}"
    return None


def host_error(value: str) -> str | None:
    """A hostname (RFC 1123) or an IP address."""
    host = value.strip()
    if not host:
        return "Enter the server's host name, for example imap.example.com."
    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        return "Enter a host name such as imap.example.com, or an IP address, without http:// or a port."
    return None


def port_error(value: int | None) -> str | None:
    if value is None or not 1 <= value <= 65535:
        return "Enter a port between 1 and 65535."
    return None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_error(value: str) -> str | None:
    """https URLs; http only for localhost and loopback addresses."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "Enter a full URL starting with https://."
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return "Use https:// (http:// is only accepted for localhost and 127.0.0.1)."
    return None


@dataclass(frozen=True)
class SenderRule:
    action: str  # allow | block
    pattern: str  # normalised: address, @domain, *@domain or *.domain

    def matches(self, address: str) -> bool:
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        p = self.pattern
        if p.startswith("*@"):
            return domain == p[2:]
        if p.startswith("*."):
            return domain.endswith(p[1:])
        if p.startswith("@"):
            return domain == p[1:]
        return address == p


class SenderFilterError(ValueError):
    pass


_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _parse_pattern(pattern: str) -> str | None:
    p = pattern.strip().lower()
    if "@" in p and not p.startswith(("@", "*@")):
        local, _, domain = p.rpartition("@")
        return p if local and _DOMAIN.match(domain) and " " not in local else None
    if p.startswith("*@"):
        return p if _DOMAIN.match(p[2:]) else None
    if p.startswith("*."):
        return p if _DOMAIN.match(p[2:]) else None
    if p.startswith("@"):
        return p if _DOMAIN.match(p[1:]) else None
    return "@" + p if _DOMAIN.match(p) else None


def parse_sender_filter(text: str) -> list[SenderRule]:
    """One rule per line, `allow: PATTERN` or `block: PATTERN`; blank lines and # comments skipped."""
    rules, errors = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        action, sep, pattern = line.partition(":")
        action = action.strip().lower()
        normalised = _parse_pattern(pattern) if sep else None
        if action not in ("allow", "block") or not normalised:
            errors.append(
                f"Line {number}: “{line}” is not a rule. Write allow: or block: followed by an "
                "address, a domain (spam.example or @spam.example) or a wildcard (*@spam.example, *.spam.example)."
            )
            continue
        rules.append(SenderRule(action, normalised))
    if errors:
        raise SenderFilterError(" ".join(errors))
    return rules


MAX_FOLDERS = 50


def folder_names(text: str) -> list[str]:
    """The Folders field: one name per line, blanks and repeats dropped, INBOX by default.

    IMAP names are case-sensitive except INBOX, which is written INBOX however it was typed."""
    names: list[str] = []
    for line in (text or "").splitlines():
        name = line.strip()
        if name.upper() == "INBOX":
            name = "INBOX"
        if name and name not in names:
            names.append(name)
    return names or ["INBOX"]


def folders_error(text: str) -> str | None:
    names = folder_names(text)
    long = next((name for name in names if len(name) > 255), None)
    if long is not None:
        return f"The folder name {long[:40]}… is longer than 255 characters."
    if len(names) > MAX_FOLDERS:
        return f"Choose at most {MAX_FOLDERS} folders."
    return None
