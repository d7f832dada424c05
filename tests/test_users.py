"""The Users page: admins add users, change roles, deactivate and reactivate; the last active
admin stays; a deactivated user is signed out at once; create-user; the migration."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import select

from tests.helpers.databases import migrate
from tests.helpers.mailboxes import open_case, replying_desk
from tests.helpers.rows import outbox_rows
from tests.helpers.team import (
    AGENT_EMAIL,
    AGENT_NAME,
    AGENT_PASSWORD,
    add_user,
    agent,
    post_user_form,
    sign_in,
    user_row,
)
from tests.helpers.web import ADMIN_EMAIL, ADMIN_PASSWORD, case_page, comment
from webapp.db import new_session
from webapp.models import User
from webapp.services.access import users


def test_the_users_page_lists_the_team_and_offers_the_add_form(admin):
    page = admin.get("/users/").get_data(as_text=True)
    assert ADMIN_EMAIL in page
    assert '<form method="post" action="/users/">' in page
    assert 'name="csrf_token"' in page
    assert '<option selected value="agent">Agent</option>' in page  # the default role


def test_an_admin_adds_an_agent_who_signs_in_and_lands_on_the_cases(admin, app, app_env):
    resp = add_user(admin)
    assert resp.status_code == 303
    assert f"{AGENT_NAME} ({AGENT_EMAIL}) can sign in now as Agent." in admin.get(
        "/users/"
    ).get_data(as_text=True)
    row = user_row(app_env, AGENT_EMAIL)
    assert row.role == "agent"
    assert row.name == AGENT_NAME
    browser = sign_in(app)
    assert browser.login.status_code == 302
    assert browser.login.headers["Location"] == "/cases/"


def test_the_name_defaults_to_the_first_part_of_the_email(admin, app_env):
    add_user(admin, "linus@example.com", name="")
    assert user_row(app_env, "linus@example.com").name == "linus"


def test_a_bad_add_form_shows_errors_next_to_the_fields_and_keeps_what_was_typed(admin):
    resp = add_user(admin, "new@example.com", name="Newton", password="short")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert 'id="password-error" role="alert">Use a password of at least 10 characters.' in page
    assert 'value="new@example.com"' in page
    assert 'value="Newton"' in page
    assert "short" not in page  # a password is never sent back


def test_an_email_that_exists_is_refused_next_to_the_email(admin):
    resp = add_user(admin, ADMIN_EMAIL.upper())
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert 'id="email-error" role="alert">A user with this email address exists already.' in page


def test_an_admin_makes_an_agent_an_admin(admin, app_env):
    add_user(admin)
    uid = user_row(app_env, AGENT_EMAIL).id
    resp = post_user_form(admin, uid, "role", "admin")
    assert resp.status_code == 303
    assert user_row(app_env, AGENT_EMAIL).role == "admin"


def test_the_last_active_admin_cannot_be_made_an_agent(admin, app_env):
    uid = user_row(app_env, ADMIN_EMAIL).id
    resp = post_user_form(admin, uid, "role", "agent")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert f"{ADMIN_EMAIL} is the last active admin: make another user an admin first" in page
    assert user_row(app_env, ADMIN_EMAIL).role == "admin"


def test_the_last_active_admin_cannot_be_deactivated(admin, app_env):
    add_user(admin)  # an agent does not count
    uid = user_row(app_env, ADMIN_EMAIL).id
    resp = post_user_form(admin, uid, "active", "0")
    assert resp.status_code == 422
    assert "is the last active admin" in resp.get_data(as_text=True)
    assert user_row(app_env, ADMIN_EMAIL).active is True


def test_a_deactivated_admin_does_not_count_as_the_other_admin(admin, app_env):
    add_user(admin, "second@example.com", name="Second", role="admin")
    second = user_row(app_env, "second@example.com").id
    assert post_user_form(admin, second, "active", "0").status_code == 303
    uid = user_row(app_env, ADMIN_EMAIL).id
    assert post_user_form(admin, uid, "role", "agent").status_code == 422


def test_with_two_admins_one_may_step_down_and_lands_on_the_cases(admin, app_env):
    add_user(admin, "second@example.com", name="Second", role="admin")
    uid = user_row(app_env, ADMIN_EMAIL).id
    resp = post_user_form(admin, uid, "role", "agent")
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/cases/"


def test_deactivating_signs_the_user_out_at_once(admin, app, app_env):
    browser = agent(app, admin)
    assert browser.get("/cases/").status_code == 200
    uid = user_row(app_env, AGENT_EMAIL).id
    assert post_user_form(admin, uid, "active", "0").status_code == 303
    resp = browser.get("/cases/")
    assert resp.status_code == 302
    assert "/auth/login" in resp.headers["Location"]


def test_a_deactivated_user_is_told_the_same_as_for_a_wrong_password(admin, app, app_env):
    add_user(admin)
    post_user_form(admin, user_row(app_env, AGENT_EMAIL).id, "active", "0")
    right = sign_in(app).login
    wrong = sign_in(app, password="not the password").login
    assert right.status_code == 422
    assert "Email or password is wrong." in right.get_data(as_text=True)
    assert "Email or password is wrong." in wrong.get_data(as_text=True)


def test_a_reactivated_user_signs_in_again(admin, app, app_env):
    add_user(admin)
    uid = user_row(app_env, AGENT_EMAIL).id
    post_user_form(admin, uid, "active", "0")
    assert post_user_form(admin, uid, "active", "1").status_code == 303
    assert sign_in(app).login.status_code == 302


def test_create_user_command_creates_an_agent(runner, app_env):
    result = runner.invoke(
        args=["create-user", "ops@example.com", "--role", "agent", "--password", AGENT_PASSWORD]
    )
    assert result.exit_code == 0, result.output
    assert "Agent ops@example.com (ops) created." in result.output
    assert user_row(app_env, "ops@example.com").role == "agent"


def test_create_user_command_refuses_an_unknown_role(runner):
    result = runner.invoke(
        args=["create-user", "ops@example.com", "--role", "owner", "--password", AGENT_PASSWORD]
    )
    assert result.exit_code == 2
    assert "'owner' is not one of 'admin', 'agent'" in result.output


def test_an_agent_created_on_the_command_line_signs_in(app, runner):
    runner.invoke(args=["create-admin", ADMIN_EMAIL, "--password", ADMIN_PASSWORD])
    runner.invoke(
        args=["create-user", AGENT_EMAIL, "--role", "agent", "--password", AGENT_PASSWORD]
    )
    browser = sign_in(app)
    assert browser.login.headers["Location"] == "/cases/"


def test_the_migration_makes_existing_users_admins_named_after_their_email(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, "0010_used_code")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO user (email, password_hash, created_at, failed_logins) "
                "VALUES ('boss@example.com', 'x', '2026-01-01 00:00:00', 0)"
            )
        )
    migrate(url)
    with engine.connect() as conn:
        name, role, active = conn.execute(text("SELECT name, role, active FROM user")).one()
    engine.dispose()
    assert name == "boss"
    assert role == "admin"
    assert active == 1


def test_agent_name_in_a_comment_email_is_the_users_name(
    admin, app, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    grace = agent(app, admin)
    assert comment(grace, case.id, "On its way.").status_code == 303
    (row,) = outbox_rows(app_env)
    assert f"On its way.\n\n{AGENT_NAME}\nSupport" in row.text  # the default template's signature
    assert row.created_by == AGENT_EMAIL


def test_an_agent_sees_the_cases_mailbox_by_name_without_a_link_to_its_settings(
    admin, app, app_env, dovecot, mail_user, smtp_server
):
    box = replying_desk(app_env, dovecot, mail_user, smtp_server)
    case = open_case(app_env, box, mail_user)
    page = case_page(agent(app, admin), case.id)
    assert "<dd>Support (" in page
    assert f'href="/mailboxes/{box}"' not in page
    assert f'href="/mailboxes/{box}"' in case_page(admin, case.id)


def test_the_last_admin_rule_holds_on_both_databases(any_db):
    with new_session(any_db) as db:
        first = users.create_user(db, "one@example.com", ADMIN_PASSWORD)
        second = users.create_user(db, "two@example.com", ADMIN_PASSWORD)
        assert users.set_role(db, second, "agent", first.id) is True
        with pytest.raises(users.UserError, match="one@example.com is the last active admin"):
            users.set_active(db, first, False, first.id)
        db.refresh(first)
        assert first.active is True


@pytest.mark.postgres
def test_two_admins_demoting_each_other_at_once_leave_one_admin(postgres_url):
    """The second demotion waits for the first one's lock, then counts again and is refused."""
    with new_session(postgres_url) as setup:
        one = users.create_user(setup, "one@example.com", ADMIN_PASSWORD)
        two = users.create_user(setup, "two@example.com", ADMIN_PASSWORD)
    first = new_session(postgres_url)
    locked = first.exec(select(User).where(User.role == "admin").with_for_update()).all()
    assert len(locked) == 2
    demoted = first.get(User, one.id)
    demoted.role = "agent"
    first.add(demoted)
    first.flush()  # one is being demoted, not yet committed
    outcome = {}

    def demote_two():
        with new_session(postgres_url) as second:
            try:
                users.set_role(second, second.get(User, two.id), "agent", two.id)
                outcome["result"] = "demoted"
            except users.UserError as exc:
                outcome["result"] = str(exc)

    thread = threading.Thread(target=demote_two)
    thread.start()
    thread.join(0.5)  # it waits for the lock
    first.commit()
    first.close()
    thread.join(10)
    assert outcome["result"].startswith("two@example.com is the last active admin")
