"""Config changes lose nothing (rule 12): a source taken out of sources.yaml is marked
removed instead of deleted, and an event that leaves the outputs is marked unpublished
instead of deleted, so its SEQUENCE goes on where it stopped if it comes back.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from aggregator.store.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("removed_at", UTCDateTime, nullable=True))
    op.add_column("events", sa.Column("unpublished_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("unpublished_at")
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("removed_at")
