"""Source health: failing since, a held drop, gone, moved; fetch outcomes in words.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from aggregator.store.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("failing_since", UTCDateTime))
        batch.add_column(sa.Column("held_drop", sa.Text))
        batch.add_column(sa.Column("gone_at", UTCDateTime))
        batch.add_column(sa.Column("moved_to", sa.Text))
    with op.batch_alter_table("fetches") as batch:
        batch.add_column(sa.Column("message", sa.Text))
    # a source failing when the database was made has been failing since its last fetch
    op.execute(
        "UPDATE sources SET failing_since = last_fetch_at "
        "WHERE failures_in_row > 0 AND failing_since IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("fetches") as batch:
        batch.drop_column("message")
    with op.batch_alter_table("sources") as batch:
        for column in ("moved_to", "gone_at", "held_drop", "failing_since"):
            batch.drop_column(column)
