"""The identities published under an event id, found by the id (issue 15).

A merge asks, for the ids the events it makes may take, which identities were published
under them (store.live_holders). Without an index that is a scan of every identity per
500 ids: at 1,000 members 97 of a whole-network merge's 269 seconds.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_identities_event_id", "identities", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_identities_event_id", table_name="identities")
