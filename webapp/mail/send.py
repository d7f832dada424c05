"""Outgoing mail: send a built message (mail/compose.py) over SMTP, classify failures.

TLS is always verified. A server that offers no AUTH gets the mail without a login (a
local relay); 4xx replies, timeouts and dropped connections are TemporaryFailure (send
again later), 5xx replies PermanentFailure (do not). The server's own text is kept in
`.server_reply`, apart from `.message`, so the UI decides whether to show it.
"""

from __future__ import annotations

import base64
import contextlib
import copy as copy_module
import io
import re
import smtplib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from email.message import EmailMessage

from webapp.mail.compose import new_message_id
from webapp.mail.connect import tls_context
from webapp.mail.errors import (
    PORT_HINTS,
    AuthFailed,
    EncryptionMissing,
    HostNotFound,
    MailError,
    MechanismNotOffered,
    ProtocolError,
    auth_failed,
    from_network_error,
    plaintext_refused,
    xoauth2_missing,
)
from webapp.mail.headers import CONTROL_CHARACTERS

SECURITY = ("starttls", "ssl", "none")
_REPLY_LIMIT = 300


class SmtpFailure(MailError):
    """A failure answered (or caused) by the SMTP server during a send."""

    def __init__(
        self, message: str, advice: str = "", kind: str | None = None, code: int = 0,
        server_reply: str = "",
    ) -> None:  # fmt: skip
        super().__init__(message, advice, kind)
        self.code = code
        self.server_reply = server_reply[:_REPLY_LIMIT]

    def __reduce__(self) -> tuple[type, tuple[str, str, str, int, str]]:  # type: ignore[override]
        return (type(self), (self.message, self.advice, self.kind, self.code, self.server_reply))


class TemporaryFailure(SmtpFailure):
    """A 4xx reply, a timeout or a dropped connection: send again later."""

    kind = "smtp_temporary"


class PermanentFailure(SmtpFailure):
    """A 5xx reply: the message will not be accepted, do not retry it."""

    kind = "smtp_permanent"


@dataclass(repr=False)
class SmtpSettings:
    """Where and how to hand outgoing mail to the SMTP server."""

    host: str
    port: int
    security: str  # "starttls" | "ssl" | "none" (the caller allows "none" for loopback only)
    username: str | None = None
    password: str | None = None
    access_token: str | None = None  # OAuth: AUTH XOAUTH2 instead of the password
    ca_bundle: str | None = None  # MAIL_CA_BUNDLE: extra PEM CAs beside the system CAs
    timeout: float = 30.0
    local_hostname: str | None = None  # EHLO name; None lets smtplib use this host's FQDN
    allow_plaintext_login: bool = False  # security "none": log in unencrypted if asked to

    def __post_init__(self) -> None:
        if self.security not in SECURITY:
            raise ValueError(f"security must be one of {SECURITY}, not {self.security!r}")
        if self.access_token and not self.username:
            raise ValueError("XOAUTH2 needs the username the access token belongs to")

    def __repr__(self) -> str:
        secret = "access_token=***" if self.access_token else "password=***"
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, {secret})"
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SendResult:
    """The sent Message-ID, the server's final reply, and recipients it refused (if others took it)."""

    message_id: str
    server_reply: str
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)


# -- sending ---------------------------------------------------------------------------


def send_message(
    settings: SmtpSettings, msg: EmailMessage, envelope_from: str, recipients: list[str]
) -> SendResult:
    """Send msg to the recipients (adds a Message-ID if it has none); raise a MailError."""
    s = settings
    recipients = list(dict.fromkeys(recipients))
    _check_envelope(envelope_from, recipients)
    if msg["Message-ID"] is None:
        msg["Message-ID"] = new_message_id(envelope_from.rpartition("@")[2] or s.host)
    utf8 = not (envelope_from.isascii() and all(r.isascii() for r in recipients))
    data = _flatten(msg, utf8)
    context = tls_context(s.ca_bundle)
    smtp = _connect(s, context)
    try:
        with _classified(s, connected=True):
            _secure_and_login(smtp, s, context)
            reply, refused = _transaction(smtp, s, envelope_from, recipients, data, utf8)
    except BaseException:
        smtp.close()
        raise
    with contextlib.suppress(smtplib.SMTPException, OSError):  # the message is accepted
        smtp.quit()
    return SendResult(str(msg["Message-ID"]).strip(), _reply_text(reply, s), refused)


def _check_envelope(envelope_from: str, recipients: list[str]) -> None:
    if not recipients:
        raise ValueError("send_message needs at least one recipient")
    for address in [envelope_from, *recipients]:
        if (
            CONTROL_CHARACTERS.search(address)
            or re.search(r"[\s<>]", address)
            or "@" not in address
        ):
            raise ValueError(f"{address!r} is not a bare envelope address")


