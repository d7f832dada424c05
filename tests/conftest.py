"""App, client and worker fixtures; the real servers come from tests/servers/fixtures.py."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from tests.helpers.databases import COVERED, fresh_database, migrate, postgres_answers
from tests.helpers.web import ADMIN_EMAIL, ADMIN_PASSWORD, csrf_from
from worker.rqworker import MailSimpleWorker

pytest_plugins = ["tests.servers.fixtures", "tests.servers.oauth_fixtures"]


@pytest.fixture
def database_url(request, tmp_path) -> str:
    """The app's database: SQLite, or PostgreSQL too for a test marked ON_BOTH
    (tests/helpers/databases.py)."""
    if getattr(request, "param", "SQLite") == "PostgreSQL":
        return request.getfixturevalue("postgres_url")
    url = f"sqlite:///{tmp_path / 'test.db'}"
    migrate(url)
    COVERED.add("SQLite")
    return url


@pytest.fixture
def postgres_url():
    """A new PostgreSQL database, migrated to head; the test skips when none answers."""
    if not postgres_answers():
        pytest.skip("no PostgreSQL answers on 127.0.0.1:5432")
    with fresh_database() as url:
        migrate(url)
        COVERED.add("PostgreSQL")
        yield url


@pytest.fixture(
    params=[
        "SQLite",
        pytest.param(
            "PostgreSQL",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    not postgres_answers(), reason="no PostgreSQL answers on 127.0.0.1:5432"
                ),
            ],
        ),
    ]
)
def any_db(request, tmp_path):
    """A migrated database of each kind, SQLite and (when one answers) PostgreSQL: for what must hold
    on both, such as leases and uniqueness."""
    if request.param == "SQLite":
        url = f"sqlite:///{tmp_path / 'any.db'}"
        migrate(url)
        yield url
    else:
        with fresh_database() as url:
            migrate(url)
            yield url
    COVERED.add(request.param)


@pytest.fixture
def app_env(tmp_path, database_url, redis_url, test_ca, monkeypatch) -> dict:
    """The environment the web app and the in-process worker share, as in production."""
    env = {
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "test-secret-key",
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "MAIL_CA_BUNDLE": str(test_ca.ca_pem),
        "EXTERNAL_URL": "http://127.0.0.1:5000",
        "RQ_QUEUE": f"test-{tmp_path.name}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def app(app_env):
    from webapp import create_app

    app = create_app({"TESTING": True})
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def admin(app, client):
    """An admin account, logged in with the test client."""
    resp = client.get("/auth/first-admin")
    token = csrf_from(resp.get_data(as_text=True))
    resp = client.post(
        "/auth/first-admin",
        data={
            "csrf_token": token,
            "email": ADMIN_EMAIL,
            "password": ADMIN_PASSWORD,
            "password2": ADMIN_PASSWORD,
        },
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return client


@pytest.fixture
def run_worker(app, app_env, redis_server):
    """Run the real RQ worker (a SimpleWorker, burst) over the app's queue."""
    from webapp.queue import get_queue

    def run() -> None:
        queue = get_queue(app_env["REDIS_URL"], app_env["RQ_QUEUE"])
        MailSimpleWorker([queue], connection=queue.connection).work(burst=True)

    return run


def pytest_terminal_summary(terminalreporter):
    covered = ", ".join(sorted(COVERED)) or "none"
    terminalreporter.write_line(f"databases covered by the database tests: {covered}")
