"""Email templates: defaults, sandboxed rendering, errors with their line, live preview."""

from __future__ import annotations

from tests.helpers.web import csrf_from
from webapp.services.templating import render, template_errors


def test_unknown_variable_is_refused_with_its_line():
    errors = template_errors("Hello\n{{ contact_name }}\n{{ secret_sauce }}", "Body")
    assert errors
    assert "line 3" in errors[0]
    assert "secret_sauce" in errors[0]


def test_bad_syntax_is_refused_with_its_line():
    errors = template_errors("ok\n{% if case_number %}\nno end", "Body")
    assert errors
    assert errors[0].startswith("Body, line")


def test_the_sandbox_refuses_python_internals():
    assert template_errors("{{ case_subject.__class__.__mro__ }}", "Body")


def test_variables_cannot_inject_headers():
    assert (
        render("Re: {{ case_subject }}", {"case_subject": "hi\r\nBcc: x@evil.example"})
        == "Re: hi  Bcc: x@evil.example"
    )


def test_default_templates_exist_on_a_fresh_install(admin):
    page = admin.get("/templates/").get_data(as_text=True)
    assert "Default case response" in page
    assert "Default auto acknowledgement" in page


def test_saving_a_broken_template_keeps_what_was_typed(admin):
    token = csrf_from(admin.get("/templates/new").get_data(as_text=True))
    resp = admin.post(
        "/templates/new",
        data={
            "csrf_token": token,
            "name": "Mine",
            "kind": "other",
            "subject": "Hi",
            "body": "Dear {{ nobody }}",
        },
    )
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "unknown variable “nobody”" in page
    assert "Dear {{ nobody }}" in page


def test_edit_and_preview(admin):
    page = admin.get("/templates/1").get_data(as_text=True)
    token = csrf_from(page)
    resp = admin.post(
        "/templates/1",
        data={
            "csrf_token": token,
            "name": "Default case response",
            "kind": "case_response",
            "subject": "Case {{ case_number }}",
            "body": "Hi {{ contact_name }}",
        },
    )
    assert resp.status_code == 302
    page = admin.get("/templates/1").get_data(as_text=True)
    assert "Case 123" in page
    assert "Hi Ada Lovelace" in page  # preview with sample values
    frag = admin.post(
        "/templates/preview",
        data={"subject": "x", "body": "{{ oops"},
        headers={"HX-Request": "true", "X-CSRFToken": token},
    ).get_data(as_text=True)
    assert frag.lstrip().startswith('<aside id="preview"')
    assert "Body, line 1" in frag