def _flatten(msg: EmailMessage, utf8: bool) -> bytes:
    copy = copy_module.copy(msg)  # shallow: del below rebinds the header list, msg keeps its own
    del copy["Bcc"], copy["Resent-Bcc"]  # never reveal blind copies
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=msg.policy.clone(utf8=utf8)).flatten(
        copy, linesep="\r\n"
    )
    return out.getvalue()


def _connect(s: SmtpSettings, context: ssl.SSLContext) -> smtplib.SMTP:
    try:
        valid = bool(s.host.strip()) and bool(s.host.encode("idna"))
    except UnicodeError:
        valid = False
    if not valid:
        raise HostNotFound(f"The host name {s.host!r} is not valid.", "Check the host field.")
    with _classified(s, connected=False):  # the constructor connects and reads the greeting
        if s.security == "ssl":
            return smtplib.SMTP_SSL(s.host, s.port, s.local_hostname, timeout=s.timeout,
                                    context=context)  # fmt: skip
        return smtplib.SMTP(s.host, s.port, s.local_hostname, timeout=s.timeout)


def _secure_and_login(smtp: smtplib.SMTP, s: SmtpSettings, context: ssl.SSLContext) -> None:
    smtp.ehlo_or_helo_if_needed()
    if s.security == "starttls":
        if not smtp.has_extn("starttls"):
            raise MechanismNotOffered(
                f"The server at {s.where} did not offer encryption (STARTTLS), so the password "
                "was not sent and no mail went out unencrypted.",
                f"Use SSL if the server has a TLS port ({PORT_HINTS['smtp']}), or check host and port.",
            )
        smtp.starttls(context=context)
        smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("auth"):
        return  # nothing to log in to: a relay that accepts us as we are
    has_secret = bool(s.access_token) or (bool(s.username) and s.password is not None)
    if s.security == "none" and has_secret and not s.allow_plaintext_login:
        secret = "access token" if s.access_token else "SMTP password"
        raise EncryptionMissing(
            f"SMTP Security is None, so the {secret} was not sent to {s.where} unencrypted.",
            "Choose STARTTLS or SSL/TLS; or, for a relay on this machine that wants a login, "
            "tick “Allow login without encryption” for this mailbox.",
        )
    if s.access_token:
        _xoauth2(smtp, s)
    elif s.username and s.password is not None:
        _login(smtp, s)


def _xoauth2(smtp: smtplib.SMTP, s: SmtpSettings) -> None:
    if "XOAUTH2" not in smtp.esmtp_features.get("auth", "").upper().split():
        raise xoauth2_missing(s.where)
    raw = f"user={s.username}\x01auth=Bearer {s.access_token}\x01\x01"
    code, reply = smtp.docmd("AUTH", "XOAUTH2 " + base64.b64encode(raw.encode()).decode())
    if code == 334:  # the error details come as a challenge; an empty line ends the exchange
        code, reply = smtp.docmd("")
    if code != 235:
        raise _auth_error(code, s)


def _login(smtp: smtplib.SMTP, s: SmtpSettings) -> None:
    assert s.username is not None and s.password is not None
    if not (s.username.isascii() and s.password.isascii()):
        _plain_utf8(smtp, s)  # smtplib encodes credentials as ASCII; SASL PLAIN is UTF-8
        return
    try:
        smtp.login(s.username, s.password)
    except smtplib.SMTPAuthenticationError as exc:
        raise _auth_error(exc.smtp_code, s) from exc
    except smtplib.SMTPException as exc:  # "No suitable authentication method found."
        raise MechanismNotOffered(
            f"The server at {s.where} offers no login method this app supports (PLAIN, LOGIN).",
            "Check host and port, or use OAuth if the provider offers it.",
        ) from exc


def _plain_utf8(smtp: smtplib.SMTP, s: SmtpSettings) -> None:
    if "PLAIN" not in smtp.esmtp_features.get("auth", "").upper().split():
        raise MechanismNotOffered(
            f"The server at {s.where} offers no login that accepts non-ASCII user names or "
            "passwords (AUTH PLAIN).",
            "Use ASCII characters in the password, or OAuth if the provider offers it.",
        )
    raw = f"\0{s.username}\0{s.password}".encode()
    code, _ = smtp.docmd("AUTH", "PLAIN " + base64.b64encode(raw).decode())
    if code != 235:
        raise _auth_error(code, s)


def _auth_error(code: int, s: SmtpSettings) -> MailError:
    if code == 538:
        return plaintext_refused(s.where, "smtp")
    hint = b"[UNAVAILABLE]" if 400 <= code < 500 else b""
    return auth_failed(s.where, bool(s.access_token), hint)


