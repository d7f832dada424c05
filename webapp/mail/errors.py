"""Classified mail errors: what failed and what to do, in words the UI can show.

Texts never carry server banners, server responses, passwords or tokens; the
original exception stays on __cause__ for the logs.
"""

from __future__ import annotations

import socket
import ssl

# OpenSSL verify codes (X509_V_ERR_*).
_HOSTNAME_MISMATCH = 62
_IP_MISMATCH = 64
_EXPIRED = 10
_NOT_YET_VALID = 9
_UNTRUSTED = {2, 18, 19, 20, 21, 27}

# OpenSSL reasons seen when the peer does not speak TLS at all.
_NOT_TLS_REASONS = {
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
    "UNKNOWN_PROTOCOL",
    "UNEXPECTED_RECORD",
}

PORT_HINTS = {
    "imap": "port 993 is IMAPS, 143 is IMAP with STARTTLS",
    "pop3": "port 995 is POP3S, 110 is POP3 with STLS",
    "smtp": "port 465 is SMTPS, 587 is SMTP with STARTTLS",
}

_HOST_EXAMPLES = {
    "imap": "for Gmail use imap.gmail.com, for Outlook outlook.office365.com",
    "pop3": "for Gmail use pop.gmail.com, for Outlook outlook.office365.com",
    "smtp": "for Gmail use smtp.gmail.com, for Outlook smtp.office365.com",
}


class MailError(Exception):
    """A classified failure talking to a mail server."""

    kind = "mail"

    def __init__(self, message: str, advice: str = "", kind: str | None = None) -> None:
        super().__init__(message, advice, kind)
        self.message = message
        self.advice = advice
        if kind is not None:
            self.kind = kind

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[MailError], tuple[str, str, str]]:
        return (type(self), (self.message, self.advice, self.kind))


class HostNotFound(MailError):
    kind = "host_not_found"


class HostUnreachable(MailError):
    kind = "host_unreachable"


class ConnectionRefused(MailError):
    kind = "connection_refused"


class ConnectionTimedOut(MailError):
    kind = "timeout"


class TlsFailed(MailError):
    """kind is tls_untrusted, tls_hostname or tls."""

    kind = "tls"


class AuthFailed(MailError):
    kind = "auth"


class ProtocolError(MailError):
    kind = "protocol"


class MechanismNotOffered(MailError):
    kind = "mechanism"


class PlaintextRefused(MailError):
    kind = "plaintext_refused"


class FolderNotFound(MailError):
    kind = "folder_not_found"


class EncryptionMissing(MailError):
    """The server offered no encryption, so no password or token was sent."""

    kind = "encryption_missing"


def family(protocol: str) -> str:
    """imap, pop3 or smtp for a protocol name such as imaps or pop3s."""
    for name in PORT_HINTS:
        if protocol.lower().startswith(name):
            return name
    return "imap"


def from_network_error(exc: BaseException, host: str, port: int, protocol: str) -> MailError | None:
    """Classify a socket, DNS or TLS exception; None when it is none of those."""
    where = f"{host}:{port}"
    fam = family(protocol)
    if isinstance(exc, socket.gaierror | UnicodeError):
        if isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN:
            return HostNotFound(
                f"The host {host} could not be looked up: the DNS server did not answer.",
                "Try again in a minute; if it keeps failing, check the server's DNS settings.",
            )
        return HostNotFound(
            f"The host {host} could not be found.",
            f"Check the Host field for typos; {_HOST_EXAMPLES[fam]}.",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate_error(exc, host, where)
    if isinstance(exc, ssl.SSLError):
        if getattr(exc, "reason", None) in _NOT_TLS_REASONS:
            return TlsFailed(
                f"The server did not answer with TLS on port {port}; {PORT_HINTS[fam]}.",
                "Pick the protocol that matches the port (or the port that matches the protocol).",
            )
        if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return TlsFailed(
                f"The server at {where} closed the connection during the TLS handshake.",
                f"Check that the port expects TLS from the start; {PORT_HINTS[fam]}.",
            )
        return TlsFailed(
            f"The TLS handshake with {where} failed.",
            "The server may only offer outdated TLS versions or ciphers; ask its administrator.",
        )
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionRefused(
            f"Nothing accepted the connection on {where}.",
            f"Check the port ({PORT_HINTS[fam]}) and that the server is running.",
        )
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return ConnectionTimedOut(
            f"The server at {where} did not answer in time.",
            "Check host and port and that no firewall blocks the connection; "
            f"a plain-text protocol on a TLS port gets no answer either ({PORT_HINTS[fam]}).",
        )
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError | EOFError):
        return ProtocolError(
            f"The server at {where} closed the connection unexpectedly.",
            "Check that the port and protocol match; if they do, try again later.",
        )
    if isinstance(exc, OSError):
        return HostUnreachable(
            f"The host {host} could not be reached on port {port}.",
            "Check the host name and port, and that this server may connect out to it.",
        )
    return None


