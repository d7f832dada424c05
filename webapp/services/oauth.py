"""OAuth 2.0 for mailboxes (RFC 9700): authorize with PKCE, exchange, store encrypted, refresh.

No Flask here. The web layer calls start_authorization and complete_authorization (a pasted code goes
through services/pasted_code.py); the worker calls access_token_for before every XOAUTH2 login.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
from datetime import datetime, timedelta

from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy import or_, update
from sqlmodel import Session, select

from webapp import crypto
from webapp.db import utcnow
from webapp.models import Mailbox, OAuthAuthorization
from webapp.services.access import audit

log = logging.getLogger(__name__)

PENDING_LIFETIME = timedelta(minutes=10)
REFRESH_MARGIN = timedelta(minutes=5)
LOCK_SECONDS = 30
HTTP_TIMEOUT = 20


class OAuthFailed(Exception):
    """An authorization or a token request failed; message says what and what to do."""

    def __init__(self, message: str, kind: str = "oauth", mailbox_id: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.mailbox_id = mailbox_id


class ReauthNeeded(OAuthFailed):
    """The provider refused the refresh token: a person has to authorize again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="reauth_needed")


def is_google(mailbox: Mailbox) -> bool:
    return mailbox.provider == "gmail" or "accounts.google.com" in (mailbox.auth_url or "")


def _client(mailbox: Mailbox, redirect_uri: str | None = None) -> OAuth2Session:
    return OAuth2Session(
        client_id=mailbox.client_id,
        client_secret=crypto.decrypt(mailbox.client_secret_enc),
        scope=mailbox.scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_post",
        default_timeout=HTTP_TIMEOUT,
    )


def start_authorization(
    db: Session, mailbox: Mailbox, user_id: int, redirect_uri: str
) -> tuple[str, str]:
    """Record a pending authorization; return (provider URL, session nonce for the cookie)."""
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)[:96]
    nonce = secrets.token_urlsafe(24)
    extra = {"login_hint": mailbox.email_address}
    if is_google(mailbox):
        extra.update(access_type="offline", prompt="consent")
    url, _ = _client(mailbox, redirect_uri).create_authorization_url(
        mailbox.auth_url, state=state, code_verifier=verifier, **extra
    )
    db.add(
        OAuthAuthorization(
            state=state,
            mailbox_id=mailbox.id,
            user_id=user_id,
            session_nonce=nonce,
            code_verifier_enc=crypto.encrypt(verifier),
            token_url=mailbox.token_url,
            redirect_uri=redirect_uri,
            expires_at=utcnow() + PENDING_LIFETIME,
        )
    )
    db.commit()
    return url, nonce


def forget_expired_authorizations(db: Session) -> int:
    """Delete pending authorizations nobody came back for (the sweep calls this)."""
    rows = db.exec(select(OAuthAuthorization).where(OAuthAuthorization.expires_at < utcnow())).all()
    for row in rows:
        db.delete(row)
    db.commit()
    return len(rows)


def take_pending(
    db: Session, state: str, nonces: list[str], user_id: int | None
) -> OAuthAuthorization:
    """Find and delete the pending record for state: it can be used exactly once."""
    pending = db.exec(select(OAuthAuthorization).where(OAuthAuthorization.state == state)).first()
    if pending is None:
        raise OAuthFailed(
            "This authorization is unknown or was already used. Click “Get Authorization Code” again.",
            kind="state_unknown",
        )
    db.delete(pending)
    db.commit()
    if pending.session_nonce not in nonces or (user_id is not None and pending.user_id != user_id):
        raise OAuthFailed(
            "This authorization was started in another browser session. Start it again from the "
            "mailbox page.",
            kind="state_session",
            mailbox_id=pending.mailbox_id,
        )
    if pending.expires_at < utcnow():
        raise OAuthFailed(
            "The authorization took longer than 10 minutes and expired. Click “Get Authorization "
            "Code” again.",
            kind="state_expired",
            mailbox_id=pending.mailbox_id,
        )
    return pending


