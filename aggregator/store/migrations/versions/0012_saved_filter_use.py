"""Saved filters a subscriber uses are kept (issue 25): saved_filters.fetched_at, when the
key was last fetched as a calendar or a feed. Only keys never fetched so (made by a page
and never subscribed to) are pushed out by new ones; a key in use stays.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("saved_filters") as batch:
        batch.add_column(sa.Column("fetched_at", sa.BigInteger, nullable=True))
    op.create_index("ix_saved_filters_fetched_at", "saved_filters", ["fetched_at"])


def downgrade() -> None:
    op.drop_index("ix_saved_filters_fetched_at", "saved_filters")
    with op.batch_alter_table("saved_filters") as batch:
        batch.drop_column("fetched_at")
