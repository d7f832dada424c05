"""Email templates cannot exhaust the worker: output size, loop turns and render time are
capped, and the template editor says why a template is refused."""

from __future__ import annotations

import pytest

from tests.helpers.web import csrf_from
from webapp.services import template_limits
from webapp.services.template_limits import TemplateLimit
from webapp.services.templating import SAMPLE, render

HUGE = '{{ "a"*50_000_000 }}'
DOUBLING = (
    '{% set ns = namespace(x="ab") %}{% for c in message %}{% set ns.x = ns.x ~ ns.x %}'
    "{% endfor %}{{ ns.x|length }}"
)


def _post(admin, **fields):
    token = csrf_from(admin.get("/templates/new").get_data(as_text=True))
    data = {"csrf_token": token, "name": "Big", "kind": "other", "subject": "Hi", "body": "x"}
    return admin.post("/templates/new", data={**data, **fields})


def test_the_editor_refuses_a_huge_multiplication(admin):
    resp = _post(admin, body=HUGE)
    assert resp.status_code == 422
    assert "Body: the template is refused because its text would be larger than" in (
        resp.get_data(as_text=True)
    )


def test_a_refused_template_is_not_saved(admin):
    _post(admin, body=HUGE)
    assert "Big" not in admin.get("/templates/").get_data(as_text=True)


def test_the_preview_says_why(admin):
    token = csrf_from(admin.get("/templates/new").get_data(as_text=True))
    data = {"csrf_token": token, "name": "Big", "kind": "other", "subject": HUGE, "body": "x"}
    page = admin.post("/templates/preview", data=data, headers={"HX-Request": "true"})
    assert "Subject: the template is refused because" in page.get_data(as_text=True)


def test_a_literal_multiplication_is_refused():
    with pytest.raises(TemplateLimit, match="larger than"):
        render(HUGE, SAMPLE)


def test_doubling_text_in_a_loop_is_refused():
    with pytest.raises(TemplateLimit, match="larger than"):
        render(DOUBLING, {**SAMPLE, "message": "x" * 40})


def test_replace_cannot_multiply_text():
    with pytest.raises(TemplateLimit, match="larger than"):
        render('{{ message|replace("", message) }}', {**SAMPLE, "message": "x" * 5000})


@pytest.mark.parametrize(
    "source",
    ['{{ "%0999999d"|format(1) }}', '{{ "%0999999d" % 1 }}', '{{ "{:>9999999}".format(1) }}'],
)
def test_huge_format_widths_are_refused(source):
    with pytest.raises(TemplateLimit, match="format width"):
        render(source, SAMPLE)


def test_a_huge_power_is_refused():
    with pytest.raises(TemplateLimit, match="power"):
        render("{{ 9 ** 9999 }}", SAMPLE)


def test_a_huge_number_for_a_filter_is_refused():
    with pytest.raises(TemplateLimit, match="number above"):
        render('{{ [1]|batch(10 ** 9, "x")|list|length }}', SAMPLE)


def test_nested_loops_are_stopped():
    source = "{% for a in message %}{% for b in message %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateLimit, match="runs too long"):
        render(source, {**SAMPLE, "message": "x" * 2000})


def test_render_time_is_capped(monkeypatch):
    monkeypatch.setattr(template_limits, "MAX_SECONDS", 0.0)
    with pytest.raises(TemplateLimit, match="seconds to render"):
        render("{% for a in message %}{{ a }}{% endfor %}", {**SAMPLE, "message": "x" * 5000})


def test_a_long_message_still_renders_whole():
    message = "x" * 1_000_000
    assert render("Hello\n{{ message }}", {**SAMPLE, "message": message}) == "Hello\n" + message


def test_ordinary_templates_render_as_before():
    out = render('{{ "%05d"|format(case_number) }} {{ message|replace("drum", "toner") }}', SAMPLE)
    assert out.startswith("00123 Thanks, we have ordered a new toner")
