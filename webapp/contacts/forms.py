from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import InputRequired, Length


class ContactNameForm(FlaskForm):
    name = StringField(
        "Name", validators=[Length(max=200, message="A name has at most 200 characters.")]
    )


class MergeForm(FlaskForm):
    other = StringField(
        "Duplicate to merge into this contact",
        validators=[InputRequired("Enter the duplicate's email address."), Length(max=320)],
    )

    HELP = {
        "other": "Its email address. Its cases and messages move here; its address stays known "
        "as another address of this contact.",
    }
