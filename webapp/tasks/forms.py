"""The task form on a case page: Title, Assignee email, Due date."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, EmailField, StringField, ValidationError
from wtforms.validators import DataRequired, Length, Optional

from webapp.services import validation


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class TaskForm(FlaskForm):
    """Prefixed ("task-title", ...): the case page around it has forms of its own."""

    title = StringField(
        "Title",
        validators=[DataRequired("Give the task a title."), Length(max=300)],
        filters=[_strip],
    )
    assignee_email = EmailField(
        "Assignee email",
        validators=[DataRequired("Enter the assignee's email address."), Length(max=320)],
        filters=[_strip],
    )
    due_date = DateField(
        "Due date", validators=[Optional()], render_kw={"placeholder": "YYYY-MM-DD"}
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", "task")
        super().__init__(*args, **kwargs)

    def validate_assignee_email(self, field) -> None:
        error = validation.email_error(field.data or "")
        if error:
            raise ValidationError(error)
