"""The case lists' filters, search and paging (the rows the web list shows: case_queries), and
the API's page of cases with their messages.

Search: the words a user types, matched against each message's subject, sender (name and
address) and text.

Both databases keep the words of each message in a table of their own, message_search, that
triggers keep up to date as mail is filed, edited or deleted: an FTS5 table on SQLite
(migration 0021), (message_id, case_id, to_tsvector('simple', …)) with a GIN index on
PostgreSQL (migration 0024). Neither needs the code that files mail to know about search.
Whatever a user types is turned into plain words first: quotes, operators and punctuation
cannot make a query fail.

Paging: the ids of a page first (no row built for the rows skipped), from the end for the
pages past the middle.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass

from sqlalchemy import (
    ARRAY,
    Integer,
    Row,
    String,
    any_,
    bindparam,
    column,
    false,
    literal_column,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import UserDefinedType
from sqlmodel import Session, col, func, or_, select
from sqlmodel.sql.sqltypes import UTCDateTime

from webapp.models import Case, Contact, Message, MessageMailbox, User

PER_PAGE = 50
# received_at of a case's last message (the highest id): a column the database's triggers
# keep (migration 0021) and the models leave out, so that nothing else ever writes it.
LAST_MESSAGE_AT = literal_column('"case".last_message_at', UTCDateTime())
# What the Contact column shows (its name, else its address, else the requester's): kept by
# triggers too (migration 0023) and indexed for the list sorted by contact.
CONTACT_SORT = literal_column('"case".contact_sort', String())
KEPT_BY_DATABASE = {"last_message_at", "contact_sort"}
MAX_QUERY_CHARS = 200
# The newest matching messages a search reads: 2,000 gives up to 40 pages of cases, and a
# frequent word then costs what a case list page does (on PostgreSQL 42 instead of 59 ms p50
# for a word in 9,500 of 500,000 messages: every match read is a heap page of message_search).
SEARCHED_MESSAGES = 2_000
# PostgreSQL's search index holds each message's bucket of SEARCH_BUCKET ids beside its words
# (migration 0025, whose expression _pg_window repeats): the newest buckets are asked first.
SEARCH_BUCKET = 10_000
FIRST_BUCKETS = 2  # the first window: the newest 10,000 to 20,000 message ids
_WORD = re.compile(r"\w+", re.UNICODE)
TALLY_FOLD_ROWS = 1_000  # case_tally rows a count sums before it folds them (migration 0027)
log = logging.getLogger(__name__)


def clean(q: str | None) -> str:
    """The search as typed, trimmed to a sane length (what the box shows again)."""
    return " ".join((q or "").split())[:MAX_QUERY_CHARS]


def fts5_query(q: str) -> str:
    """An FTS5 MATCH string of the words typed: each space-separated piece a quoted phrase of
    its words ("alice@example.org" -> "alice example org"), all of them required."""
    phrases = []
    for piece in q.split():
        words = _WORD.findall(piece)
        if words:
            phrases.append('"' + " ".join(words) + '"')
    return " ".join(phrases)


@dataclass
class Match:
    """What a search matched: a WHERE term for the cases, how many cases, and whether it
    stopped at the newest SEARCHED_MESSAGES matching messages (a word that is everywhere)."""

    term: object
    cases: int
    limit: int | None = None  # SEARCHED_MESSAGES, when more messages than that matched


def matching(db: Session, q: str) -> Match | None:
    """The cases with a message matching every word of q (none when q has no word; None
    without q).

    The newest SEARCHED_MESSAGES matching messages are read (newest first: both indexes give
    them in id order), their case ids handed over as one list: a word found in most of
    500,000 messages costs what a rare one does, and the count and the page reuse the list."""
    if not q:
        return None
    if not fts5_query(q):
        return Match(false(), 0)
    postgres = db.get_bind().dialect.name == "postgresql"
    if postgres:
        hits = _pg_newest(db, q, SEARCHED_MESSAGES + 1)
    else:
        hits = [case_id for (case_id,) in db.exec(_fts5_hits(q)).all()]
    ids = sorted(set(hits[:SEARCHED_MESSAGES]))
    limit = SEARCHED_MESSAGES if len(hits) > SEARCHED_MESSAGES else None
    return Match(_pg_listed(ids) if postgres else _sqlite_listed(ids), len(ids), limit)


def _fts5_hits(q: str):
    return text(
        "SELECT message.case_id FROM (SELECT rowid AS id FROM message_search "
        "WHERE message_search MATCH :search_q ORDER BY rowid DESC LIMIT :search_limit) AS hit "
        "JOIN message ON message.id = hit.id"
    ).bindparams(search_q=fts5_query(q), search_limit=SEARCHED_MESSAGES + 1)


def _pg_newest(db: Session, q: str, want: int) -> list[int]:
    """The case ids of the newest `want` messages matching q, newest first, from
    message_search (kept by a trigger: migration 0024), a window of id buckets at a time.

    A GIN index gives its matches in no order, so one query would read every matching row
    before keeping the newest (a word in 86,000 messages: 170 ms and more). So the newest
    FIRST_BUCKETS buckets are asked first. The matches per message id they held say how
    many ids further back the rest lies (with a tenth more), and the next window asks that
    many buckets: a frequent word reads little more than the rows it keeps. A word absent
    from the newest window, or whose rest reaches back to the oldest messages, is asked once
    more without buckets: it is rare, or old, and reading all its matches is what the plain
    index does best."""
    top = db.exec(text("SELECT max(message_id) FROM message_search")).scalar()
    if top is None:
        return []
    high = top // SEARCH_BUCKET
    low = max(high - FIRST_BUCKETS + 1, 0)
    hits = _pg_window(db, q, range(low, high + 1), want)
    if not hits:
        return _pg_window(db, q, None, want)
    while low > 0 and len(hits) < want:
        per_id = len(hits) / (top - low * SEARCH_BUCKET + 1)
        width = math.ceil((want - len(hits)) / per_id * 1.1 / SEARCH_BUCKET)
        if width >= low:  # the rest reaches the oldest messages: every match, at once
            return _pg_window(db, q, None, want)
        high, low = low - 1, low - width
        hits += _pg_window(db, q, range(low, high + 1), want - len(hits))
    return hits


def _pg_window(db: Session, q: str, buckets: range | None, limit: int) -> list[int]:
    """The case ids of the newest `limit` matches in these buckets (or in all messages)."""
    where = f"AND ARRAY[message_id / {SEARCH_BUCKET}] && :search_buckets " if buckets else ""
    query = text(
        "SELECT case_id FROM message_search WHERE words @@ "
        f"websearch_to_tsquery('simple'::regconfig, :search_q) {where}"
        "ORDER BY message_id DESC LIMIT :search_limit"
    ).bindparams(search_q=q, search_limit=limit)
    if buckets:
        query = query.bindparams(bindparam("search_buckets", list(buckets), type_=ARRAY(Integer)))
    return [case_id for (case_id,) in db.exec(query).all()]


class _IdArray(UserDefinedType):
    """A list of ids written into the statement as one array constant, '{1,2,3}'::integer[].

    Bound as a parameter, PostgreSQL sees an expression instead of a constant: it searches
    the thousands of ids one by one for every row it looks at, and more so once psycopg
    prepares the statement (its fifth run). Written in, the array is parsed once and hashed:
    the search's page of cases took 13.7 ms with the parameter and 2.8 ms without it (4,645
    ids). literal_execute writes it in at execution, so the statement cache keeps one entry."""

    cache_ok = True

    def get_col_spec(self, **_kw) -> str:
        return "INTEGER[]"

    def literal_processor(self, dialect):
        def process(ids) -> str:
            return "'{" + ",".join(str(int(i)) for i in ids) + "}'::integer[]"

        return process


def _pg_listed(ids: list[int]):
    listed = bindparam("search_ids", ids, type_=_IdArray(), literal_execute=True)
    return col(Case.id) == any_(listed)


def _sqlite_listed(ids: list[int]):
    """One parameter, however many ids (SQLite allows 32,766 per statement)."""
    listed = text("SELECT value FROM json_each(:search_ids)").bindparams(search_ids=json.dumps(ids))
    return col(Case.id).in_(listed.columns(column("value", Integer)))


def kept_by_models(name: str | None, type_: str, parent_names: dict) -> bool:
    """For Alembic's comparisons (include_name): what migrations 0021, 0023 and 0027 build for
    the database to keep by itself, not the models (the search index, the FTS5 tables, case's
    last_message_at and contact_sort, the indexes of the list's sorts, the case tally); leave
    it out."""
    if type_ == "column":
        return name not in KEPT_BY_DATABASE
    return not (name or "").startswith(
        ("message_search", "ix_message_search", "ix_case_search", "case_tally")
    )


def page_of(query, order, page: int, per_page: int, total: int):
    """The ids of one page of `query` (a SELECT of Case.id), as a subquery for the page's own
    query, or None past the end: OFFSET over ids alone (no row is built for the rows
    skipped), and the pages past the middle read from the end in the reverse order, so that
    the last page of 100,000 cases costs what the first one does. `order(backwards)` gives
    the ORDER BY terms."""
    offset = (page - 1) * per_page
    if offset >= total:
        return None
    if offset + per_page / 2 > total / 2:
        limit = min(per_page, total - offset)
        return query.order_by(*order(True)).offset(total - offset - limit).limit(limit)
    return query.order_by(*order(False)).offset(offset).limit(per_page)


def by_status(status: str | None) -> list:
    return [col(Case.status) == status] if status else []


def in_mailbox(mailbox_id: int | None) -> list:
    """The WHERE term of a mailbox's cases, for a page: its own, and those whose email came
    through it too (count_cases counts them apart)."""
    if not mailbox_id:
        return []
    return [or_(col(Case.mailbox_id) == mailbox_id, col(Case.id).in_(_via(mailbox_id)))]


def count_by_status(db: Session, status: str | None) -> int:
    """How many cases there are (of this status): on PostgreSQL from case_tally, which
    triggers keep (migration 0027; count(*) read 100,000 index entries, 12 to 20 ms), on
    SQLite by counting."""
    if db.get_bind().dialect.name != "postgresql":
        return count_cases(db, by_status(status))
    where = "WHERE status = :status" if status else ""
    query = text(f"SELECT count(*), coalesce(sum(n), 0) FROM case_tally {where}")
    rows, total = db.exec(query.bindparams(status=status) if status else query).one()
    if rows > TALLY_FOLD_ROWS:
        _fold_tally(db)
    return int(total)


def _fold_tally(db: Session) -> None:
    """The tally's rows folded into one per status, in a transaction of its own (the sums
    stay what they were; rows that other transactions are adding are not seen, so left
    alone). A fold that fails is tried again by the next page."""
    try:
        with db.get_bind().begin() as conn:  # waits only for another fold's rows
            conn.execute(
                text(
                    "WITH gone AS (DELETE FROM case_tally RETURNING status, n) "
                    "INSERT INTO case_tally (status, n) "
                    "SELECT status, sum(n) FROM gone GROUP BY status"
                )
            )
    except SQLAlchemyError as exc:
        log.warning("could not fold the case tally (the next page tries again): %s", exc)


def count_cases(
    db: Session, where: list, mailbox_id: int | None = None, found: Match | None = None
) -> int:
    """How many cases match `where`, the search `found` and, with mailbox_id, came through
    that mailbox. A search alone is counted already (each id it handed over is a case). A
    mailbox's own cases and the others with an email through it are counted apart, each set
    by its own index (an OR of the two reads every case: 80 ms on 100,000 against 11 ms), in
    one statement."""
    if found is not None and not where and not mailbox_id:
        return found.cases
    where = [*where, found.term] if found is not None else where
    if not mailbox_id:
        return int(db.exec(select(func.count()).select_from(Case).where(*where)).one())

    def counted(*terms):
        return select(func.count()).select_from(Case).where(*where, *terms).scalar_subquery()

    own = counted(col(Case.mailbox_id) == mailbox_id)
    others = counted(
        col(Case.mailbox_id).is_distinct_from(mailbox_id), col(Case.id).in_(_via(mailbox_id))
    )
    return int(db.exec(select(own + others)).one())


def narrowed(where: list, found: Match | None, mailbox_id: int | None) -> list:
    """`where` and the terms of the search and of the mailbox, for a page's ids."""
    return [*where, *([found.term] if found is not None else []), *in_mailbox(mailbox_id)]


