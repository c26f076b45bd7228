"""The event lifecycle: occurrences that left their feed, inherited identities, and the
history of changes subscribers saw.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from aggregator.store.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.add_column(
            sa.Column("pending_removals", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("unstable_uids", sa.Boolean, nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("occurrences") as batch:
        batch.add_column(sa.Column("identity", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("missing_since", UTCDateTime))
        batch.add_column(sa.Column("removed_at", UTCDateTime))
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("before", sa.JSON),
        sa.Column("after", sa.JSON, nullable=False),
    )
    op.create_index("ix_changes_event_id", "changes", ["event_id"])
    op.create_index("ix_changes_at", "changes", ["at"])


def downgrade() -> None:
    op.drop_table("changes")
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("unstable_uids")
        batch.drop_column("pending_removals")
    with op.batch_alter_table("occurrences") as batch:
        for column in ("removed_at", "missing_since", "identity"):
            batch.drop_column(column)
