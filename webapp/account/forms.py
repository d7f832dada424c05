from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, Length


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField("New password", validators=[DataRequired(), Length(min=10)])
    new_password2 = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("new_password", message="The two passwords differ.")],
    )
