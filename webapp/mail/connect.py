"""Open logged-in IMAP and POP3 connections; every failure becomes a classified MailError."""

from __future__ import annotations

import base64
import contextlib
import functools
import imaplib
import os
import poplib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import LoginError

from webapp.mail.errors import (
    PORT_HINTS,
    FolderNotFound,
    HostNotFound,
    MailError,
    ProtocolError,
    TlsFailed,
    auth_failed,
    encryption_missing,
    family,
    from_network_error,
    no_credentials,
    plaintext_refused,
    xoauth2_missing,
)

PROTOCOLS = ("imaps", "imap", "pop3s", "pop3")


def connect_timeout_seconds() -> float:
    """How long to wait for the connection, the TLS handshake and the greeting: a server that
    accepts and never answers (a tarpit) costs no more (MAILCHANNEL_CONNECT_TIMEOUT, tests)."""
    return float(os.environ.get("MAILCHANNEL_CONNECT_TIMEOUT") or 10.0)


@dataclass(repr=False)
class ServerSettings:
    """Where and how to log in to a mailbox."""

    protocol: str  # "imaps" | "pop3s" | "imap" | "pop3"
    host: str
    port: int
    username: str
    password: str | None = None  # basic auth
    access_token: str | None = None  # OAuth (SASL XOAUTH2)
    ca_bundle: str | None = None  # extra PEM CAs trusted beside the system CAs
    timeout: float = 20.0  # each read once logged in
    connect_timeout: float = field(default_factory=connect_timeout_seconds)
    folder: str = "INBOX"
    # imap/pop3 without STARTTLS/STLS: log in anyway (the admin's "Allow login without encryption").
    allow_plaintext_login: bool = False

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, not {self.protocol!r}")

    def __repr__(self) -> str:
        secret = "access_token=***" if self.access_token else "password=***"
        return (
            f"ServerSettings(protocol={self.protocol!r}, host={self.host!r}, port={self.port}, "
            f"username={self.username!r}, {secret}, folder={self.folder!r})"
        )

    @property
    def implicit_tls(self) -> bool:
        """True for imaps/pop3s (TLS from the first byte)."""
        return self.protocol.endswith("s")

    @property
    def family(self) -> str:
        """imap or pop3."""
        return family(self.protocol)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class CountResult:
    """Messages in the folder, and whether the session ran without TLS."""

    count: int
    plaintext: bool  # True when imap/pop3 logged in unencrypted (allowed for this mailbox)


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """A verifying client context: system CAs plus the PEM file `ca_bundle` if set.

    Building one reloads every system CA (about 17 ms), so contexts are kept per bundle
    file and its modification time; a changed bundle gives a new context."""
    mtime = None
    if ca_bundle:
        try:
            mtime = os.stat(ca_bundle).st_mtime_ns
        except OSError:
            mtime = None
    return _tls_context(ca_bundle, mtime)


@functools.lru_cache(maxsize=8)
def _tls_context(ca_bundle: str | None, _mtime: int | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise TlsFailed(
                f"The CA bundle {ca_bundle} could not be read.",
                "Point MAIL_CA_BUNDLE at a readable PEM file, or unset it.",
            ) from exc
    return context


@contextlib.contextmanager
def classified(s: ServerSettings) -> Iterator[None]:
    """Re-raise socket, TLS and protocol exceptions as MailError subclasses."""
    try:
        yield
    except MailError:
        raise
    except imaplib.IMAP4.abort as exc:  # imaplib's word for a dropped connection
        raise ProtocolError(
            f"The server at {s.where} closed the connection unexpectedly.",
            "Check that the port and protocol match; if they do, try again later.",
        ) from exc
    except (imaplib.IMAP4.error, poplib.error_proto) as exc:
        name = s.family.upper()
        raise ProtocolError(
            f"The server at {s.where} did not answer in the {name} protocol.",
            f"Check that the port belongs to {name}: {PORT_HINTS[s.family]}.",
        ) from exc
    except (OSError, EOFError) as exc:
        error = from_network_error(exc, s.host, s.port, s.protocol)
        if error is None:
            raise
        raise error from exc


def _check_host(s: ServerSettings) -> None:
    try:
        s.host.encode("idna")
    except UnicodeError as exc:
        raise HostNotFound(
            f"The host name {s.host} is not valid.",
            "Check the Host field for typos and stray dots.",
        ) from exc


def _refuse_unencrypted(s: ServerSettings) -> None:
    """No encryption was offered: send no password or token unless the admin allowed it."""
    if not s.allow_plaintext_login:
        raise encryption_missing(s.where, s.protocol, bool(s.access_token))


def _xoauth2_payload(s: ServerSettings) -> str:
    raw = f"user={s.username}\x01auth=Bearer {s.access_token}\x01\x01"
    return base64.b64encode(raw.encode()).decode("ascii")


# -- IMAP ------------------------------------------------------------------


def open_imap(s: ServerSettings) -> tuple[IMAPClient, bool]:
    """A logged-in IMAPClient and whether it runs in plain text (no STARTTLS offered, and
    the mailbox allows that; otherwise EncryptionMissing before any credential is sent)."""
    _check_host(s)
    context = tls_context(s.ca_bundle)
    with classified(s):
        client = IMAPClient(
            s.host,
            port=s.port,
            ssl=s.implicit_tls,
            ssl_context=context,
            timeout=SocketTimeout(connect=s.connect_timeout, read=s.timeout),
        )
        try:
            plaintext = False
            if not s.implicit_tls:
                if b"STARTTLS" in client.capabilities():
                    client.starttls(context)
                else:
                    _refuse_unencrypted(s)
                    plaintext = True
            _imap_login(client, s, plaintext)
        except BaseException:
            drop_imap(client)
            raise
    return client, plaintext


def _imap_login(client: IMAPClient, s: ServerSettings, plaintext: bool) -> None:
    capabilities = client.capabilities()
    try:
        if s.access_token:
            if b"AUTH=XOAUTH2" not in capabilities:
                raise xoauth2_missing(s.where)
            client.oauth2_login(s.username, s.access_token)
        elif s.password is not None:
            if plaintext and b"LOGINDISABLED" in capabilities:
                raise plaintext_refused(s.where, s.family)
            client.login(s.username, s.password)
        else:
            raise no_credentials(s.username)
    except LoginError as exc:
        raise auth_failed(s.where, bool(s.access_token), str(exc)) from exc


def drop_imap(client: IMAPClient) -> None:
    # Cleanup after a failure: the first error is the one worth reporting.
    with contextlib.suppress(OSError, imaplib.IMAP4.error):
        client.shutdown()


FOLDER_ADVICE = (
    "Check the Folders field (one name per line; INBOX is the usual one, other "
    "names are case-sensitive), or tick the folders on Mailbox Setup."
)


def select_existing(
    client: IMAPClient, folder: str, where: str, readonly: bool, advice: str = FOLDER_ADVICE
) -> dict:
    """SELECT the folder; a NO (not an abort) becomes FolderNotFound, naming it and the server."""
    try:
        return client.select_folder(folder, readonly=readonly)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        raise FolderNotFound(f"The folder {folder} does not exist on {where}.", advice) from exc


def _count_imap(s: ServerSettings) -> CountResult:
    client, plaintext = open_imap(s)
    with classified(s):
        try:
            info = select_existing(
                client,
                s.folder,
                s.where,
                readonly=True,
                advice="Check the Folders field: INBOX is the usual one; other names are "
                "case-sensitive.",
            )
            count = int(info[b"EXISTS"])
        except BaseException:
            drop_imap(client)
            raise
        client.logout()
    return CountResult(count=count, plaintext=plaintext)


# -- POP3 ------------------------------------------------------------------


def open_pop3(s: ServerSettings) -> tuple[poplib.POP3, bool]:
    """A logged-in POP3 session and whether it runs in plain text (no STLS offered, and the
    mailbox allows that; otherwise EncryptionMissing before any credential is sent)."""
    _check_host(s)
    context = tls_context(s.ca_bundle)
    with classified(s):
        if s.implicit_tls:
            pop: poplib.POP3 = poplib.POP3_SSL(
                s.host, s.port, timeout=s.connect_timeout, context=context
            )
        else:
            pop = poplib.POP3(s.host, s.port, timeout=s.connect_timeout)
        try:
            pop.sock.settimeout(s.timeout)  # greeted: the usual read timeout from here
            capabilities = _pop3_capa(pop)
            plaintext = False
            if not s.implicit_tls:
                if "STLS" in capabilities:
                    pop.stls(context)
                    capabilities = _pop3_capa(pop)
                else:
                    _refuse_unencrypted(s)
                    plaintext = True
            _pop3_login(pop, s, capabilities, plaintext)
        except BaseException:
            drop_pop3(pop)
            raise
    return pop, plaintext


def _pop3_capa(pop: poplib.POP3) -> dict[str, list[str]]:
    try:
        return pop.capa()
    except poplib.error_proto:
        return {}  # CAPA is optional (RFC 2449): an old server may not know it


def _pop3_login(
    pop: poplib.POP3, s: ServerSettings, capabilities: dict[str, list[str]], plaintext: bool
) -> None:
    if s.access_token:
        if capabilities and "XOAUTH2" not in capabilities.get("SASL", []):
            raise xoauth2_missing(s.where)
        _pop3_xoauth2(pop, s)
        return
    if s.password is None:
        raise no_credentials(s.username)
    if plaintext and capabilities and "USER" not in capabilities:
        raise plaintext_refused(s.where, s.family)
    try:
        pop.user(s.username)
        pop.pass_(s.password)
    except poplib.error_proto as exc:
        raise auth_failed(s.where, False, exc.args[0] if exc.args else b"") from exc


def _pop3_xoauth2(pop: poplib.POP3, s: ServerSettings) -> None:
    """AUTH XOAUTH2 (RFC 5034 exchange); poplib has no SASL support of its own."""
    pop._putcmd("AUTH XOAUTH2")
    line, _ = pop._getline()
    if not line.startswith(b"+") or line.startswith(b"+OK"):
        raise xoauth2_missing(s.where)
    pop._putcmd(_xoauth2_payload(s))
    line, _ = pop._getline()
    if line.startswith(b"+OK"):
        return
    if line.startswith(b"+"):
        # The error details come as a challenge; an empty answer ends the exchange.
        pop._putcmd("")
        line, _ = pop._getline()
    raise auth_failed(s.where, True, line)


def drop_pop3(pop: poplib.POP3) -> None:
    # Cleanup after a failure: the first error is the one worth reporting.
    with contextlib.suppress(OSError):
        pop.close()


def _count_pop3(s: ServerSettings) -> CountResult:
    pop, plaintext = open_pop3(s)
    with classified(s):
        try:
            count = pop.stat()[0]
        except BaseException:
            drop_pop3(pop)
            raise
        pop.quit()
    return CountResult(count=count, plaintext=plaintext)


def count_messages(s: ServerSettings) -> CountResult:
    """Log in, count the messages (IMAP: the folder; POP3: STAT) and log out."""
    if s.family == "pop3":
        return _count_pop3(s)
    return _count_imap(s)
