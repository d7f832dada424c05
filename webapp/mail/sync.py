"""Read a mailbox incrementally: IMAP by (folder, UIDVALIDITY, UID), POP3 by UIDL.

No database here: the caller says where it got to (the cursor, the UIDLs it holds)
and stores what these readers yield. Bodies are read with BODY.PEEK[] in batches
bounded by count and by bytes, so nothing is marked read and a big mailbox never
sits in memory at once. Every network failure becomes a classified MailError.
"""

from __future__ import annotations

import hashlib
import logging
import poplib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

from imapclient import IMAPClient

from webapp.mail.connect import (
    ServerSettings,
    classified,
    open_imap,
    open_pop3,
    select_existing,
)
from webapp.mail.errors import MailError

log = logging.getLogger(__name__)

# poplib refuses lines over 2 KB ("line too long"), and one long HTML line must not
# abort a fetch; a line can never be longer than the message it is part of.
poplib._MAXLINE = max(poplib._MAXLINE, 64 * 1024 * 1024)

BATCH_SIZE = 100  # UIDs per FETCH at most
BATCH_BYTES = 32 * 1024 * 1024  # bytes per FETCH at most (one bigger message goes alone)
SUMMARY_FIELDS = b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM SUBJECT DATE)]"


@dataclass
class Fetched:
    """One message read from the server; raw is None when it is over the size limit."""

    size: int
    raw: bytes | None
    uid: int | None = None  # IMAP
    uidl: str | None = None  # POP3
    headers: bytes = b""  # a few header fields, read instead of the body when too large
    skipped: str | None = None  # not downloaded on purpose (sent before Fetch mail since): why

    @cached_property
    def sha256(self) -> str | None:
        """Hex SHA-256 of the raw bytes: the content key of the stored row."""
        return hashlib.sha256(self.raw).hexdigest() if self.raw is not None else None


@dataclass
class FolderState:
    """What SELECT said about the folder."""

    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass
class SyncStats:
    """Commands that transfer messages: 0 for a poll of an unchanged mailbox."""

    fetch_commands: int = 0
    commands: list[str] = field(default_factory=list)

    def count(self, command: str) -> None:
        self.fetch_commands += 1
        self.commands.append(command)