def complete_authorization(
    db: Session,
    state: str,
    code: str | None,
    error: str | None,
    error_description: str | None,
    nonces: list[str],
    user_id: int | None,
) -> Mailbox:
    """The callback: everything but the code comes from the pending record (mix-up defence)."""
    pending = take_pending(db, state, nonces, user_id)
    mailbox = db.get(Mailbox, pending.mailbox_id)
    if mailbox is None:
        raise OAuthFailed("The mailbox was deleted while it was being authorized.")
    if error:
        raise OAuthFailed(
            provider_error(error, error_description),
            kind=f"provider_{error}",
            mailbox_id=mailbox.id,
        )
    if not code:
        raise OAuthFailed(
            "The provider sent no authorization code back. Try again.", mailbox_id=mailbox.id
        )
    exchange_code(
        db,
        mailbox,
        code,
        crypto.decrypt(pending.code_verifier_enc),
        pending.token_url,
        pending.redirect_uri,
        actor=user_id,
    )
    return mailbox


def provider_error(error: str, description: str | None) -> str:
    known = {
        "access_denied": "Access was refused on the provider's consent page. Click “Get "
        "Authorization Code” again and choose Allow.",
        "invalid_scope": "The provider refused the Scope. Check the Scope field (the Gmail and "
        "Outlook presets fill in the right one) and the API permissions of your app.",
        "unauthorized_client": "The provider does not allow this app to ask for a code. Check the "
        "app registration (Client ID, allowed grant types).",
    }
    text = known.get(error, f"The provider answered “{error}”.")
    # The description is the provider's own text: shown, but cut short and on one line.
    if description and error not in known:
        text += " " + " ".join(description.split())[:200]
    return text


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def exchange_code(
    db: Session,
    mailbox: Mailbox,
    code: str,
    verifier: str | None,
    token_url: str,
    redirect_uri: str,
    actor: int | None = None,
) -> None:
    client = _client(mailbox, redirect_uri)
    kwargs = {"code_verifier": verifier} if verifier else {}
    mailbox.used_code_sha256 = code_digest(code)  # spent once sent, whatever the provider answers
    try:
        token = client.fetch_token(token_url, code=code, grant_type="authorization_code", **kwargs)
    except Exception as exc:  # authlib raises OAuthError, requests its own; all mean the same here
        log.info("token exchange for mailbox %s failed: %s", mailbox.id, type(exc).__name__)
        mailbox.auth_code_enc = None
        db.add(mailbox)
        db.commit()
        raise OAuthFailed(
            "The authorization code could not be exchanged for a token"
            f"{_reason(exc)}. A code works only once and only for a few minutes: click “Get "
            "Authorization Code” to get a new one.",
            kind="exchange_failed",
            mailbox_id=mailbox.id,
        ) from None
    _store_token(mailbox, token)
    mailbox.auth_code_enc = None
    mailbox.reauth_needed = False
    mailbox.oauth_error = None
    mailbox.oauth_account = _account(token, client) or mailbox.oauth_account
    db.add(mailbox)
    details = {"account": mailbox.oauth_account} if mailbox.oauth_account else None
    audit.record(db, audit.OAUTH_AUTHORIZED, actor, audit.mailbox_target(mailbox), details)
    db.commit()


def _reason(exc: Exception) -> str:
    error = getattr(exc, "error", None)
    return f" (the provider answered “{error}”)" if error else f" ({type(exc).__name__})"


def _store_token(mailbox: Mailbox, token: dict) -> None:
    mailbox.access_token_enc = crypto.encrypt(token["access_token"])
    if token.get("refresh_token"):  # a rotated refresh token replaces the old one atomically
        mailbox.refresh_token_enc = crypto.encrypt(token["refresh_token"])
    expires_at = token.get("expires_at")
    mailbox.token_expires_at = (
        datetime.fromtimestamp(expires_at, tz=utcnow().tzinfo)
        if expires_at
        else utcnow() + timedelta(seconds=int(token.get("expires_in") or 3600))
    )
    mailbox.token_refreshed_at = utcnow()


def _account(token: dict, client: OAuth2Session) -> str | None:
    """Which account the token belongs to: the id_token's email (from the token endpoint over
    TLS, so its claims are read without verifying the signature), else nothing."""
    id_token = token.get("id_token")
    if not id_token:
        return None
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return claims.get("email") or claims.get("preferred_username") or claims.get("upn")


