from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length

from webapp.models.user import AGENT, ROLES
from webapp.services.access.users import MIN_PASSWORD


class NewUserForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired("Enter the person's email address.")])
    name = StringField(
        "Name", validators=[Length(max=200, message="A name has at most 200 characters.")]
    )
    role = SelectField("Role", choices=list(ROLES.items()), default=AGENT)
    password = PasswordField(
        "Initial password",
        validators=[
            DataRequired("Choose an initial password."),
            Length(
                min=MIN_PASSWORD,
                message=f"Use a password of at least {MIN_PASSWORD} characters.",
            ),
        ],
    )

    HELP = {
        "name": "Shown to contacts as agent_name in email templates; the email's first part "
        "when left blank.",
        "role": "An Agent works cases, comments, contacts, tasks and held mail; an Admin also "
        "manages mailboxes, email templates, API tokens and users.",
        "password": "Give it to the person; they can change it once signed in.",
    }
