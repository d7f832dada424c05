"""Did the receiving server authenticate the sender? Authentication-Results (RFC 8601).

Only headers whose authserv-id is our receiving server's count, and of those only the
topmost: anyone can write an Authentication-Results header into the mail they send, and
RFC 8601 section 5 has the receiving server remove incoming ones that claim its own id and
add its own at the top. So only the first header of ours from the top counts; any copy
further down may be the sender's and is ignored. The sender counts as
verified when our server reports dmarc=pass, or SPF or DKIM pass for a domain aligned
with the From domain (relaxed alignment, approximated without the public suffix list).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r'\s*([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;"]+)')


@dataclass(frozen=True)
class MethodResult:
    """One resinfo: method=result plus its properties (header.d, smtp.mailfrom, ...)."""

    method: str
    result: str
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthResults:
    """One Authentication-Results header."""

    authserv_id: str
    results: list[MethodResult] = field(default_factory=list)


@dataclass(frozen=True)
class SenderCheck:
    """Whether the sender is verified, by which method, and why, for the fetch log."""

    verified: bool
    reason: str
    method: str | None = None  # "dmarc" | "dkim" | "spf" when verified


def parse_authentication_results(value: str | None) -> list[AuthResults]:
    """Every header in `value` (repeated headers joined by newlines, folded or not)."""
    headers = re.split(r"\r?\n(?![ \t])", value or "")
    return [parsed for header in headers if (parsed := _parse_one(header)) is not None]


def trusted_results(runs: str | list[str] | None, ours: str) -> list[AuthResults]:
    """The header of our server that counts: the topmost one with our authserv-id. `runs` are
    the runs of adjacent headers top down (HeaderFields.auth_results_runs); a string is one
    run. A second header of ours right below it is not trusted either: a sender can put a
    forged one first in its own header block, directly below our server's."""
    for run in [runs or ""] if isinstance(runs, str | None) else runs:
        for header in parse_authentication_results(run):
            if header.authserv_id == ours:
                return [header]
    return []


def check_sender(runs: str | list[str] | None, authserv_id: str, from_addr: str) -> SenderCheck:
    """The verdict of our own server (authserv_id) on the sender of from_addr; `runs` as for
    trusted_results."""
    ours = _normalise_id(authserv_id)
    from_domain = from_addr.strip().rpartition("@")[2].strip(" >.").lower()
    if not ours:
        return SenderCheck(False, "no authserv-id is configured, so no header is trusted")
    if not from_domain:
        return SenderCheck(False, "the message has no From address")
    headers = trusted_results(runs, ours)
    if not headers:
        return SenderCheck(False, f"no Authentication-Results header from {ours}")
    results = [r for h in headers for r in h.results]
    # Our server's own dmarc=fail wins over any pass (a forged header cannot undo it).
    if any(r.method == "dmarc" and r.result == "fail" for r in results):
        return SenderCheck(False, f"{ours} reports dmarc=fail")
    for r in results:
        if r.result != "pass":
            continue
        if r.method == "dmarc":
            domain = r.properties.get("header.from", from_domain)
            if aligned(domain, from_domain):
                return SenderCheck(True, f"dmarc=pass for {domain}", "dmarc")
        elif r.method == "dkim":
            domain = r.properties.get("header.d") or _domain(r.properties.get("header.i", ""))
            if domain and aligned(domain, from_domain):
                return SenderCheck(
                    True, f"dkim=pass for {domain}, aligned with {from_domain}", "dkim"
                )
        elif r.method == "spf":
            domain = _domain(r.properties.get("smtp.mailfrom", ""))
            if domain and aligned(domain, from_domain):
                return SenderCheck(
                    True, f"spf=pass for {domain}, aligned with {from_domain}", "spf"
                )
    found = ", ".join(f"{r.method}={r.result}" for r in results) or "no results"
    return SenderCheck(False, f"{ours} reports {found}: no pass aligned with {from_domain}")


def sender_verified(runs: str | list[str] | None, authserv_id: str, from_addr: str) -> bool:
    """True when our server saw SPF or DKIM pass aligned with the From domain (or dmarc=pass)."""
    return check_sender(runs, authserv_id, from_addr).verified


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed DMARC alignment, approximated: equal, or one a subdomain of the other.

    The shorter name must have two labels at least, so "com" aligns with nothing.
    """
    a, b = domain.strip(".").lower(), from_domain.strip(".").lower()
    if not a or not b:
        return False
    if a == b:
        return True
    shorter, longer = sorted((a, b), key=len)
    return "." in shorter and longer.endswith("." + shorter)


def _parse_one(header: str) -> AuthResults | None:
    text = _strip_comments(" ".join(header.split()))
    parts = _split_outside_quotes(text)
    head = parts[0].split()
    if not head:
        return None
    results = []
    for part in parts[1:]:
        pairs = [(k.lower(), _unquote(v)) for k, v in _TOKEN.findall(part)]
        if not pairs:
            continue  # "none", or a resinfo we cannot read
        (method, result), rest = pairs[0], pairs[1:]
        properties = {k: v for k, v in rest if "." in k}
        results.append(MethodResult(method.split("/")[0], result.lower(), properties))
    return AuthResults(_normalise_id(head[0]), results)


def _strip_comments(text: str) -> str:
    """Drop (comments), which may nest, keeping "quoted strings" intact."""
    out, depth, quoted, escaped = [], 0, False, False
    for char in text:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
        elif char == '"' and depth == 0:
            quoted = not quoted
        elif char == "(" and not quoted:
            depth += 1
            continue
        elif char == ")" and not quoted and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(char)
    return "".join(out)


def _split_outside_quotes(text: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _domain(value: str) -> str:
    """The domain of an address (user@domain, @domain) or of a bare domain."""
    return value.strip().strip("<>").rpartition("@")[2].strip(".").lower()


def _normalise_id(value: str) -> str:
    return value.strip().strip(".").lower()
