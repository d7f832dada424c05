"""Mailboxes straight in the database, pointing at the test Dovecot and SMTP server;
fetching them and sending their outbox as the worker would."""

from __future__ import annotations

from sqlmodel import col, select

from tests.helpers.messages import email
from tests.helpers.rows import raw_by_subject
from webapp import crypto
from webapp.db import new_session, utcnow
from webapp.models import Case, Mailbox, RawMessage

PORTS = {"imaps": "imaps_port", "pop3s": "pop3s_port", "imap": "imap_port", "pop3": "pop3_port"}
CASE_RESPONSE_TEMPLATE = 1  # the defaults every fresh install has (migration 0001)
AUTO_ACK_TEMPLATE = 2


def make_mailbox(env: dict, dovecot, user, protocol: str = "imaps", **fields) -> int:
    """A verified, set-up mailbox with fetching on, pointing at the test Dovecot."""
    crypto.configure([env["ENCRYPTION_KEY"]])
    with new_session(env["DATABASE_URL"]) as db:
        box = Mailbox(
            name=f"Box {user.email}",
            email_address=user.email,
            email_key=user.email.lower(),
            username=user.email,
            password_enc=crypto.encrypt(user.password),
            protocol=protocol,
            host="127.0.0.1",
            port=getattr(dovecot, PORTS[protocol]),
            folders="INBOX",
            setup_complete=True,
            verify_state="ok",
            enabled=True,
            fetching_enabled=True,
            fetching_since=utcnow(),
        )
        for name, value in fields.items():
            setattr(box, name, value)
        db.add(box)
        db.commit()
        return box.id


def update_mailbox(env: dict, mailbox_id: int, **fields) -> None:
    with new_session(env["DATABASE_URL"]) as db:
        box = db.get(Mailbox, mailbox_id)
        for name, value in fields.items():
            setattr(box, name, value)
        db.add(box)
        db.commit()


def smtp_fields(smtp_server) -> dict:
    """Outgoing mail to the capturing server: no TLS, accepted because it is on 127.0.0.1."""
    return {"smtp_host": smtp_server.host, "smtp_port": smtp_server.port, "smtp_security": "none"}


def desk(env: dict, dovecot, user, smtp_server, **fields) -> int:
    """A set-up mailbox past its first fetch (new mail is not backlog) that sends to smtp_server."""
    values = {"initial_fetch_done": True, "name": "Support", **smtp_fields(smtp_server)}
    values.update(fields)
    return make_mailbox(env, dovecot, user, **values)


def replying_desk(env: dict, dovecot, user, smtp_server, **fields) -> int:
    """A desk that answers with the default case response template."""
    return desk(
        env, dovecot, user, smtp_server, case_response_template_id=CASE_RESPONSE_TEMPLATE, **fields
    )


def fetch(env: dict, mailbox_id: int) -> dict:
    """Run the fetch job's function in this process, as an RQ worker would."""
    from worker.jobs import fetch_mailbox

    return fetch_mailbox(mailbox_id)


def deliver_and_fetch(env, box: int, user, subject: str, **kwargs) -> RawMessage:
    """Deliver one email to the mailbox, fetch it, return its raw row."""
    kwargs.setdefault("to", user.email)
    user.deliver(email(subject, **kwargs))
    result = fetch(env, box)
    assert result["state"] == "ok", result
    return raw_by_subject(env, subject)


def open_case(env: dict, box: int, user, subject: str = "Printer jammed", **kwargs) -> Case:
    """Deliver one email to the mailbox, fetch it, return the case it opened."""
    kwargs.setdefault("sender", "Ada Lovelace <ada@example.org>")
    user.deliver(email(subject, to=user.email, **kwargs))
    result = fetch(env, box)
    assert result["state"] == "ok", result
    with new_session(env["DATABASE_URL"]) as db:
        return db.exec(select(Case).order_by(col(Case.id).desc())).first()


def send_due(run_worker) -> None:
    """What the scheduler's outbox tick and a worker do: enqueue due rows, send them."""
    from worker.jobs import dispatch_outbox

    dispatch_outbox()
    run_worker()


def append(dovecot, test_ca, user, raw: bytes, folder: str = "INBOX", received=None) -> None:
    """IMAP APPEND, as a mail client files a message: `received` sets its INTERNALDATE (the
    server's received date, what SEARCH SINCE reads); the folder is created if missing."""
    from imapclient import IMAPClient

    from webapp.mail.connect import tls_context

    context = tls_context(str(test_ca.ca_pem))
    with IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl=True, ssl_context=context) as imap:
        imap.login(user.email, user.password)
        if not imap.folder_exists(folder):
            imap.create_folder(folder)
        imap.append(folder, raw, msg_time=received)


def on_server(dovecot, test_ca, user, folder: str = "INBOX") -> dict[str, tuple] | None:
    """What an IMAP client sees in a folder: subject -> flags; None when the folder is missing."""
    from email import message_from_bytes

    from imapclient import IMAPClient

    from webapp.mail.connect import tls_context

    context = tls_context(str(test_ca.ca_pem))
    with IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl=True, ssl_context=context) as imap:
        imap.login(user.email, user.password)
        if not imap.folder_exists(folder):
            return None
        imap.select_folder(folder, readonly=True)
        found = imap.fetch(imap.search("ALL"), [b"FLAGS", b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        return {
            message_from_bytes(data[b"BODY[HEADER.FIELDS (SUBJECT)]"])["Subject"]: data[b"FLAGS"]
            for data in found.values()
        }
