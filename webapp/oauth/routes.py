"""OAuth: send the admin to the provider, and take the code when the provider sends them back."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, request, url_for

from webapp.models import Mailbox
from webapp.oauth.nonces import remember_nonce, session_nonces
from webapp.services import oauth
from webapp.services.fetching import verify

bp = Blueprint("oauth", __name__)


@bp.route("/mailboxes/<int:mailbox_id>/authorize", methods=["POST"])
def authorize(mailbox_id: int):
    """Get Authorization Code: to the provider with state and PKCE."""
    mailbox = g.db.get(Mailbox, mailbox_id)
    if mailbox is None:
        abort(404)
    if mailbox.auth_type != "oauth" or not (
        mailbox.client_id and mailbox.auth_url and mailbox.token_url
    ):
        flash(
            "Set Authentication Type to OAuth and fill in Client ID, Client Secret, Scope, Auth URL "
            "and Access Token URL first.",
            "error",
        )
        return redirect(url_for("mailboxes.edit", mailbox_id=mailbox_id))
    settings = current_app.config["SETTINGS"]
    url, nonce = oauth.start_authorization(g.db, mailbox, g.user.id, settings.redirect_uri)
    remember_nonce(nonce)
    return redirect(url, code=303)


@bp.route("/oauth/callback")
def callback():
    """The provider's redirect: exchange the code, then verify the mailbox with the new token."""
    state = request.args.get("state", "")
    try:
        mailbox = oauth.complete_authorization(
            g.db,
            state,
            request.args.get("code"),
            request.args.get("error"),
            request.args.get("error_description"),
            session_nonces(),
            g.user.id,
        )
    except oauth.OAuthFailed as exc:
        flash(exc.message, "error")
        return redirect(
            url_for("mailboxes.show", mailbox_id=exc.mailbox_id)
            if exc.mailbox_id
            else url_for("mailboxes.index")
        )
    flash("Authorized. Checking the mailbox with the new token…", "ok")
    settings = current_app.config["SETTINGS"]
    verify.request_verification(g.db, mailbox, settings.redis_url, settings.queue_name)
    return redirect(url_for("mailboxes.setup", mailbox_id=mailbox.id))