class ImapFolder:
    """A logged-in IMAP session reading one folder at a time by UID (select() switches)."""

    def __init__(self, settings: ServerSettings, folder: str | None, writable: bool) -> None:
        self.settings = settings
        self.folder = folder or ""
        self.writable = writable
        self.stats = SyncStats()
        self._folders_made: set[str] = set()  # folders known to exist (move targets)
        self.client: IMAPClient
        self.client, self.plaintext = open_imap(settings)
        self.state = FolderState(uidvalidity=0, uidnext=None, exists=0)
        if folder:
            try:
                self.select(folder)
            except BaseException:
                self.close()
                raise

    def select(self, folder: str) -> FolderState:
        """Select another folder in the same session; FolderNotFound when it does not exist."""
        self.folder = folder
        self.state = self._select(self.writable)
        return self.state

    def _select(self, writable: bool) -> FolderState:
        with classified(self.settings):
            info = select_existing(
                self.client, self.folder, self.settings.where, readonly=not writable
            )
            uidnext = info.get(b"UIDNEXT")
            if uidnext is None:  # not every server sends it with SELECT; STATUS always can
                uidnext = self.client.folder_status(self.folder, [b"UIDNEXT"]).get(b"UIDNEXT")
            return FolderState(
                uidvalidity=int(info[b"UIDVALIDITY"]),
                uidnext=int(uidnext) if uidnext is not None else None,
                exists=int(info.get(b"EXISTS", 0)),
            )

    def has_new(self, last_uid: int) -> bool:
        """False when UIDNEXT shows nothing arrived after last_uid (no SEARCH, no FETCH)."""
        if self.state.exists == 0:
            return False
        return self.state.uidnext is None or self.state.uidnext > last_uid + 1

    def uids_after(self, last_uid: int, since: date | None = None) -> list[int]:
        """UIDs above last_uid, ascending ("n:*" also matches the highest UID: filtered);
        with `since`, only those the server received on or after that day (SEARCH SINCE)."""
        criteria: list = ["UID", f"{last_uid + 1}:*"]
        if since is not None:
            criteria += ["SINCE", since]
        with classified(self.settings):
            found = self.client.search(criteria)
        return sorted(uid for uid in found if uid > last_uid)

    def batches(
        self, uids: list[int], max_bytes: int, size: int = BATCH_SIZE
    ) -> Iterator[tuple[list[int], list[Fetched]]]:
        """Yield (UIDs asked for, messages) in UID order, `size` UIDs at a time.

        Messages over max_bytes come as headers only; UIDs expunged meanwhile are absent.
        """
        for start in range(0, len(uids), size):
            chunk = uids[start : start + size]
            yield chunk, self._batch(chunk, max_bytes)

    def _batch(self, uids: list[int], max_bytes: int) -> list[Fetched]:
        with classified(self.settings):
            self.stats.count("FETCH RFC822.SIZE")
            sizes = {
                uid: int(data.get(b"RFC822.SIZE", 0))
                for uid, data in self.client.fetch(uids, [b"RFC822.SIZE"]).items()
            }
            present = [uid for uid in uids if uid in sizes]  # others were expunged meanwhile
            small = [uid for uid in present if sizes[uid] <= max_bytes]
            large = [uid for uid in present if sizes[uid] > max_bytes]
            bodies = self._bodies(small, sizes)
            headers = self._summaries(large)
        out = []
        for uid in present:
            if uid in bodies:
                out.append(Fetched(size=len(bodies[uid]), raw=bodies[uid], uid=uid))
            elif uid in large:
                out.append(
                    Fetched(size=sizes[uid], raw=None, uid=uid, headers=headers.get(uid, b""))
                )
        return out

    def _bodies(self, uids: list[int], sizes: dict[int, int]) -> dict[int, bytes]:
        bodies: dict[int, bytes] = {}
        group: list[int] = []
        total = 0
        for uid in [*uids, None]:
            if group and (uid is None or total + sizes[uid] > BATCH_BYTES):
                self.stats.count("FETCH BODY.PEEK[]")
                for got, data in self.client.fetch(group, [b"BODY.PEEK[]"]).items():
                    body = data.get(b"BODY[]")
                    if body is not None:
                        bodies[got] = bytes(body)
                group, total = [], 0
            if uid is not None:
                group.append(uid)
                total += sizes[uid]
        return bodies

    def _summaries(self, uids: list[int]) -> dict[int, bytes]:
        if not uids:
            return {}
        self.stats.count("FETCH HEADER.FIELDS")
        out = {}
        for uid, data in self.client.fetch(uids, [SUMMARY_FIELDS]).items():
            value = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
            out[uid] = bytes(value or b"")
        return out

    def fetch_one(self, uid: int, max_bytes: int) -> Fetched | None:
        """One message by UID (a too-large message asked for again); None if it is gone."""
        batch = self._batch([uid], max_bytes)
        return batch[0] if batch else None

    def mark_seen(self, uids: list[int]) -> None:
        if uids:
            with classified(self.settings):
                self.client.add_flags(uids, [b"\\Seen"], silent=True)

    def delete(self, uids: list[int]) -> None:
        """Flag deleted and expunge exactly these UIDs (all \\Deleted ones without UIDPLUS)."""
        if not uids:
            return
        with classified(self.settings):
            self.client.add_flags(uids, [b"\\Deleted"], silent=True)
            if self.client.has_capability("UIDPLUS"):
                self.client.uid_expunge(uids)
            else:
                self.client.expunge()

    def move(self, uids: list[int], target: str) -> None:
        """Move these UIDs to target (created if missing): UID MOVE, else COPY and delete."""
        if not uids:
            return
        with classified(self.settings):
            if target not in self._folders_made and not self.client.folder_exists(target):
                self.client.create_folder(target)
            self._folders_made.add(target)
            if self.client.has_capability("MOVE"):
                self.client.move(uids, target)
                return
            self.client.copy(uids, target)
        self.delete(uids)

    def close(self) -> None:
        """Log out; a failure here changes nothing that was stored."""
        try:
            with classified(self.settings):
                self.client.logout()
        except MailError as exc:  # the session is over either way; the server drops it
            log.debug("IMAP logout from %s failed: %s", self.settings.where, exc.kind)


class Pop3Box:
    """A logged-in POP3 session (maildrop locked until close)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.stats = SyncStats()
        self.pop: poplib.POP3
        self.pop, self.plaintext = open_pop3(settings)

    def listing(self) -> list[tuple[int, str, int]]:
        """(message number, UIDL, size) of every message, in server order."""
        with classified(self.settings):
            _, uidl_lines, _ = self.pop.uidl()
            _, list_lines, _ = self.pop.list()
        sizes = {}
        for line in list_lines:
            number, size = line.split()[:2]
            sizes[int(number)] = int(size)
        out = []
        for line in uidl_lines:
            number, uidl = line.decode("ascii", "replace").split()[:2]
            out.append((int(number), uidl, sizes.get(int(number), 0)))
        return out

    def retrieve(self, number: int, uidl: str, size: int, max_bytes: int) -> Fetched:
        """RETR the message, or only its headers (TOP n 0) when it is over max_bytes."""
        with classified(self.settings):
            if size > max_bytes:
                _, lines, _ = self.pop.top(number, 0)
                return Fetched(size=size, raw=None, uidl=uidl, headers=b"\r\n".join(lines))
            self.stats.count("RETR")
            _, lines, _ = self.pop.retr(number)
        raw = b"\r\n".join(lines) + b"\r\n"
        return Fetched(size=len(raw), raw=raw, uidl=uidl)

    def headers(self, number: int) -> bytes:
        """The header block alone (TOP n 0): to judge a message by its Date header."""
        with classified(self.settings):
            _, lines, _ = self.pop.top(number, 0)
        return b"\r\n".join(lines)

    def delete(self, numbers: list[int]) -> None:
        """DELE: takes effect at QUIT only."""
        with classified(self.settings):
            for number in numbers:
                self.pop.dele(number)

    def quit(self) -> None:
        """End the session: the server applies the DELEs now."""
        with classified(self.settings):
            self.pop.quit()

    def close(self) -> None:
        """Drop the session without QUIT: the server forgets the DELEs."""
        try:
            self.pop.close()
        except OSError as exc:  # the socket is gone either way
            log.debug("closing the POP3 session with %s failed: %s", self.settings.where, exc)
