"""Saving mailbox settings, where secrets are encrypted and changed OAuth settings drop old tokens."""

from __future__ import annotations

from sqlmodel import Session, func, select

from webapp import crypto
from webapp.db import utcnow
from webapp.mail.folders import same_folder
from webapp.models import EmailTemplate, Mailbox
from webapp.services.validation import folder_names

PLAIN_FIELDS = (
    "name",
    "enabled",
    "description",
    "auth_type",
    "provider",
    "email_address",
    "username",
    "protocol",
    "host",
    "port",
    "allow_plaintext_login",
    "folders",
    "client_id",
    "scope",
    "grant_type",
    "tenant",
    "auth_url",
    "token_url",
    "case_response_template_id",
    "keep_attachments",
    "process_task_replies",
    "end_of_message_marker",
    "allow_new_case",
    "auto_ack_template_id",
    "sender_filter",
    "confirm_unknown_senders",
    "create_new_contact",
)
SECRET_FIELDS = {
    "password": "password_enc",
    "client_secret": "client_secret_enc",
    "auth_code": "auth_code_enc",
}
PLAIN_FIELDS += ("smtp_host", "smtp_port", "smtp_security", "smtp_username")  # Outgoing mail
PLAIN_FIELDS += ("no_new_case_template_id", "authserv_id", "confirmation_hours")  # Filtering
PLAIN_FIELDS += ("max_attachment_bytes",)
PLAIN_FIELDS += (  # Connection: how often and what happens on the server after a fetch
    "fetch_interval_seconds",
    "mark_as_read",
    "delete_after_fetch",
    "move_to_folder",
    "max_message_bytes",
    "fetch_since",
)
SECRET_FIELDS["smtp_password"] = "smtp_password_enc"
# Where each saved secret is sent: when that setting changes, the secret is dropped and must
# be entered again, so that a changed host or URL never receives the old one.
SECRET_SCOPE = {"password": "host", "smtp_password": "smtp_host", "client_secret": "token_url"}
OAUTH_IDENTITY = ("client_id", "scope", "auth_url", "token_url", "client_secret_enc")
CONNECTION = (
    "protocol",
    "host",
    "port",
    "allow_plaintext_login",
    "username",
    "folders",
    "auth_type",
    "password_enc",
    "email_address",
)


def email_taken(db: Session, email: str, exclude_id: int | None = None) -> bool:
    query = select(Mailbox.id).where(Mailbox.email_key == email.strip().lower())
    if exclude_id is not None:
        query = query.where(Mailbox.id != exclude_id)
    return db.exec(query).first() is not None


def default_template_ids(db: Session) -> dict[str, int | None]:
    found = {}
    for kind in ("case_response", "auto_ack"):
        found[kind] = db.exec(
            select(EmailTemplate.id).where(EmailTemplate.kind == kind).order_by(EmailTemplate.id)
        ).first()
    return found


def _place(setting: str, value: str | None) -> str:
    value = (value or "").strip()
    return value if setting == "token_url" else value.lower()  # host names ignore case


def scope_changed(mailbox: Mailbox | None, secret: str, new_place: str | None) -> bool:
    """True when `secret` is saved and the host or URL it goes to would now be new_place."""
    if mailbox is None or mailbox.id is None or not getattr(mailbox, SECRET_FIELDS[secret]):
        return False
    setting = SECRET_SCOPE[secret]
    return _place(setting, getattr(mailbox, setting)) != _place(setting, new_place)


def save_mailbox(db: Session, mailbox: Mailbox | None, data: dict) -> Mailbox:
    """Apply validated form data; a blank secret keeps the saved one, unless the host or URL
    it is sent to changed: then it is dropped."""
    mailbox = mailbox or Mailbox(name="", email_address="", email_key="")
    before = {f: getattr(mailbox, f) for f in OAUTH_IDENTITY + CONNECTION}
    moved = [
        secret
        for secret, setting in SECRET_SCOPE.items()
        if setting in data and scope_changed(mailbox, secret, data[setting])
    ]
    for name in PLAIN_FIELDS:
        if name in data:
            setattr(mailbox, name, data[name])
    mailbox.email_address = mailbox.email_address.strip()
    mailbox.email_key = mailbox.email_address.lower()
    mailbox.username = (mailbox.username or "").strip() or mailbox.email_address
    for field, column in SECRET_FIELDS.items():
        value = data.get(field)
        if value:
            setattr(mailbox, column, crypto.encrypt(value))
        elif field in moved:
            setattr(mailbox, column, None)
    if mailbox.id is not None and any(getattr(mailbox, f) != before[f] for f in OAUTH_IDENTITY):
        drop_tokens(mailbox)
    elif mailbox.id is not None and _place("host", before["host"]) != _place("host", mailbox.host):
        # A new server never sees the token the old one was sent: marked as expiring, it is
        # refreshed at the (unchanged) Access Token URL before the next connection.
        mailbox.token_expires_at = None
    if mailbox.id is None or any(
        getattr(mailbox, f) != before[f] for f in OAUTH_IDENTITY + CONNECTION
    ):
        mailbox.setup_complete = False  # new connection settings must be verified again
    mailbox.updated_at = utcnow()
    db.add(mailbox)
    db.commit()
    db.refresh(mailbox)
    return mailbox


def drop_tokens(mailbox: Mailbox) -> None:
    mailbox.access_token_enc = None
    mailbox.refresh_token_enc = None
    mailbox.token_expires_at = None
    mailbox.oauth_account = None  # whoever authorizes next


def count_mailboxes(db: Session) -> int:
    return db.exec(select(func.count()).select_from(Mailbox)).one()


def choose_folders(db: Session, mailbox: Mailbox, names: list[str]) -> bool:
    """Mailbox Setup's checkboxes: the folders read from now on; True when they changed.

    Like the form, a change must be checked again (and Continue pressed) before fetching.
    ValueError (its message fit to show) when the Move to folder target is among them."""
    chosen = folder_names("\n".join(names))
    target = mailbox.move_to_folder if mailbox.after_fetch == "move" else ""
    if target and any(name.upper() == target.upper() for name in chosen):
        raise ValueError(
            f"{target} is where fetched messages are moved to (After fetching), so it cannot be "
            "read too: untick it, or choose another Move to folder in the form."
        )
    folders = "\n".join(chosen)
    if folders == mailbox.folders:
        return False
    mailbox.folders = folders
    mailbox.setup_complete = False
    mailbox.updated_at = utcnow()
    db.add(mailbox)
    db.commit()
    return True


def folder_choices(mailbox: Mailbox) -> list[dict]:
    """Mailbox Setup's checkboxes: the server's folders from the last check, the chosen ones
    ticked, then chosen folders that the server does not have."""
    chosen = mailbox.folder_list
    rows = [
        {
            "name": f["name"],
            "messages": f["messages"],
            "chosen": any(same_folder(f["name"], name) for name in chosen),
            "missing": False,
        }
        for f in mailbox.server_folders or []
    ]
    for name in chosen:
        if not any(same_folder(row["name"], name) for row in rows):
            rows.append({"name": name, "messages": None, "chosen": True, "missing": True})
    return rows
