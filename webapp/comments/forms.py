"""The comment form on a case page (rendered by cases/_comment_form.html)."""

from __future__ import annotations

import uuid

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, TextAreaField
from wtforms.validators import InputRequired, Length


class CommentForm(FlaskForm):
    comment = TextAreaField(
        "Comment",
        validators=[InputRequired("Write the comment first."), Length(max=100_000)],
    )
    key = HiddenField()  # one per rendered form: a double submit sends one email
    next = HiddenField()  # the page to go back to without JavaScript
    close = BooleanField()  # the "Send and close" button: close the case once it is sent


def new_comment_key() -> str:
    """A fresh idempotency key for one rendered comment form."""
    return uuid.uuid4().hex
