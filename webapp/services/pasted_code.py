"""The manual fallback: a pasted code, or the whole address the provider sent the browser to.

Every code we ask for is asked for with PKCE (S256), so a pasted code is exchanged with the
verifier of the authorization it came from: the one its state names, or, for a bare code,
this user's latest unexpired authorization of the mailbox. No Flask here.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

from sqlmodel import Session, select

from webapp import crypto
from webapp.db import utcnow
from webapp.models import Mailbox, OAuthAuthorization
from webapp.services import oauth


def extract_code(pasted: str) -> tuple[str, str | None]:
    """The code (and state) from a pasted code or a pasted redirected URL."""
    pasted = pasted.strip()
    if "code=" in pasted:
        query = parse_qs(urlsplit(pasted).query or pasted.lstrip("?"))
        if "error" in query:
            raise oauth.OAuthFailed(
                oauth.provider_error(
                    query["error"][0], (query.get("error_description") or [None])[0]
                )
            )
        if "code" in query:
            return query["code"][0], (query.get("state") or [None])[0]
    return pasted, None


def exchange_pasted(
    db: Session,
    mailbox: Mailbox,
    pasted: str,
    nonces: list[str],
    user_id: int | None,
) -> Mailbox:
    """The fallback: a pasted code or whole URL, exchanged once."""
    try:
        code, state = extract_code(pasted)
        pending = _pending_for(db, mailbox, code, state, nonces, user_id)
    except oauth.OAuthFailed:
        mailbox.auth_code_enc = None  # a code that cannot be exchanged is not kept either
        db.add(mailbox)
        db.commit()
        raise
    verifier = crypto.decrypt(pending.code_verifier_enc)
    oauth.exchange_code(
        db, mailbox, code, verifier, pending.token_url, pending.redirect_uri, actor=user_id
    )
    return mailbox


def _pending_for(
    db: Session,
    mailbox: Mailbox,
    code: str,
    state: str | None,
    nonces: list[str],
    user_id: int | None,
) -> OAuthAuthorization:
    """The authorization a pasted code belongs to: the one its state names, else the latest."""
    if state is None:  # a bare code: it was asked for with PKCE by this user's latest start
        pending = _take_latest_pending(db, mailbox, user_id, code)
    else:
        pending = oauth.take_pending(db, state, nonces, user_id)
        if pending.mailbox_id != mailbox.id:
            raise oauth.OAuthFailed(
                "This code was issued for another mailbox. Paste the code of this "
                "mailbox's authorization.",
                kind="state_mailbox",
            )
    return pending


def _take_latest_pending(
    db: Session, mailbox: Mailbox, user_id: int | None, code: str
) -> OAuthAuthorization:
    """The latest unexpired authorization of this mailbox that this user started, used once."""
    if mailbox.used_code_sha256 and secrets.compare_digest(
        mailbox.used_code_sha256, oauth.code_digest(code)
    ):
        raise oauth.OAuthFailed(
            "This authorization code was already used. A code works only once: press “Get "
            "Authorization Code” for a new one.",
            kind="code_used",
            mailbox_id=mailbox.id,
        )
    pending = db.exec(
        select(OAuthAuthorization)
        .where(
            OAuthAuthorization.mailbox_id == mailbox.id,
            OAuthAuthorization.user_id == user_id,
            OAuthAuthorization.expires_at > utcnow(),
        )
        .order_by(OAuthAuthorization.created_at.desc(), OAuthAuthorization.id.desc())
    ).first()
    if pending is None:
        raise oauth.OAuthFailed(
            "No authorization of this mailbox that you started is waiting for a code, or it "
            "expired. Press “Get Authorization Code” again: a code works once and only for a "
            "few minutes.",
            kind="code_without_authorization",
            mailbox_id=mailbox.id,
        )
    db.delete(pending)
    db.commit()
    return pending
