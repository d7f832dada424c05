"""IMAP IDLE (RFC 2177): one logged-in connection listening to one folder, read-only.

The connection never fetches: it only says that the folder changed. A dropped connection
(BYE, EOF, a dead peer found by TCP keep-alive) raises a classified MailError, like every
other failure of the mail layer.
"""

from __future__ import annotations

import contextlib
import imaplib
import select
import socket
import time

from imapclient.exceptions import CapabilityError

from webapp.mail.connect import (
    ServerSettings,
    classified,
    drop_imap,
    open_imap,
    select_existing,
)
from webapp.mail.errors import MailError, ProtocolError

# Untagged answers that mean "new mail may be here" (RFC 3501 7.3.1, 7.3.2).
NEW_MAIL = (b"EXISTS", b"RECENT")


class IdleNotOffered(MailError):
    """The server does not advertise IDLE: the mailbox is polled instead."""

    kind = "no_idle"


def _keepalive(sock: socket.socket) -> None:
    """TCP keep-alive: a peer that vanished (no FIN) is noticed within about two minutes."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 20)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def _dropped(settings: ServerSettings, why: str) -> ProtocolError:
    return ProtocolError(
        f"The server at {settings.where} ended the IDLE connection ({why}).",
        "Nothing to do: the watcher reconnects by itself.",
    )


def _new_mail(responses: list) -> bool:
    return any(
        isinstance(item, tuple) and len(item) > 1 and item[1] in NEW_MAIL for item in responses
    )


def _bye(responses: list) -> bool:
    return any(isinstance(item, tuple) and item and item[0] == b"BYE" for item in responses)


class IdleConnection:
    """Log in, EXAMINE the folder and enter IDLE; then wait() for news."""

    def __init__(self, settings: ServerSettings, folder: str) -> None:
        self.settings, self.folder = settings, folder
        self.client, self.plaintext = open_imap(settings)
        self.idling = False

    def start(self) -> None:
        """Select the folder read-only and enter IDLE; IdleNotOffered when the server lacks it."""
        s, client = self.settings, self.client
        with classified(s):
            if not client.has_capability("IDLE"):
                raise IdleNotOffered(
                    f"The server at {s.where} does not offer IDLE.",
                    "Nothing to do: this mailbox is polled at its interval.",
                )
            select_existing(
                client,
                self.folder,
                s.where,
                readonly=True,
                advice="Check the mailbox's folders: INBOX is the usual one.",
            )
            _keepalive(client.socket())
            self._idle()

    def _idle(self) -> None:
        try:
            self.client.idle()
        except CapabilityError as exc:
            raise IdleNotOffered(
                f"The server at {self.settings.where} does not offer IDLE.",
                "Nothing to do: this mailbox is polled at its interval.",
            ) from exc
        self.idling = True

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` s; True when new mail was announced.

        Raises a MailError when the connection is gone (or interrupt() was called)."""
        started = time.monotonic()
        poller = select.poll()  # not select(): a watcher holds more than 1,024 sockets
        poller.register(self.client.socket(), select.POLLIN | select.POLLPRI)
        with classified(self.settings):
            if not poller.poll(max(timeout, 0) * 1000):
                return False
            responses = self.client.idle_check(timeout=0)
            if _bye(responses):
                raise _dropped(self.settings, "BYE")
            if responses:
                return _new_mail(responses)
            # Readable but nothing parsed: EOF or a partial TLS record. A restart tells which.
            if time.monotonic() - started < timeout:
                return self.restart()
            return False

    def restart(self) -> bool:
        """DONE, NOOP (the keep-alive) and IDLE again; True when new mail was announced meanwhile."""
        with classified(self.settings):
            try:
                _, done = self.client.idle_done()
                self.idling = False
                noop = self.client.noop()[1]
            except (imaplib.IMAP4.abort, OSError, EOFError) as exc:
                raise _dropped(self.settings, "closed") from exc
            if _bye(done) or _bye(noop):
                raise _dropped(self.settings, "BYE")
            self._idle()
        return _new_mail(done) or _new_mail(noop)

    def interrupt(self) -> None:
        """From another thread: end a wait() at once (the connection is then closed)."""
        with contextlib.suppress(OSError):
            # The plain socket's shutdown: the TLS object stays with the waiting thread.
            socket.socket.shutdown(self.client.socket(), socket.SHUT_RDWR)

    def close(self) -> None:
        """Leave IDLE and log out politely; a dead connection is just dropped."""
        try:
            with classified(self.settings):
                if self.idling:
                    self.client.idle_done()
                self.client.logout()
        except MailError:
            drop_imap(self.client)
        finally:
            self.idling = False
