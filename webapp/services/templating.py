"""Email templates: sandboxed Jinja, only known variables, errors that name the line."""

from __future__ import annotations

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes

from webapp.services.template_limits import LimitedSandbox, TemplateLimit, render_limited

VARIABLES = {
    "case_number": "The case number, e.g. 123",
    "case_subject": "The case's subject",
    "contact_name": "The contact's name (or address when no name is known)",
    "contact_email": "The contact's email address",
    "message": "The comment or the received message's text",
    "agent_name": "The Name of the user who wrote the comment (Users page)",
    "mailbox_name": "The mailbox's name",
}

SAMPLE = {
    "case_number": 123,
    "case_subject": "Printer on floor 2 is jammed",
    "contact_name": "Ada Lovelace",
    "contact_email": "ada@example.com",
    "message": "Thanks, we have ordered a new drum; it arrives on Friday.",
    "agent_name": "Grace",
    "mailbox_name": "Support",
}

DEFAULTS = [
    {
        "name": "Default case response",
        "kind": "case_response",
        "subject": "Re: {{ case_subject }}",
        "body": "Hello {{ contact_name }},\n\n{{ message }}\n\n{{ agent_name }}\n{{ mailbox_name }}\n",
    },
    {
        "name": "Default auto acknowledgement",
        "kind": "auto_ack",
        "subject": "We received your message: {{ case_subject }}",
        "body": (
            "Hello {{ contact_name }},\n\nThank you for writing to {{ mailbox_name }}. "
            "Your message is now case {{ case_number }}; we will answer soon.\n\n"
            "Please keep the case number in the subject when you write about it again.\n"
        ),
    },
]

_env = LimitedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def template_errors(source: str, what: str) -> list[str]:
    """Problems with one template text, each naming the line."""
    try:
        ast = _env.parse(source)
    except TemplateSyntaxError as exc:
        return [f"{what}, line {exc.lineno}: {exc.message}."]
    errors = []
    assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name in ast.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in VARIABLES and name.name not in assigned:
            errors.append(
                f"{what}, line {name.lineno}: unknown variable “{name.name}”. "
                f"Known: {', '.join(sorted(VARIABLES))}."
            )
    if not errors:
        try:
            render(source, SAMPLE)
        except TemplateLimit as exc:
            errors.append(f"{what}: the template is refused because {exc}.")
        except Exception as exc:  # a sandbox violation or a runtime error in the template
            errors.append(f"{what}: the template does not render: {exc}.")
    return errors


def render(source: str, context: dict) -> str:
    """The template's text; TemplateLimit when it would be too large or render too long."""
    values = {k: _header_safe(v) if k != "message" else v for k, v in context.items()}
    return render_limited(_env, source, values)


def _header_safe(value):
    """CR and LF in a variable never reach a header: each becomes a space."""
    if isinstance(value, str):
        return value.replace("\r", " ").replace("\n", " ")
    return value
