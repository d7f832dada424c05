"""Provider presets: the real values Google and Microsoft publish."""

from __future__ import annotations

DEFAULT_PORTS = {"imaps": 993, "pop3s": 995, "imap": 143, "pop3": 110}
SMTP_SECURITY_LABELS = {"starttls": "STARTTLS", "ssl": "SSL/TLS", "none": "None"}
PROTOCOL_LABELS = {
    "imaps": "IMAPS (IMAP over TLS)",
    "pop3s": "POP3S (POP3 over TLS)",
    "imap": "IMAP (STARTTLS, or plain text: not recommended)",
    "pop3": "POP3 (STARTTLS, or plain text: not recommended)",
}
AFTER_FETCH_LABELS = {
    "leave": "Leave on server",
    "read": "Mark as read",
    "move": "Move to folder",
    "delete": "Delete from server",
}
POP3_AFTER_FETCH = ("leave", "delete")  # POP3 has no flags and no folders
FETCH_INTERVAL_MINUTES = (1, 2, 5, 10, 15, 30, 60)

MS_AUTH = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"
MS_TOKEN = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"

PRESETS: dict[str, dict] = {
    "gmail": {
        "hosts": {
            "imaps": "imap.gmail.com",
            "imap": "imap.gmail.com",
            "pop3s": "pop.gmail.com",
            "pop3": "pop.gmail.com",
        },
        # https://mail.google.com/ covers IMAP, POP3 and SMTP alike.
        "scope": {"imap": "https://mail.google.com/", "pop3": "https://mail.google.com/"},
        "auth_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "token_url": "https://oauth2.googleapis.com/token",
        "smtp_host": "smtp.gmail.com",
        "smtp_port": 587,
        "smtp_security": "starttls",
    },
    "outlook": {
        "hosts": {p: "outlook.office365.com" for p in DEFAULT_PORTS},
        "scope": {
            "imap": "https://outlook.office.com/IMAP.AccessAsUser.All "
            "https://outlook.office.com/SMTP.Send offline_access",
            "pop3": "https://outlook.office.com/POP.AccessAsUser.All "
            "https://outlook.office.com/SMTP.Send offline_access",
        },
        "auth_url": MS_AUTH,
        "token_url": MS_TOKEN,
        "smtp_host": "smtp.office365.com",
        "smtp_port": 587,
        "smtp_security": "starttls",
    },
}


def protocol_family(protocol: str) -> str:
    return "pop3" if protocol.startswith("pop3") else "imap"


def preset_values(provider: str, protocol: str, tenant: str = "common") -> dict:
    """Field values a preset fills in for the chosen protocol; {} for Other."""
    preset = PRESETS.get(provider)
    if preset is None:
        return {}
    tenant = (tenant or "common").strip() or "common"
    protocol = protocol if protocol in DEFAULT_PORTS else "imaps"
    return {
        "host": preset["hosts"][protocol],
        "port": DEFAULT_PORTS[protocol],
        "scope": preset["scope"][protocol_family(protocol)],
        "auth_url": preset["auth_url"].format(tenant=tenant),
        "token_url": preset["token_url"].format(tenant=tenant),
        "smtp_host": preset["smtp_host"],
        "smtp_port": preset["smtp_port"],
        "smtp_security": preset["smtp_security"],
    }


# Host names of the two providers that refuse passwords (Basic authentication) for mail.
REFUSING_HOSTS = {
    "Google": ("gmail.com", "googlemail.com", "google.com"),
    "Microsoft": ("office365.com", "outlook.com", "hotmail.com", "live.com", "office.com"),
}
PRESET_OWNERS = {"gmail": "Google", "outlook": "Microsoft"}


def password_refusing_provider(provider: str | None, host: str | None) -> str | None:
    """Google or Microsoft when the preset or the host says the mailbox is theirs, else None."""
    if provider in PRESET_OWNERS:
        return PRESET_OWNERS[provider]
    host = (host or "").strip().lower().rstrip(".")
    for owner, domains in REFUSING_HOSTS.items():
        if any(host == d or host.endswith("." + d) for d in domains):
            return owner
    return None


# The provider radio buttons at the top of the mailbox form, in the order shown.
PROVIDER_LABELS = {
    "gmail": "Gmail",
    "outlook": "Microsoft 365",
    "other": "Another IMAP or POP3 server",
}


def default_auth_type(provider: str | None) -> str:
    """Gmail and Microsoft 365 refuse passwords: their mailboxes start on OAuth."""
    return "oauth" if provider in PRESET_OWNERS else "basic"


# Mailbox Setup's "Edit settings": the form field a failed check points at, by error kind.
_FIELD_BY_KIND = {
    "auth": "password",
    "auth_in_use": "username",
    "auth_password_refused": "auth_type",
    "secret": "password",
    "host_not_found": "host",
    "host_unreachable": "host",
    "tls_hostname": "host",
    "tls_untrusted": "host",
    "connection_refused": "port",
    "timeout": "port",
    "tls": "port",
    "protocol": "protocol",
    "mechanism": "auth_type",
    "plaintext_refused": "protocol",
    "encryption_missing": "protocol",
    "folder_not_found": "folders",
}


def failing_field(kind: str | None, auth_type: str) -> str | None:
    """The form field to open at for a failed check of this kind; None when no field is to blame."""
    if not kind:
        return None
    if kind == "auth" and auth_type == "oauth":
        return "client_id"
    if kind in _FIELD_BY_KIND:
        return _FIELD_BY_KIND[kind]
    oauth_kinds = ("oauth", "reauth_needed", "exchange_failed", "refresh_failed")
    if kind in oauth_kinds or kind.startswith(("state_", "provider_")):
        return "client_id"
    return None
