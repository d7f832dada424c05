"""case workspace: a case's assignee (a user of the team), and what a history line says

Revision ID: 0017_case_workspace
Revises: 0015_secrets
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "0017_case_workspace"
down_revision = "0015_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written by hand; matches Case.assignee_id and CaseEvent.detail in webapp/models/case.py.
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_case_assignee_id", ["assignee_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_case_assignee_id_user", "user", ["assignee_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("case_event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "detail",
                sqlmodel.sql.sqltypes.AutoString(length=320),
                nullable=False,
                server_default="",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("case_event", schema=None) as batch_op:
        batch_op.drop_column("detail")
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.drop_constraint("fk_case_assignee_id_user", type_="foreignkey")
        batch_op.drop_index("ix_case_assignee_id")
        batch_op.drop_column("assignee_id")
