"""A connected mailbox: its four sections of settings and its verification state."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from webapp.db import utcnow

DEFAULT_MARKER = "##- Please type your reply above this line -##"
DEFAULT_FETCH_INTERVAL = 60  # seconds
DEFAULT_MAX_MESSAGE_BYTES = 50 * 1024 * 1024


class Mailbox(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)

    # Mailbox Information
    name: str = Field(max_length=120)
    enabled: bool = True
    description: str = Field(default="")
    auth_type: str = Field(default="basic", max_length=16)  # basic | oauth
    provider: str = Field(default="other", max_length=16)  # gmail | outlook | other

    # Connection
    email_address: str = Field(max_length=320)
    email_key: str = Field(max_length=320, unique=True, index=True)  # lowercased, for uniqueness
    username: str = Field(default="", max_length=320)
    password_enc: str | None = None
    protocol: str = Field(default="imaps", max_length=8)  # imaps | pop3s | imap | pop3
    host: str = Field(default="", max_length=255)
    port: int = 993
    # Plain IMAP/POP3 without STARTTLS (and SMTP Security None): send the login anyway.
    allow_plaintext_login: bool = False
    # IMAP: the folders read, one name per line, each with its own cursor (FetchCursor).
    folders: str = Field(default="INBOX", sa_column=Column(Text, nullable=False, default="INBOX"))
    # Nothing received before this day becomes a case (IMAP: SEARCH SINCE; POP3: the Date header).
    fetch_since: date | None = None
    client_id: str = Field(default="", max_length=500)
    client_secret_enc: str | None = None
    scope: str = Field(default="", max_length=1000)
    grant_type: str = Field(default="authorization_code", max_length=32)
    tenant: str = Field(default="common", max_length=120)
    auth_url: str = Field(default="", max_length=1000)
    token_url: str = Field(default="", max_length=1000)
    auth_code_enc: str | None = None
    # SHA-256 of the last code sent to the token endpoint: a code pasted again is told apart
    # from one that no pending authorization is waiting for (the code itself is never kept).
    used_code_sha256: str | None = Field(default=None, max_length=64)
    access_token_enc: str | None = None
    refresh_token_enc: str | None = None
    token_expires_at: datetime | None = None
    oauth_account: str | None = Field(default=None, max_length=320)  # whom the token belongs to
    token_refreshed_at: datetime | None = None
    reauth_needed: bool = (
        False  # the provider refused the refresh token: a person must re-authorize
    )
    oauth_error: str | None = None
    refresh_lock_holder: str | None = Field(default=None, max_length=64)
    refresh_lock_until: datetime | None = None

    # Email Handling
    case_response_template_id: int | None = Field(default=None, foreign_key="email_template.id")
    keep_attachments: bool = True
    max_attachment_bytes: int = 10 * 1024 * 1024  # larger attachments are listed, not kept
    process_task_replies: bool = False
    end_of_message_marker: str = Field(default=DEFAULT_MARKER, max_length=500)

    # Email Filtering
    allow_new_case: bool = True
    auto_ack_template_id: int | None = Field(default=None, foreign_key="email_template.id")
    sender_filter: str = Field(default="")
    confirm_unknown_senders: bool = False
    create_new_contact: bool = True
    # Inbound filtering (models/intake.py): whose Authentication-Results we trust, how long a
    # confirmation link lives, and the template telling a sender that no case was opened.
    authserv_id: str = Field(default="", max_length=255)
    confirmation_hours: int = 72
    no_new_case_template_id: int | None = Field(default=None, foreign_key="email_template.id")

    # Outgoing mail (SMTP): blank username and password mean the mailbox's own login;
    # OAuth mailboxes send with XOAUTH2 and the mailbox's token.
    smtp_host: str = Field(default="", max_length=255)  # blank: this mailbox sends no mail
    smtp_port: int = 587
    smtp_security: str = Field(default="starttls", max_length=16)  # starttls | ssl | none
    smtp_username: str = Field(default="", max_length=320)
    smtp_password_enc: str | None = None

    # Verification (Mailbox Setup) and state
    setup_complete: bool = False  # Continue on Mailbox Setup sets it
    verify_state: str = Field(default="never", max_length=16)  # never|pending|running|ok|error
    verify_step: str = Field(default="", max_length=200)
    verify_requested_at: datetime | None = None
    verified_at: datetime | None = None
    verify_job_id: str | None = Field(default=None, max_length=64)
    message_count: int | None = None  # in the chosen folders (POP3: the maildrop)
    # The last check's list of the server's folders: [{"name": ..., "messages": n}] (IMAP).
    server_folders: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    importable_count: int | None = None  # of message_count, received since fetch_since
    plaintext_warning: bool = False
    last_error_kind: str | None = Field(default=None, max_length=32)
    last_error: str | None = None
    last_error_advice: str | None = None

    # Fetching (turned on by Continue on Mailbox Setup)
    fetching_enabled: bool = False
    fetch_interval_seconds: int = DEFAULT_FETCH_INTERVAL
    mark_as_read: bool = False
    delete_after_fetch: bool = False
    move_to_folder: str = Field(default="", max_length=255)  # blank: messages are not moved
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    fetching_since: datetime | None = None
    initial_fetch_done: bool = (
        False  # until then every fetched message is backlog (no acknowledgement)
    )
    fetch_identity: str | None = Field(
        default=None, max_length=1200
    )  # the account fetching was turned on for (its folders each keep their own cursor)
    fetch_queued_at: datetime | None = None  # a fetch job was enqueued and has not started yet
    fetch_job_id: str | None = Field(default=None, max_length=64)
    next_fetch_due_at: datetime | None = None
    last_fetch_at: datetime | None = None  # last run finished, whatever the outcome
    last_fetch_ok_at: datetime | None = None
    fetch_failures: int = 0  # consecutive failed runs
    last_fetch_error_kind: str | None = Field(default=None, max_length=32)
    last_fetch_error: str | None = None
    last_fetch_error_advice: str | None = None

    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def max_attachment_mb(self) -> int:
        return max(1, self.max_attachment_bytes // (1024 * 1024))

    @property
    def fetch_interval_minutes(self) -> int:
        return max(1, self.fetch_interval_seconds // 60)

    @property
    def max_message_mb(self) -> int:
        return max(1, self.max_message_bytes // (1024 * 1024))

    @property
    def folder_list(self) -> list[str]:
        """The folders read, in order; INBOX when none is set."""
        return [line.strip() for line in (self.folders or "").splitlines() if line.strip()] or [
            "INBOX"
        ]

    @property
    def after_fetch(self) -> str:
        """What a fetch does on the server with what it stored: leave, read, move or delete."""
        if self.delete_after_fetch:
            return "delete"
        if self.move_to_folder:
            return "move"
        return "read" if self.mark_as_read else "leave"

    @property
    def status(self) -> str:
        """One word for the list and the API."""
        if not self.enabled:
            return "disabled"
        if self.auth_type == "oauth" and self.reauth_needed:
            return "re-authorization needed"
        if self.verify_state in ("pending", "running"):
            return "verifying"
        if self.verify_state == "error":
            return "error"
        if self.verify_state == "ok" and self.setup_complete:
            return "active"
        if self.verify_state == "ok":
            return "verified"
        return "not verified"
