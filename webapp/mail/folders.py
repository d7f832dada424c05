"""What Mailbox Setup shows before the first fetch: the server's folders with their message
counts, and how many messages were received since a date.

IMAP: LIST (folders marked \\Noselect or \\NonExistent cannot hold mail and are left out),
STATUS MESSAGES per folder, and SEARCH SINCE in each chosen folder. POP3 has no received
date: its messages are judged by their Date header, read with TOP n 0 when that is cheap.
"""

from __future__ import annotations

import imaplib
import poplib
from dataclasses import dataclass, field
from datetime import date
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime

from imapclient import IMAPClient

from webapp.mail.connect import (
    ServerSettings,
    classified,
    drop_imap,
    drop_pop3,
    open_imap,
    open_pop3,
)

POP3_PEEK_LIMIT = 200  # more messages than this: each one's Date header is read when fetched
UNSELECTABLE = {b"\\NOSELECT", b"\\NONEXISTENT"}


@dataclass
class FolderCount:
    """One folder of the server and the messages in it."""

    name: str
    messages: int


@dataclass
class Survey:
    """The chosen folders' messages, and what the server has besides."""

    count: int  # messages in the chosen folders that exist (POP3: the maildrop)
    plaintext: bool  # the session ran without TLS (no STARTTLS/STLS offered)
    folders: list[FolderCount] = field(default_factory=list)  # IMAP: every selectable folder
    missing: list[str] = field(default_factory=list)  # chosen folders the server does not have
    importable: int | None = None  # of count, received since the date; None: no date or unknown


def same_folder(a: str, b: str) -> bool:
    """Folder names compare exactly, except INBOX, which is case-insensitive (RFC 3501)."""
    return a == b or (a.upper() == "INBOX" and b.upper() == "INBOX")


def since_text(day: date) -> str:
    """1 March 2026."""
    return f"{day.day} {day:%B %Y}"


def sent_before(headers: bytes, since: date) -> bool:
    """True when the Date header is a day before `since`; a missing or unreadable one is not."""
    head = headers.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    value = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n\r\n").get("Date")
    if not value:
        return False
    try:
        sent = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return False
    return sent is not None and sent.date() < since


def survey(s: ServerSettings, chosen: list[str], since: date | None) -> Survey:
    """Log in, count what a fetch would read, and log out."""
    if s.family == "pop3":
        return _survey_pop3(s, since)
    return _survey_imap(s, chosen, since)


def _survey_imap(s: ServerSettings, chosen: list[str], since: date | None) -> Survey:
    client, plaintext = open_imap(s)
    with classified(s):
        try:
            folders = _folders(client)
            result = Survey(count=0, plaintext=plaintext, folders=folders)
            since_total = 0
            for name in chosen:
                found = next((f for f in folders if same_folder(f.name, name)), None)
                if found is None:
                    result.missing.append(name)
                    continue
                result.count += found.messages
                if since is not None and found.messages:
                    since_total += _count_since(client, found.name, since)
            result.importable = since_total if since is not None else None
        except BaseException:
            drop_imap(client)
            raise
        client.logout()
    return result


def _folders(client: IMAPClient) -> list[FolderCount]:
    out = []
    for flags, _delimiter, name in client.list_folders():
        if {bytes(flag).upper() for flag in flags} & UNSELECTABLE:
            continue
        name = name.decode() if isinstance(name, bytes) else str(name)
        try:
            status = client.folder_status(name, [b"MESSAGES"])
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:  # listed but not readable by this account
            continue
        out.append(FolderCount(name=name, messages=int(status.get(b"MESSAGES", 0))))
    return sorted(out, key=lambda f: (f.name.upper() != "INBOX", f.name.lower()))


def _count_since(client: IMAPClient, name: str, since: date) -> int:
    client.select_folder(name, readonly=True)
    return len(client.search(["SINCE", since]))


def _survey_pop3(s: ServerSettings, since: date | None) -> Survey:
    pop, plaintext = open_pop3(s)
    with classified(s):
        try:
            count = pop.stat()[0]
            importable = None
            if since is not None and count <= POP3_PEEK_LIMIT:
                importable = sum(
                    not sent_before(_top(pop, number), since) for number in range(1, count + 1)
                )
        except BaseException:
            drop_pop3(pop)
            raise
        pop.quit()
    return Survey(count=count, plaintext=plaintext, importable=importable)


def _top(pop: poplib.POP3, number: int) -> bytes:
    _, lines, _ = pop.top(number, 0)
    return b"\r\n".join(lines)
