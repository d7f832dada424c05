from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length


class FirstAdminForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    name = StringField(
        "Name", validators=[Length(max=200, message="A name has at most 200 characters.")]
    )
    password = PasswordField("Password", validators=[DataRequired(), Length(min=10)])
    password2 = PasswordField(
        "Password again",
        validators=[DataRequired(), EqualTo("password", message="The two passwords differ.")],
    )

    HELP = {
        "name": "Your name as customers see it (agent_name in email templates); the email's "
        "first part when left blank.",
        "password": "At least 10 characters.",
    }


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
