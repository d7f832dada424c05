"""What filing reads about rows other than the message being filed, and a batch cache of it.

Filing a message asks the same few questions: which case holds the Message-IDs it
answers, is the sender a contact, was this raw message held before, does it answer
one of our confirmation mails, which addresses are our own. `Lookups` asks each
question with one query; it is what a message filed on its own uses (Reprocess, a
release from the web, a row of a batch that is filed again alone). A fetch files its
new mail in windows of a few dozen messages: `BatchLookups` asks each question once for
the whole window (one query per kind instead of one per message) and notes what filing
adds meanwhile, so a reply filed after the message it answers, in the same window,
still finds its case.

The lookups are passed explicitly, from the batch (ingest/batch.py) or the row
(ingest/rows.py) down through route.py to the modules that ask or write. The batch's
cache is dropped whenever a savepoint or the transaction rolls back: what it noted may
be gone. It also holds back the writes that nothing reads before the batch commits
(participants, cases moved up the lists) and makes each of them in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import update
from sqlmodel import Session, col, select

from webapp.db import insert_ignore, utcnow
from webapp.models import Case, CaseParticipant, Contact, EmailTemplate, Mailbox, Message
from webapp.models import intake as held_states
from webapp.models.intake import ContactAlias, HeldMessage
from webapp.models.outbox import OutboxMessage
from webapp.services.ingest.copies import Received, lock_and_query

_CHUNK = 500  # values per IN (…): well under every database's limit on parameters


def _answered(
    held: dict[str, list[HeldMessage]], ids: list[str], sender: str
) -> HeldMessage | None:
    """The first of `ids` whose confirmation mail went to `sender`, and its held message."""
    for message_id in ids:
        for row in held.get(message_id, ()):
            if row.sender_key == sender:
                return row
    return None


def _chunks(values: list, size: int = _CHUNK):
    for start in range(0, len(values), size):
        yield values[start : start + size]


class Lookups:
    """One query per question (our own addresses: once per object)."""

    def __init__(self, db: Session) -> None:
        self.db = db
        self._own: set[str] | None = None  # for this object's life: no rollback changes it

    def message_cases(self, ids: list[str]) -> dict[str, int]:
        """Message-ID → case of the messages we hold with these Message-IDs."""
        return self._query_message_cases(ids)

    def outbox_cases(self, ids: list[str]) -> dict[str, int]:
        """Message-ID → case of the mail we sent (or queued) with these Message-IDs."""
        return self._query_outbox_cases(ids)

    def received(self, message_id: str) -> list[Received]:
        """The incoming messages filed with this Message-ID, first filed first; asked under a
        lock on it until the transaction ends (copies.py)."""
        return lock_and_query(self.db, [message_id]).get(message_id, [])

    def case(self, case_id: int) -> Case | None:
        return self.db.get(Case, case_id)

    def case_numbered(self, number: int) -> Case | None:
        """The case with this number (the [#123] token of a subject)."""
        return self.db.exec(select(Case).where(Case.number == number)).first()

    def own(self) -> set[str]:
        """Our mailboxes' addresses: mail from them is a loop, never a requester."""
        if self._own is None:
            self._own = set(self.db.exec(select(Mailbox.email_key)).all())
        return self._own

    def template(self, template_id: int) -> EmailTemplate | None:
        return self.db.get(EmailTemplate, template_id)

    def contact(self, key: str) -> Contact | None:
        """The contact with this lowercased address, or the one it was merged into."""
        return self._query_contacts([key]).get(key)

    def held(self, raw_id: int) -> HeldMessage | None:
        """The HeldMessage row of a raw message that was held or filtered before."""
        return self._query_held([raw_id]).get(raw_id)

    def confirmation(self, ids: list[str], sender: str) -> HeldMessage | None:
        """The held message whose confirmation mail (one of `ids`) `sender` answers."""
        return _answered(self._query_confirmations(ids), ids, sender)

    def participant(self, case_id: int, key: str) -> bool:
        """Whether this lowercased address takes part in the case."""
        query = select(CaseParticipant.id).where(
            CaseParticipant.case_id == case_id, CaseParticipant.email_key == key
        )
        return self.db.exec(query).first() is not None

    def add_participants(self, rows: list[dict]) -> None:
        """Add participants (case_id, email_key, role); one already there stays as it is."""
        if rows:
            self.db.exec(insert_ignore(self.db, CaseParticipant.__table__), params=rows)

    def touch_case(self, case_id: int) -> None:
        """A message was added to the case: it moves up the lists."""
        self.db.exec(
            update(Case.__table__).where(Case.__table__.c.id == case_id).values(updated_at=utcnow())
        )

    def invalidate(self) -> None:
        """A savepoint or the transaction rolled back: forget what may be gone."""

    def noted_message(self, message_id: str | None, case_id: int) -> None:
        """Filing added a message with this Message-ID (flushed)."""

    def noted_case(self, case: Case) -> None:
        """Filing opened this case (flushed)."""

    def noted_received(self, message_id: str | None, message: Received) -> None:
        """Filing added this incoming message (flushed)."""

    def noted_contact(self, key: str, contact: Contact | None) -> None:
        """Filing made (or found) the contact of this address."""

    # -- the queries, for any number of values ------------------------------------------

    def _query_message_cases(self, ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(ids):
            query = select(Message.message_id, Message.case_id).where(
                col(Message.message_id).in_(chunk)
            )
            found.update(dict(self.db.exec(query).all()))
        return found

    def _query_outbox_cases(self, ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(ids):
            query = select(OutboxMessage.message_id, OutboxMessage.case_id).where(
                col(OutboxMessage.message_id).in_(chunk), col(OutboxMessage.case_id).is_not(None)
            )
            found.update(dict(self.db.exec(query).all()))
        return found

    def _query_contacts(self, keys: list[str]) -> dict[str, Contact]:
        found: dict[str, Contact] = {}
        for chunk in _chunks(keys):
            rows = self.db.exec(select(Contact).where(col(Contact.email_key).in_(chunk))).all()
            found.update({row.email_key: row for row in rows})
        # Addresses merged into another contact (services/contacts.py).
        merged = [key for key in keys if key not in found]
        for chunk in _chunks(merged):
            aliases = dict(
                self.db.exec(
                    select(ContactAlias.email_key, ContactAlias.contact_id).where(
                        col(ContactAlias.email_key).in_(chunk)
                    )
                ).all()
            )
            if not aliases:
                continue
            targets = self.db.exec(
                select(Contact).where(col(Contact.id).in_(set(aliases.values())))
            ).all()
            by_id = {contact.id: contact for contact in targets}
            found.update({k: by_id[i] for k, i in aliases.items() if i in by_id})
        return found

    def _query_confirmations(self, ids: list[str]) -> dict[str, list[HeldMessage]]:
        """Messages held for confirmation, by the Message-ID of their confirmation mail."""
        found: dict[str, list[HeldMessage]] = {}
        for chunk in _chunks(ids):
            rows = self.db.exec(
                select(HeldMessage).where(
                    col(HeldMessage.mail_message_id).in_(chunk),
                    HeldMessage.reason == held_states.CONFIRMATION,
                )
            ).all()
            for row in rows:
                found.setdefault(row.mail_message_id, []).append(row)
        return found

    def _query_held(self, raw_ids: list[int]) -> dict[int, HeldMessage]:
        found: dict[int, HeldMessage] = {}
        for chunk in _chunks(raw_ids):
            rows = self.db.exec(
                select(HeldMessage).where(col(HeldMessage.raw_message_id).in_(chunk))
            ).all()
            found.update({row.raw_message_id: row for row in rows})
        return found


class BatchLookups(Lookups):
    """Answers from what `prefetch` asked for a window; anything else is queried once.

    It also holds back the writes nobody reads before the batch commits (participants,
    cases moved up the lists) and makes them at once: `write_pending`, called by the
    batch before it commits; `discard` when the batch is rolled back instead.
    """

    def __init__(self, db: Session) -> None:
        super().__init__(db)
        self.invalidate()
        self.discard()

    def discard(self) -> None:
        """The batch was rolled back: its held-back writes go, and what it noted."""
        self.invalidate()
        self._participants: dict[tuple[int, str], dict] = {}
        self._touched: set[int] = set()

    def write_pending(self) -> None:
        """Make the held-back writes, one statement each, in the batch's transaction; the
        batch commits next, which lets go of the Message-IDs it locked (copies.py)."""
        self._locked, self._received = set(), {}
        super().add_participants(list(self._participants.values()))
        if self._touched:
            table = Case.__table__
            self.db.exec(
                update(table)
                .where(table.c.id.in_(sorted(self._touched)))
                .values(updated_at=utcnow())
            )
        self._participants, self._touched = {}, set()

    def participant(self, case_id: int, key: str) -> bool:
        return (case_id, key) in self._participants or super().participant(case_id, key)

    def add_participants(self, rows: list[dict]) -> None:
        for row in rows:  # the first role given stays, as with ON CONFLICT DO NOTHING
            self._participants.setdefault((row["case_id"], row["email_key"]), row)

    def touch_case(self, case_id: int) -> None:
        self._touched.add(case_id)

    def invalidate(self) -> None:
        self._ids: set[str] = set()  # Message-IDs asked about
        self._cases: dict[str, int] = {}
        self._outbox: dict[str, int] = {}
        self._confirmations: dict[str, list[HeldMessage]] = {}
        self._contacts: dict[str, Contact | None] = {}
        self._held: dict[int, HeldMessage | None] = {}
        self._case_rows: dict[int, Case] = {}  # held here: the session keeps only weak ones
        self._templates: dict[int, EmailTemplate | None] = {}
        self._locked: set[str] = set()  # Message-IDs locked by this transaction
        self._received: dict[str, list[Received]] = {}  # their answers, true while locked
        self._window: list[str] = []  # the Message-IDs of the window being filed

    def prefetch(
        self,
        ids: Iterable[str],
        senders: Iterable[str],
        raw_ids: Iterable[int],
        own_ids: Iterable[str] = (),
    ):
        """Ask once for everything a window of messages will ask; `own_ids` are their own
        Message-IDs (is this email filed already?)."""
        self._window = list(dict.fromkeys(own_ids))
        self._ask_received(self._window)
        self._ask_ids(list(dict.fromkeys(ids)))
        self._ask_contacts(list(dict.fromkeys(k for k in senders if k)))
        self._ask_held(list(dict.fromkeys(raw_ids)))

    def message_cases(self, ids: list[str]) -> dict[str, int]:
        self._ask_ids(ids)
        return {i: self._cases[i] for i in ids if i in self._cases}

    def outbox_cases(self, ids: list[str]) -> dict[str, int]:
        self._ask_ids(ids)
        return {i: self._outbox[i] for i in ids if i in self._outbox}

    def case(self, case_id: int) -> Case | None:
        if case_id not in self._case_rows:
            found = super().case(case_id)
            if found is None:
                return None
            self._case_rows[case_id] = found
        return self._case_rows[case_id]

    def template(self, template_id: int) -> EmailTemplate | None:
        if template_id not in self._templates:
            self._templates[template_id] = super().template(template_id)
        return self._templates[template_id]

    def contact(self, key: str) -> Contact | None:
        self._ask_contacts([key])
        return self._contacts[key]

    def held(self, raw_id: int) -> HeldMessage | None:
        self._ask_held([raw_id])
        return self._held[raw_id]

    def confirmation(self, ids: list[str], sender: str) -> HeldMessage | None:
        self._ask_ids(ids)
        return _answered(self._confirmations, ids, sender)

    def noted_message(self, message_id: str | None, case_id: int) -> None:
        if message_id:
            self._cases.setdefault(message_id, case_id)

    def noted_contact(self, key: str, contact: Contact | None) -> None:
        self._contacts[key] = contact

    def noted_case(self, case: Case) -> None:
        self._case_rows[case.id] = case

    def received(self, message_id: str) -> list[Received]:
        # After a commit mid-window, the rest of the window is asked (and locked) again at once.
        self._ask_received([message_id, *self._window])
        return list(self._received[message_id])

    def noted_received(self, message_id: str | None, message: Received) -> None:
        if message_id in self._received:  # else asked later, when the row is flushed already
            self._received[message_id].append(message)

    def _ask_received(self, ids: list[str]) -> None:
        new = [i for i in ids if i not in self._locked]
        if new:
            found = lock_and_query(self.db, new)
            self._received.update({i: found.get(i, []) for i in new})
            self._locked.update(new)

    def _ask_ids(self, ids: list[str]) -> None:
        new = [i for i in ids if i not in self._ids]
        if not new:
            return
        for message_id, case_id in self._query_message_cases(new).items():
            self._cases.setdefault(message_id, case_id)
        self._outbox.update(self._query_outbox_cases(new))
        cases = {*self._cases.values(), *self._outbox.values()} - self._case_rows.keys()
        for chunk in _chunks(sorted(cases)):
            rows = self.db.exec(select(Case).where(col(Case.id).in_(chunk))).all()
            self._case_rows.update({row.id: row for row in rows})
        self._confirmations.update(self._query_confirmations(new))
        self._ids.update(new)

    def _ask_contacts(self, keys: list[str]) -> None:
        new = [k for k in keys if k not in self._contacts]
        if new:
            found = self._query_contacts(new)
            self._contacts.update({key: found.get(key) for key in new})

    def _ask_held(self, raw_ids: list[int]) -> None:
        new = [i for i in raw_ids if i not in self._held]
        if new:
            found = self._query_held(new)
            self._held.update({raw_id: found.get(raw_id) for raw_id in new})
