"""The two ways to write on a case page: Reply (emailed to the customer, rendered by
cases/_comment_form.html) and Internal note (never emailed, cases/_note_form.html)."""

from __future__ import annotations

import uuid

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length


class CommentForm(FlaskForm):
    """Reply: emailed to the case's contact, copied to Cc."""

    comment = TextAreaField(
        "Reply",
        validators=[InputRequired("Write the reply first."), Length(max=100_000)],
    )
    cc = StringField("Cc", validators=[Length(max=5_000)])
    key = HiddenField()  # one per rendered form: a double submit sends one email
    next = HiddenField()  # the page to go back to without JavaScript
    close = BooleanField()  # the "Send and close" button: close the case once it is sent


class NoteForm(FlaskForm):
    """Internal note: for the team only, never emailed."""

    note = TextAreaField(
        "Internal note",
        validators=[InputRequired("Write the note first."), Length(max=100_000)],
    )
    key = HiddenField()  # one per rendered form: a double submit adds one note
    next = HiddenField()


def new_comment_key() -> str:
    """A fresh idempotency key for one rendered comment form."""
    return uuid.uuid4().hex
