"""mailchannel: the email channel of a self-hosted case desk."""

from __future__ import annotations

import logging

from flask import Flask, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from webapp import crypto
from webapp.accesslog import install_werkzeug_filter
from webapp.config import load_settings
from webapp.db import new_session
from webapp.extensions import csrf, htmx
from webapp.filters import register_filters
from webapp.headers import install_security_headers


def create_app(test_config: dict | None = None) -> Flask:
    """Application factory: settings from the environment, test_config overrides them."""
    settings = load_settings(test_config)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
    )
    if test_config:
        app.config.update({k: v for k, v in test_config.items() if k.isupper()})
    crypto.configure(settings.encryption_keys)
    if settings.trusted_proxies:  # the client's address (sign-in throttling) from X-Forwarded-For
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    logging.getLogger("webapp").setLevel(logging.INFO)
    install_werkzeug_filter()

    csrf.init_app(app)
    htmx.init_app(app)
    register_filters(app)

    _note_requests(app, settings)

    @app.before_request
    def _open_session():
        g.db = new_session(settings.database_url)

    @app.teardown_request
    def _close_session(exc):
        db = g.pop("db", None)
        if db is not None:
            if exc is not None:
                db.rollback()
            db.close()

    install_security_headers(app, settings.external_url)

    from webapp import api, auth, cases, email_templates, mailboxes, main, oauth, tasks

    app.register_blueprint(auth.bp)
    app.register_blueprint(main.bp)
    app.register_blueprint(mailboxes.bp)
    app.register_blueprint(email_templates.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(cases.bp)
    app.register_blueprint(tasks.bp)
    from webapp import comments, outbox

    app.register_blueprint(comments.bp)
    app.register_blueprint(outbox.bp)
    from webapp import account, audit, contacts, intake, users

    app.register_blueprint(account.bp)

    app.register_blueprint(intake.bp)
    app.register_blueprint(contacts.bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)
    auth.install_login_guard(app)
    from webapp.auth.roles import install_role_guard

    install_role_guard(app)  # after the login guard, which sets g.user

    from webapp.cli import register_cli

    register_cli(app)
    return app


def _note_requests(app: Flask, settings) -> None:
    """While a page is answered, workers on this host give way (webapp/yielding.py)."""
    if not (settings.redis_url and settings.worker_yield):
        return
    from webapp.yielding import Requests, connect

    requests = Requests(connect(settings.redis_url))

    @app.before_request
    def _note_request():
        if request.endpoint != "static":  # as the login guard tells static files apart
            g.request_note = requests.started()

    @app.teardown_request
    def _end_note(exc):
        requests.ended(g.pop("request_note", None))