def _transaction(
    smtp: smtplib.SMTP, s: SmtpSettings, sender: str, recipients: list[str], data: bytes,
    utf8: bool,
) -> tuple[bytes, dict[str, tuple[int, str]]]:  # fmt: skip
    options = []
    if utf8:
        if not smtp.has_extn("smtputf8"):
            raise PermanentFailure(
                f"The server at {s.where} does not accept internationalized addresses.",
                "Write to an address in ASCII characters.",
            )
        options = ["SMTPUTF8", "BODY=8BITMIME"]
    code, reply = smtp.mail(sender, options)
    if code != 250:
        raise _reply_error(code, reply, s, f"the sender address {sender}")
    refused: dict[str, tuple[int, str]] = {}
    for rcpt in recipients:
        code, reply = smtp.rcpt(rcpt)
        if code == 421:
            raise _reply_error(code, reply, s, f"the recipient {rcpt}")
        if code not in (250, 251):
            refused[rcpt] = (code, _reply_text(reply, s))
    if len(refused) == len(recipients):
        code, text = next((r for r in refused.values() if r[0] < 500), refused[recipients[0]])
        raise _reply_error(code, text.encode(), s, "the recipients " + ", ".join(recipients))
    code, reply = smtp.data(data)
    if code != 250:
        raise _reply_error(code, reply, s, "the message")
    return reply, refused


def _reply_text(reply: bytes | str, s: SmtpSettings) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    for secret in (s.password, s.access_token):
        if secret and len(secret) > 3:
            text = text.replace(secret, "***")
    return " ".join(text.split())[:_REPLY_LIMIT]


def _reply_error(code: int, reply: bytes | str, s: SmtpSettings, what: str) -> MailError:
    """A classified error for an SMTP reply code; the reply text goes to .server_reply only."""
    text = _reply_text(reply, s)
    if code == 530:
        return AuthFailed(
            f"The server at {s.where} requires a login or encryption before it accepts {what}.",
            "Use STARTTLS or SSL and enter the SMTP login; many servers offer login only over TLS.",
            kind="auth_required",
        )
    if 400 <= code < 500:
        return TemporaryFailure(
            f"The server at {s.where} did not accept {what} for now (reply {code}).",
            "The message stays queued and is sent again later.",
            code=code,
            server_reply=text,
        )
    if 500 <= code < 600:
        return PermanentFailure(
            f"The server at {s.where} refused {what} (reply {code}).",
            "The message was not sent and will not be retried; the server's reply says why.",
            code=code,
            server_reply=text,
        )
    return ProtocolError(
        f"The server at {s.where} gave an unexpected answer ({code}) to {what}.",
        f"Check that the port belongs to SMTP: {PORT_HINTS['smtp']}.",
    )


def _temporary(s: SmtpSettings, what: str) -> TemporaryFailure:
    return TemporaryFailure(
        f"The server at {s.where} {what} during the send.",
        "The message stays queued and is sent again later; if it keeps failing, check port "
        f"and security ({PORT_HINTS['smtp']}).",
    )


@contextlib.contextmanager
def _classified(s: SmtpSettings, connected: bool) -> Iterator[None]:
    """Re-raise smtplib, socket and TLS exceptions as MailError subclasses."""
    try:
        yield
    except MailError:
        raise
    except ssl.SSLError as exc:
        raise _network(exc, s) from exc
    except smtplib.SMTPServerDisconnected as exc:
        if isinstance(exc.__context__, TimeoutError):  # smtplib's wording for a read timeout
            raise _timeout(exc.__context__, s, connected) from exc
        raise _temporary(s, "closed the connection") from exc
    except smtplib.SMTPResponseException as exc:  # greeting, EHLO, STARTTLS, DATA
        what = "the connection" if isinstance(exc, smtplib.SMTPConnectError) else "the command"
        raise _reply_error(exc.smtp_code, exc.smtp_error, s, what) from exc
    except smtplib.SMTPException as exc:
        raise ProtocolError(
            f"The server at {s.where} did not answer in the SMTP protocol.",
            f"Check that the port belongs to SMTP: {PORT_HINTS['smtp']}.",
        ) from exc
    except TimeoutError as exc:
        raise _timeout(exc, s, connected) from exc
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, EOFError) as exc:
        raise _temporary(s, "closed the connection") from exc
    except OSError as exc:
        raise _network(exc, s) from exc


def _timeout(exc: TimeoutError, s: SmtpSettings, connected: bool) -> MailError:
    if connected:
        return _temporary(s, "stopped answering")
    return _network(exc, s)  # ConnectionTimedOut: its advice (host, port, firewall) fits better


def _network(exc: OSError, s: SmtpSettings) -> MailError:
    return from_network_error(exc, s.host, s.port, "smtp") or _temporary(s, "failed")