def auth_failed(where: str, oauth: bool, server_text: bytes | str = b"") -> AuthFailed:
    """The login was refused; response codes in server_text pick the wording, never its text."""
    text = server_text.encode() if isinstance(server_text, str) else server_text
    if b"[UNAVAILABLE]" in text or b"[SYS/TEMP]" in text:
        return AuthFailed(
            f"The server at {where} could not check the login right now.",
            "Try again in a few minutes.",
            kind="auth_unavailable",
        )
    if b"[IN-USE]" in text:
        return AuthFailed(
            f"The mailbox at {where} is in use by another POP3 session.",
            "Close other mail programs reading this mailbox over POP3, then try again.",
            kind="auth_in_use",
        )
    if oauth:
        return AuthFailed(
            f"The server at {where} rejected the access token.",
            "Authorize the mailbox again (Get Authorization Code) to get a fresh token.",
        )
    return AuthFailed(
        f"The server at {where} rejected the user name or password.",
        "Check the user name (often the full email address) and password; Gmail and "
        "Outlook need an app password or OAuth when 2-step verification is on.",
    )


def no_credentials(username: str) -> AuthFailed:
    """Neither a password nor an access token was given."""
    return AuthFailed(
        f"No password or access token is saved for {username}.",
        "Enter the password (or authorize the mailbox) and save.",
    )


def xoauth2_missing(where: str) -> MechanismNotOffered:
    """The server does not list SASL XOAUTH2."""
    return MechanismNotOffered(
        f"The server at {where} does not offer OAuth login (XOAUTH2).",
        "Use password login for this server, or check host and port.",
    )


def plaintext_refused(where: str, protocol: str) -> PlaintextRefused:
    """The server refuses a password over an unencrypted connection."""
    return PlaintextRefused(
        f"The server at {where} refuses passwords over an unencrypted connection.",
        f"Use the TLS protocol and port ({PORT_HINTS[family(protocol)]}).",
    )


_UPGRADE = {"imap": "STARTTLS", "pop3": "STLS", "smtp": "STARTTLS"}
_TLS_CHOICE = {
    "imap": "Protocol IMAPS (port 993)",
    "pop3": "Protocol POP3S (port 995)",
    "smtp": "SMTP Security SSL/TLS (port 465) or STARTTLS (port 587)",
}


def encryption_missing(where: str, protocol: str, oauth: bool) -> EncryptionMissing:
    """No STARTTLS/STLS on a plain port and no permission to log in unencrypted."""
    fam = family(protocol)
    secret = "access token" if oauth else "password"
    return EncryptionMissing(
        f"The server at {where} did not offer encryption ({_UPGRADE[fam]}), so the {secret} "
        "was not sent.",
        f"Someone on the network may have removed the offer. Choose {_TLS_CHOICE[fam]}. Only if "
        "this server has no encryption at all and the network to it is trusted, tick "
        "“Allow login without encryption” for this mailbox.",
    )


def _certificate_error(exc: ssl.SSLCertVerificationError, host: str, where: str) -> TlsFailed:
    code = exc.verify_code
    if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        return TlsFailed(
            f"The certificate of {where} is not issued for the name {host}.",
            "Use the host name the provider documents (not an IP address or alias); "
            "if it is right, the server is misconfigured.",
            kind="tls_hostname",
        )
    if code in _UNTRUSTED:
        return TlsFailed(
            f"The certificate of {where} is not signed by a trusted authority.",
            "If the server uses a private or self-signed certificate, add its CA to "
            "MAIL_CA_BUNDLE; otherwise check that this is the right server.",
            kind="tls_untrusted",
        )
    if code in (_EXPIRED, _NOT_YET_VALID):
        return TlsFailed(
            f"The certificate of {where} has expired or is not valid yet.",
            "Ask the server's administrator to renew it, and check this machine's clock.",
        )
    return TlsFailed(
        f"The certificate of {where} was rejected.",
        "Ask the server's administrator to check its certificate chain.",
    )
