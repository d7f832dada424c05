"""Security headers of every answer: CSP, HSTS, no caching of signed-in pages and API answers."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, g, request

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HSTS = "max-age=31536000"  # a year; no includeSubDomains: other hosts of the domain are not ours
NO_STORE_PATHS = ("/auth", "/api/")  # never cached even before sign-in
# Every Auth URL the mailbox form accepts: https, or http on loopback. CSP has no syntax for an
# IPv6 literal, so http://[::1] Auth URLs cannot be used from a browser.
FORM_AUTH_URLS = ("https:", "http://127.0.0.1:*", "http://localhost:*")


def origin(url: str | None) -> str | None:
    """scheme://host[:port] of an http(s) URL that CSP can name, else None.

    CSP has no syntax for an IPv6 literal, so an http://[::1] Auth URL cannot be allowed."""
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname or ":" in parts.hostname:
        return None
    if any(ch in parts.netloc for ch in " ;,'\"") or "@" in parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def allow_form_action(*urls: str | None) -> set[str]:
    """Let this page's forms lead to these URLs' origins (or FORM_AUTH_URLS' sources): only a
    page that starts an OAuth authorization calls it, with the provider's Auth URL (its POST is
    redirected there). Returns the sources this page allows."""
    allowed = g.setdefault("form_action_origins", set())
    allowed.update(u if u in FORM_AUTH_URLS else origin(u) for u in urls if u)
    allowed.discard(None)
    return allowed


def install_security_headers(app: Flask, external_url: str) -> None:
    https = external_url.startswith("https://")

    @app.after_request
    def _security_headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        extra = "".join(f" {o}" for o in sorted(g.get("form_action_origins", ())))
        resp.headers.setdefault("Content-Security-Policy", CSP + extra)
        if https:
            resp.headers.setdefault("Strict-Transport-Security", HSTS)
        if g.get("user") is not None or request.path.startswith(NO_STORE_PATHS):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp
