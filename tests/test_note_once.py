"""An internal note sent twice with the same form key is added once, on both databases, even
when the second request arrives while the first one is still writing."""

from __future__ import annotations

import threading
import time

from sqlmodel import col, select

from webapp.db import begin_writing, lock_all_for_transaction, new_session, utcnow
from webapp.models import Case, Mailbox, Message
from webapp.services.outgoing import notify


def _case(url: str) -> int:
    with new_session(url) as db:
        box = Mailbox(name="Desk", email_address="desk@example.com", email_key="desk@example.com")
        db.add(box)
        db.flush()
        case = Case(number=1, subject="Printer jammed", mailbox_id=box.id)
        db.add(case)
        db.commit()
        return case.id


def _notes(url: str, case_id: int) -> list[Message]:
    with new_session(url) as db:
        query = select(Message).where(col(Message.case_id) == case_id, Message.direction == "note")
        return list(db.exec(query).all())


def test_a_note_key_sent_again_gives_the_first_note(any_db):
    case_id = _case(any_db)
    with new_session(any_db) as db:
        case = db.get(Case, case_id)
        first = notify.post_note(db, case, author="agent@example.com", text="Hi", key="k1")
        again = notify.post_note(db, case, author="agent@example.com", text="Hi", key="k1")
        other = notify.post_note(db, case, author="agent@example.com", text="Hi", key="k2")

    assert again.id == first.id
    assert other.id != first.id
    assert len(_notes(any_db, case_id)) == 2


def test_a_note_sent_while_the_same_one_is_being_written_waits_and_adds_nothing(any_db):
    case_id = _case(any_db)
    marker = notify.note_marker("double-click")
    answers: list[int] = []
    with new_session(any_db) as writing:  # the first request, between its check and commit
        begin_writing(writing)
        lock_all_for_transaction(writing, [f"note {marker}"])
        now = utcnow()
        note = Message(case_id=case_id, mailbox_id=None, direction="note", text="Hi",
                       full_text="Hi", message_id=marker, sent_at=now, received_at=now,
                       from_address="agent@example.com")  # fmt: skip
        writing.add(note)
        writing.flush()

        def second() -> None:
            with new_session(any_db) as db:
                case = db.get(Case, case_id)
                answers.append(
                    notify.post_note(
                        db, case, author="agent@example.com", text="Hi", key="double-click"
                    ).id
                )

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)  # the second request reaches its check while the first still writes
        writing.commit()
        first_id = note.id
    thread.join(timeout=60)

    assert answers == [first_id]
    assert [n.id for n in _notes(any_db, case_id)] == [first_id]
