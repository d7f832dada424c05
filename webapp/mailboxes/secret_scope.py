"""A saved secret goes only where it was meant to go: the form's side of SECRET_SCOPE.

When the host or URL a saved secret is sent to changes, the secret is dropped on save
(services/mailboxes.py); the form says so next to the field and asks for it again.
"""

from __future__ import annotations

from wtforms import PasswordField
from wtforms.widgets import PasswordInput

from webapp.services.mailboxes import SECRET_SCOPE, scope_changed


class SecretField(PasswordField):
    """Never shows a saved secret; a value typed in this very request is kept on re-render."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("render_kw", {"autocomplete": "new-password"})
        kwargs.setdefault("widget", PasswordInput(hide_value=False))
        super().__init__(*args, **kwargs)


CLEARED = {
    "password": "The password was cleared because Host changed; enter it again.",
    "smtp_password": "The SMTP password was cleared because SMTP Host changed; enter it again.",
    "client_secret": (
        "The client secret was cleared because Access Token URL changed; enter it again."
    ),
}
# A Basic mailbox without an SMTP password sends with its own password: a new SMTP Host
# would receive that saved password unless it is entered again.
SMTP_FALLBACK = (
    "SMTP Host changed: enter the SMTP password (or the Password above) again, so that no "
    "saved password goes to the new server."
)


def moved(form, secret: str) -> bool:
    """True when the saved `secret` is dropped on save because its host or URL changed."""
    return scope_changed(form.mailbox, secret, form[SECRET_SCOPE[secret]].data)


def secret_errors(form, secret: str) -> list[str]:
    """The message next to a secret field left blank after its host or URL changed."""
    if form[secret].data:
        return []
    oauth = form.auth_type.data == "oauth"
    sends = bool((form.smtp_host.data or "").strip())
    needed = {"password": not oauth, "client_secret": oauth, "smtp_password": sends and not oauth}
    needed = needed[secret]
    if needed and moved(form, secret):
        return [CLEARED[secret]]
    if secret == "smtp_password" and not oauth and _fallback_moves(form):
        return [SMTP_FALLBACK]
    return []


def _fallback_moves(form) -> bool:
    box = form.mailbox
    if box is None or box.id is None or box.smtp_password_enc or not box.password_enc:
        return False
    new_host = (form.smtp_host.data or "").strip().lower()
    return (
        bool(new_host)
        and new_host != (box.smtp_host or "").strip().lower()
        and not (form.password.data)
    )
