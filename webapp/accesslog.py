"""Access logs without secrets: a sender's confirmation token (/confirm/<token>) and the OAuth
callback's code and state are replaced by [redacted] before a line is written.

Under gunicorn (Procfile: --logger-class webapp.accesslog.RedactingLogger) every value the access
log format can use is redacted; under `flask run` a filter on the werkzeug logger does the same.
"""

from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
_CONFIRM = re.compile(r"(/confirm/)[^/?#\s\"]+")
_PARAMS = re.compile(
    r"((?:^|[?&;])(?:code|state|token|access_token|id_token|session_state)=)[^&;#\s\"]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """A request line, target, query string or Referer with its secrets replaced."""
    return _PARAMS.sub(r"\1" + REDACTED, _CONFIRM.sub(r"\1" + REDACTED, text))


class RedactingLogger(Logger):
    """gunicorn's logger, with every access-log atom (request line, path, query, Referer,
    headers, environ) redacted."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {k: redact(v) if isinstance(v, str) else v for k, v in atoms.items()}


class RedactingFilter(logging.Filter):
    """For the werkzeug development server's request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_werkzeug_filter() -> None:
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
