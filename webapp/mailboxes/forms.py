"""The mailbox form: four sections, labels exactly as the product names them."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional

from webapp.mailboxes.help import FIELD_HELP
from webapp.mailboxes.secret_scope import SecretField, moved, secret_errors
from webapp.services import validation
from webapp.services.presets import (
    AFTER_FETCH_LABELS,
    DEFAULT_PORTS,
    FETCH_INTERVAL_MINUTES,
    POP3_AFTER_FETCH,
    PRESET_OWNERS,
    PROTOCOL_LABELS,
    PROVIDER_LABELS,
    SMTP_SECURITY_LABELS,
    default_auth_type,
    password_refusing_provider,
    preset_values,
)

MB = 1024 * 1024
AUTO_AUTH_LABEL = "OAuth for Gmail and Microsoft 365, else Basic"
# OAuth settings a provider preset fills in, folded under Advanced.
ADVANCED_NAMES = ("scope", "grant_type", "tenant", "auth_url", "token_url")


def _coerce_id(value):
    return int(value) if value not in (None, "", "None") else None


def _coerce_minutes(value):
    """A number of minutes, or None for anything else (the field then says what to choose)."""
    return int(value) if str(value).isdigit() and len(str(value)) < 6 else None


class DayField(DateField):
    """A date (YYYY-MM-DD, the browser's date picker) whose error says what to type."""

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError as exc:
            raise ValueError(
                "Enter the day as YYYY-MM-DD, or leave it blank to import everything."
            ) from exc


class MailboxForm(FlaskForm):
    # Mailbox Information
    name = StringField(
        "Name", validators=[InputRequired("Give the mailbox a name."), Length(max=120)]
    )
    enabled = BooleanField("Enabled", default=True)
    description = TextAreaField("Description", validators=[Optional(), Length(max=2000)])
    # Blank (a new mailbox): chosen by the provider when the form is posted.
    auth_type = SelectField(
        "Authentication Type",
        choices=[("", AUTO_AUTH_LABEL), ("basic", "Basic"), ("oauth", "OAuth")],
        default="",
    )
    provider = RadioField("Provider", choices=list(PROVIDER_LABELS.items()), default="other")

    # Connection
    email_address = StringField(
        "Email Address", validators=[InputRequired("Enter the mailbox's email address.")]
    )
    username = StringField("Username", validators=[Optional(), Length(max=320)])
    password = SecretField("Password")
    protocol = SelectField("Protocol", choices=list(PROTOCOL_LABELS.items()), default="imaps")
    host = StringField("Host")
    port = IntegerField("Port", default=993, validators=[Optional()])
    allow_plaintext_login = BooleanField("Allow login without encryption", default=False)
    folders = TextAreaField("Folders", default="INBOX", render_kw={"rows": 3})
    fetch_since = DayField("Fetch mail since", validators=[Optional()])
    fetch_interval_minutes = SelectField(
        "Fetch every",
        choices=[(m, f"{m} minute{'s' if m > 1 else ''}") for m in FETCH_INTERVAL_MINUTES],
        coerce=_coerce_minutes,
        default=1,
        validate_choice=False,  # field_errors says what to choose instead of "Not a valid choice"
    )
    after_fetch = SelectField(
        "After fetching",
        choices=list(AFTER_FETCH_LABELS.items()),
        default="leave",
        validate_choice=False,
    )
    move_to_folder = StringField("Move to folder", validators=[Optional(), Length(max=255)])
    max_message_mb = IntegerField("Largest message (MB)", default=50, validators=[Optional()])
    client_id = StringField("Client ID", validators=[Optional(), Length(max=500)])
    client_secret = SecretField("Client Secret")
    scope = StringField("Scope", validators=[Optional(), Length(max=1000)])
    grant_type = SelectField(
        "Grant Type",
        choices=[("authorization_code", "Authorization Code")],
        default="authorization_code",
    )
    tenant = StringField("Tenant", default="common", validators=[Optional(), Length(max=120)])
    auth_url = StringField("Auth URL")
    token_url = StringField("Access Token URL")
    auth_code = SecretField("Authorization Code")

    # Email Handling
    case_response_template_id = SelectField("Case Response Template", coerce=_coerce_id)
    keep_attachments = BooleanField("Attachments", default=True)
    max_attachment_mb = IntegerField(
        "Attachment size limit (MB)", default=10, validators=[Optional()]
    )
    process_task_replies = BooleanField("Process Task Replies", default=False)
    end_of_message_marker = StringField(
        "End of Message Marker", validators=[Optional(), Length(max=500)]
    )

    # Email Filtering
    allow_new_case = BooleanField("Allow New Case to be Created", default=True)
    auto_ack_template_id = SelectField("Auto Acknowledgement Template", coerce=_coerce_id)
    sender_filter = TextAreaField("Sender Email Address Filter", validators=[Optional()])
    confirm_unknown_senders = BooleanField(
        "Prevent spam by sending a confirmation to confirm that sender is a person", default=False
    )
    create_new_contact = BooleanField("Create New Contact", default=True)
    no_new_case_template_id = SelectField("Template when no new case is allowed", coerce=_coerce_id)
    authserv_id = StringField(
        "Trusted Authentication-Results server", validators=[Optional(), Length(max=255)]
    )
    confirmation_hours = IntegerField(
        "Confirmation expires after (hours)", default=72, validators=[Optional()]
    )

    # Outgoing mail
    smtp_host = StringField("SMTP Host", validators=[Optional(), Length(max=255)])
    smtp_port = IntegerField("SMTP Port", default=587, validators=[Optional()])
    smtp_security = SelectField(
        "SMTP Security", choices=list(SMTP_SECURITY_LABELS.items()), default="starttls"
    )
    smtp_username = StringField("SMTP Username", validators=[Optional(), Length(max=320)])
    smtp_password = SecretField("SMTP Password")

    SECRET_NAMES = ("password", "client_secret", "auth_code")
    SECRET_NAMES += ("smtp_password",)
    HELP = FIELD_HELP

    def __init__(self, *args, mailbox=None, templates=(), email_taken=None, focus=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.mailbox = mailbox
        self.focus = focus if focus in self._fields else None  # Edit settings from Mailbox Setup
        if self.is_submitted() and not self.auth_type.data:
            self.auth_type.data = default_auth_type(self.provider.data)
        self._email_taken = email_taken or (lambda _email: False)
        template_choices = [(t.id, t.name) for t in templates]
        self.case_response_template_id.choices = [(None, "— none —")] + template_choices
        self.auto_ack_template_id.choices = [(None, "— no acknowledgement —")] + template_choices
        self.no_new_case_template_id.choices = [(None, "— say nothing —")] + template_choices
        if self.is_pop3:
            self.after_fetch.choices = [(k, AFTER_FETCH_LABELS[k]) for k in POP3_AFTER_FETCH]

    @property
    def auth(self) -> str:
        """basic or oauth: the choice made, or for a new mailbox the one its provider needs."""
        return self.auth_type.data or default_auth_type(self.provider.data)

    @property
    def has_preset(self) -> bool:
        return self.provider.data in PRESET_OWNERS  # Gmail, Microsoft 365

    @property
    def advanced_open(self) -> bool:
        """Advanced is unfolded when no preset fills it in, or when one of its fields needs a look."""
        if not self.has_preset or self.focus in ADVANCED_NAMES:
            return True
        return any(self[name].errors for name in ADVANCED_NAMES)

    def choose_provider(self) -> None:
        """A provider was chosen: its published values, and OAuth for Gmail and Microsoft 365."""
        self.apply_preset()
        if self.has_preset:
            self.auth_type.data = default_auth_type(self.provider.data)

    def apply_preset(self, only_blank: bool = False) -> None:
        """Fill in the provider's published values (only the blank ones when only_blank)."""
        values = preset_values(self.provider.data, self.protocol.data, self.tenant.data)
        for name, value in values.items():
            if only_blank and (self[name].data or name.startswith("smtp_")):
                continue
            self[name].data = value
            self[name].raw_data = [str(value)]

    @property
    def is_pop3(self) -> bool:
        return (self.protocol.data or "").startswith("pop3")

    def secret_saved(self, name: str) -> bool:
        column = {
            "password": "password_enc",
            "client_secret": "client_secret_enc",
            "auth_code": "auth_code_enc",
            "smtp_password": "smtp_password_enc",
        }[name]
        saved = bool(self.mailbox is not None and getattr(self.mailbox, column, None))
        return saved and (name == "auth_code" or not moved(self, name))

    # Per-field checks, also used one field at a time by live validation.
    def field_errors(self, name: str) -> list[str]:
        field = self[name]
        value = field.data
        oauth = self.auth_type.data == "oauth"
        if name == "email_address" and value:
            msg = validation.email_error(value.strip())
            if msg:
                return [msg]
            if self._email_taken(value):
                return ["Another mailbox already uses this email address."]
        if name == "host":
            msg = validation.host_error(value or "")
            return [msg] if msg else []
        if name == "port":
            if value is None and field.raw_data and field.raw_data[0].strip():
                return ["Enter the port as a number between 1 and 65535."]
            msg = validation.port_error(
                value if value is not None else DEFAULT_PORTS.get(self.protocol.data)
            )
            return [msg] if msg else []
        if name in ("password", "client_secret", "smtp_password") and secret_errors(self, name):
            return secret_errors(self, name)
        if name == "password" and not oauth and not value and not self.secret_saved("password"):
            return ["Enter the mailbox password (or an app password)."]
        if oauth and name in ("client_id", "scope") and not (value or "").strip():
            return [f"{field.label.text} is needed for OAuth."]
        if (
            oauth
            and name == "client_secret"
            and not value
            and not self.secret_saved("client_secret")
        ):
            return ["Client Secret is needed for OAuth."]
        if oauth and name in ("auth_url", "token_url"):
            msg = validation.url_error(value or "")
            return [msg] if msg else []
        if name == "sender_filter" and value:
            try:
                validation.parse_sender_filter(value)
            except validation.SenderFilterError as exc:
                return [str(exc)]
        if name == "protocol" and value in ("imap", "pop3"):
            return []
        if name.startswith("smtp_"):
            return self.smtp_errors(name)
        if name == "max_attachment_mb" and value is not None and not 1 <= value <= 1024:
            return ["Enter a size between 1 and 1024 MB."]
        if name == "confirmation_hours" and value is not None and not 1 <= value <= 24 * 60:
            return ["Enter a number of hours between 1 and 1440."]
        if name in ("fetch_interval_minutes", "after_fetch", "move_to_folder", "max_message_mb"):
            return self.fetch_option_errors(name)
        if name == "folders":
            msg = validation.folders_error(value or "")
            return [msg] if msg else []
        return []

    def fetch_option_errors(self, name: str) -> list[str]:
        """Fetch every, After fetching, Move to folder, Largest message (MB)."""
        value = self[name].data
        if name == "fetch_interval_minutes" and value not in FETCH_INTERVAL_MINUTES:
            return ["Choose 1, 2, 5, 10, 15, 30 or 60 minutes."]
        if name == "after_fetch" and value not in AFTER_FETCH_LABELS:
            return ["Choose what happens to a message on the server after fetching."]
        if name == "after_fetch" and self.is_pop3 and value not in POP3_AFTER_FETCH:
            return ["POP3 can only leave messages on the server or delete them."]
        if name == "move_to_folder" and self.after_fetch.data == "move" and not self.is_pop3:
            target = (value or "").strip()
            if not target:
                return ["Enter the folder that fetched messages are moved to."]
            read = validation.folder_names(self.folders.data or "")
            if any(target.upper() == name.upper() for name in read):
                return ["Choose another folder than the ones that are read (Folders)."]
        if name == "max_message_mb":
            raw = self.max_message_mb.raw_data
            if value is None and raw and raw[0].strip():
                return ["Enter the size as a whole number of MB, between 1 and 1024."]
            if value is not None and not 1 <= value <= 1024:
                return ["Enter a size between 1 and 1024 MB."]
        return []

    def smtp_errors(self, name: str) -> list[str]:
        """Outgoing mail: all optional, but a host must be a host and None stays on this machine."""
        host = (self.smtp_host.data or "").strip()
        if name == "smtp_host" and host:
            msg = validation.host_error(host)
            return [msg.replace("imap.example.com", "smtp.example.com")] if msg else []
        if name == "smtp_port":
            field = self.smtp_port
            if field.data is None and field.raw_data and field.raw_data[0].strip():
                return ["Enter the port as a number between 1 and 65535."]
            msg = validation.port_error(field.data if field.data is not None else 587)
            return [msg] if msg else []
        if name == "smtp_security" and self.smtp_security.data == "none" and host:
            if not validation.is_loopback(host):
                return [
                    "None sends mail and password unencrypted: it is only accepted for a server "
                    "on this machine (localhost, 127.0.0.1). Choose STARTTLS or SSL/TLS."
                ]
        return []

    def smtp_warning(self) -> str | None:
        """Shown under SMTP Security when None is chosen (accepted for loopback only)."""
        if self.smtp_security.data == "none":
            return "No encryption: mail and the SMTP password cross the connection in plain text. Only for a relay on this machine."
        return None

    def basic_warning(self) -> str | None:
        """Shown beside Authentication Type when Basic is chosen for a Google or Microsoft host."""
        if self.auth == "oauth":
            return None
        owner = password_refusing_provider(self.provider.data, self.host.data)
        if owner is None:
            return None
        return f"{owner} has deprecated Basic authentication and refuses passwords for its mailboxes: choose OAuth."

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        for name in self._fields:
            if name == "csrf_token":
                continue
            extra = self.field_errors(name)
            if extra:
                self[name].errors = list(self[name].errors) + extra
                ok = False
        return ok

    def cleaned(self) -> dict:
        data = {name: f.data for name, f in self._fields.items() if name != "csrf_token"}
        if data["port"] is None:
            data["port"] = DEFAULT_PORTS[data["protocol"]]
        for name in (
            "name",
            "email_address",
            "username",
            "host",
            "client_id",
            "scope",
            "tenant",
            "auth_url",
            "token_url",
        ):
            data[name] = (data[name] or "").strip()
        data["folders"] = "\n".join(validation.folder_names(data["folders"] or ""))
        data["tenant"] = data["tenant"] or "common"
        data["description"] = data["description"] or ""
        data["sender_filter"] = data["sender_filter"] or ""
        data["end_of_message_marker"] = (data["end_of_message_marker"] or "").strip()
        data["smtp_host"] = (data["smtp_host"] or "").strip()
        data["smtp_username"] = (data["smtp_username"] or "").strip()
        data["smtp_port"] = data["smtp_port"] or 587
        data["authserv_id"] = (data["authserv_id"] or "").strip().lower()
        data["confirmation_hours"] = data["confirmation_hours"] or 72
        data["max_attachment_bytes"] = (data.pop("max_attachment_mb") or 10) * MB
        data["fetch_interval_seconds"] = (data.pop("fetch_interval_minutes") or 1) * 60
        data["max_message_bytes"] = (data.pop("max_message_mb") or 50) * MB
        action = data.pop("after_fetch") or "leave"
        data["mark_as_read"] = action == "read"
        data["delete_after_fetch"] = action == "delete"
        data["move_to_folder"] = (data["move_to_folder"] or "").strip() if action == "move" else ""
        return data

    def validate_url(self, name: str) -> str:
        from flask import url_for

        if self.mailbox is not None and self.mailbox.id:
            return url_for("mailboxes.validate_field", field=name, mailbox_id=self.mailbox.id)
        return url_for("mailboxes.validate_field", field=name)

    def fragment_url(self, part: str) -> str:
        from flask import url_for

        if self.mailbox is not None and self.mailbox.id:
            return url_for("mailboxes.form_fragment", part=part, mailbox_id=self.mailbox.id)
        return url_for("mailboxes.form_fragment", part=part)
