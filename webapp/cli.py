"""Shell commands: `flask --app webapp create-admin EMAIL --password PW`,
`create-user EMAIL --role agent --password PW`, `create-token NAME`, `rotate-key`."""

from __future__ import annotations

import click
from flask import Flask, current_app

from webapp import crypto
from webapp.db import new_session
from webapp.models.user import ADMIN, ROLES
from webapp.services import keys
from webapp.services.access import users


def _db():
    return new_session(current_app.config["SETTINGS"].database_url)


def register_cli(app: Flask) -> None:
    @app.cli.command("create-admin")
    @click.argument("email")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    def create_admin(email: str, password: str) -> None:
        """Create an admin account."""
        with _db() as db:
            try:
                user = users.create_user(db, email, password)
            except users.UserError as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(f"Admin {user.email} created.")

    @app.cli.command("create-user")
    @click.argument("email")
    @click.option("--role", type=click.Choice(list(ROLES)), default=ADMIN, show_default=True)
    @click.option(
        "--name", default="", help="Shown as agent_name; the email's first part if blank."
    )
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    def create_user(email: str, role: str, name: str, password: str) -> None:
        """Create a user: an admin, or an agent (--role agent)."""
        with _db() as db:
            try:
                user = users.create_user(db, email, password, name=name, role=role)
            except users.UserError as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(f"{ROLES[user.role]} {user.email} ({user.name}) created.")

    @app.cli.command("create-token")
    @click.argument("name")
    def create_token(name: str) -> None:
        """Create an API token and print it (last line)."""
        with _db() as db:
            _row, token = users.create_token(db, name)
        click.echo(f"Token “{name}” created. It is shown only once:")
        click.echo(token)

    @app.cli.command("rotate-key")
    def rotate_key() -> None:
        """Re-encrypt every stored secret with the first key of ENCRYPTION_KEY."""
        with _db() as db:
            try:
                touched = keys.rotate_secrets(db)
            except crypto.SecretUnreadable as exc:
                raise click.ClickException(str(exc)) from exc
        rows = sum(touched.values())
        detail = ", ".join(f"{table}: {count}" for table, count in touched.items() if count)
        click.echo(
            f"Re-encrypted the secrets of {rows} row{'' if rows == 1 else 's'} with the first "
            f"key of ENCRYPTION_KEY{f' ({detail})' if detail else ''}."
        )
        if crypto.key_count() > 1:
            click.echo("Every secret now uses the first key: remove the other keys.")
        else:
            click.echo(
                "ENCRYPTION_KEY holds one key. To rotate, put a new key first, e.g. "
                f"ENCRYPTION_KEY={crypto.new_key()},OLD_KEY, run rotate-key, then remove OLD_KEY."
            )
