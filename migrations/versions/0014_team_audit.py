"""team: a user's name, role (admin | agent) and active flag; the audit log

Revision ID: 0014_team_audit
Revises: 0013_sessions
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "0014_team_audit"
down_revision = "0013_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written by hand; matches User in webapp/models/user.py and AuditEvent in models/audit.py.
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "name",
                sqlmodel.sql.sqltypes.AutoString(length=200),
                nullable=False,
                server_default="",
            )
        )
        batch_op.add_column(
            sa.Column(
                "role",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="admin",
            )  # every existing user was an admin
        )
        batch_op.add_column(
            sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    users = sa.table(
        "user",
        sa.column("id", sa.Integer),
        sa.column("email", sa.String),
        sa.column("name", sa.String),
    )
    conn = op.get_bind()
    for user_id, email in conn.execute(sa.select(users.c.id, users.c.email)).all():
        conn.execute(
            users.update().where(users.c.id == user_id).values(name=email.split("@")[0][:200])
        )

    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_action"), ["action"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_action"))
        batch_op.drop_index(batch_op.f("ix_audit_event_at"))
    op.drop_table("audit_event")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("active")
        batch_op.drop_column("role")
        batch_op.drop_column("name")