def _via(mailbox_id: int):
    """The ids of the cases with an email that came through this mailbox but was filed from
    another one (MessageMailbox)."""
    return (
        select(Message.case_id)
        .join(MessageMailbox, col(MessageMailbox.message_id) == col(Message.id))
        .where(col(MessageMailbox.mailbox_id) == mailbox_id)
    )


def api_cases(
    db: Session,
    page: int = 1,
    status: str | None = None,
    mailbox_id: int | None = None,
    per_page: int = PER_PAGE,
    q: str = "",
    after: int | None = None,
) -> tuple[list[tuple[Case, Contact | None, User | None]], int]:
    """One page for the API, oldest case first (stable while new cases arrive), with each
    case's contact and assignee: the cases after the id `after` (keyset: any page as cheap as
    the first), else page `page`; the total counts them all."""
    found = matching(db, q)
    if found is None and not mailbox_id:
        total = count_by_status(db, status)
    else:
        total = count_cases(db, by_status(status), mailbox_id, found)
    where = narrowed(by_status(status), found, mailbox_id)
    if after is not None:
        ids = select(Case.id).where(*where, col(Case.id) > after)
        ids = ids.order_by(col(Case.id)).limit(per_page)
    else:
        order = lambda back: [col(Case.id).desc() if back else col(Case.id)]  # noqa: E731
        ids = page_of(select(Case.id).where(*where), order, page, per_page, total)
    if ids is None:
        return [], total
    query = (
        select(Case, Contact, User)
        .outerjoin(Contact, col(Contact.id) == col(Case.contact_id))
        .outerjoin(User, col(User.id) == col(Case.assignee_id))
        .where(col(Case.id).in_(ids.correlate(None)))
        .order_by(col(Case.id))
    )
    return list(db.exec(query).all()), total


# What the API shows of a message: read as plain rows, not models (a page of 50 cases holds
# hundreds of messages, and building a model for each was half of the page's time).
API_MESSAGE_COLUMNS = (
    Message.id, Message.case_id, Message.direction, Message.from_name, Message.from_address,
    Message.to_addresses, Message.cc_addresses, Message.sent_at, Message.received_at,
    Message.subject, Message.text, Message.full_text, Message.message_id, Message.in_reply_to,
    Message.automated,
)  # fmt: skip


def messages_by_case(db: Session, case_ids: list[int]) -> dict[int, list[Row]]:
    """The messages of many cases in one query, as rows of API_MESSAGE_COLUMNS (each named
    as the model's attribute)."""
    out: dict[int, list[Row]] = {case_id: [] for case_id in case_ids}
    if not case_ids:
        return out
    query = (
        select(*API_MESSAGE_COLUMNS)
        .where(col(Message.case_id).in_(case_ids))
        .order_by(col(Message.id))
    )
    for message in db.exec(query).all():
        out[message.case_id].append(message)
    return out