def _try_lock(db: Session, mailbox_id: int, holder: str) -> bool:
    now = utcnow()
    result = db.execute(
        update(Mailbox)
        .where(Mailbox.id == mailbox_id)
        .where(or_(Mailbox.refresh_lock_until.is_(None), Mailbox.refresh_lock_until < now))
        .values(
            refresh_lock_holder=holder, refresh_lock_until=now + timedelta(seconds=LOCK_SECONDS)
        )
    )
    db.commit()
    return result.rowcount == 1


def _unlock(db: Session, mailbox_id: int, holder: str) -> None:
    db.execute(
        update(Mailbox)
        .where(Mailbox.id == mailbox_id, Mailbox.refresh_lock_holder == holder)
        .values(refresh_lock_holder=None, refresh_lock_until=None)
    )
    db.commit()


def refresh(db: Session, mailbox_id: int, stale_token: str | None = None) -> str:
    """Refresh under a per-mailbox lock; a worker that waited uses the token the other one got."""
    holder = secrets.token_hex(8)
    deadline = time.monotonic() + LOCK_SECONDS + 5
    while not _try_lock(db, mailbox_id, holder):
        if time.monotonic() > deadline:
            raise OAuthFailed("Another worker is refreshing this mailbox's token; try again.")
        time.sleep(0.2)
    try:
        mailbox = db.get(Mailbox, mailbox_id)
        db.refresh(mailbox)
        current = crypto.decrypt(mailbox.access_token_enc)
        if current and current != stale_token and not _expiring(mailbox):
            return current  # somebody refreshed while we waited
        if mailbox.reauth_needed or not mailbox.refresh_token_enc:
            raise ReauthNeeded(
                "This mailbox needs to be authorized again: click “Get Authorization Code”."
            )
        client = _client(mailbox)
        try:
            token = client.refresh_token(
                mailbox.token_url, refresh_token=crypto.decrypt(mailbox.refresh_token_enc)
            )
        except Exception as exc:
            refused = REFUSALS.get(getattr(exc, "error", None))
            if refused:
                mailbox.reauth_needed = True
                mailbox.oauth_error = refused
                db.add(mailbox)
                reason = {"provider_error": exc.error}
                audit.record(db, audit.OAUTH_REAUTH, None, audit.mailbox_target(mailbox), reason)
                db.commit()
                raise ReauthNeeded(mailbox.oauth_error) from None
            raise OAuthFailed(
                f"The token could not be refreshed{_reason(exc)}; the next fetch tries again.",
                kind="refresh_failed",
            ) from None
        _store_token(mailbox, token)
        mailbox.oauth_error = None
        db.add(mailbox)
        db.commit()
        return token["access_token"]
    finally:
        _unlock(db, mailbox_id, holder)


# Token endpoint errors that no retry can heal: a person has to act (RFC 6749 §5.2).
REFUSALS = {
    "invalid_grant": "The provider no longer accepts this mailbox's authorization (password "
    "changed, consent revoked or token expired). Click “Get Authorization Code” "
    "to authorize again.",
    "invalid_client": "The provider refused this app's credentials: the Client Secret may have "
    "expired (Microsoft client secrets last at most 24 months) or been replaced. "
    "Enter the new Client Secret under Edit, Save, and authorize again.",
    "unauthorized_client": "The provider no longer allows this app to refresh tokens. Check the "
    "app registration, then authorize again.",
}


def _expiring(mailbox: Mailbox) -> bool:
    return mailbox.token_expires_at is None or mailbox.token_expires_at - utcnow() < REFRESH_MARGIN


def access_token_for(db: Session, mailbox: Mailbox) -> str:
    """A usable access token: the stored one, or a fresh one when it is about to expire."""
    if mailbox.reauth_needed:
        raise ReauthNeeded(
            "This mailbox needs to be authorized again: click “Get Authorization Code”."
        )
    token = crypto.decrypt(mailbox.access_token_enc)
    if token and not _expiring(mailbox):
        return token
    return refresh(db, mailbox.id, stale_token=token)
