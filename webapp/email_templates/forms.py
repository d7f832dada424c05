from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length

from webapp.services.templating import template_errors


class EmailTemplateForm(FlaskForm):
    name = StringField(
        "Name", validators=[InputRequired("Give the template a name."), Length(max=120)]
    )
    kind = SelectField(
        "Used for",
        choices=[
            ("case_response", "Case responses"),
            ("auto_ack", "Auto acknowledgements"),
            ("other", "Other"),
        ],
    )
    subject = StringField(
        "Subject", validators=[InputRequired("Enter a subject."), Length(max=500)]
    )
    body = TextAreaField("Body", validators=[InputRequired("Enter the body.")])

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        for field in (self.subject, self.body):
            errors = template_errors(field.data or "", field.label.text)
            if errors:
                field.errors = list(field.errors) + errors
                ok = False
        return ok
