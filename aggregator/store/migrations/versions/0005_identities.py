"""Merging: the network id each member identity was published under.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("identity", sa.Text, primary_key=True),
        sa.Column("event_id", sa.String(64), nullable=False),
    )
    # events published so far keep their ids: their members' identities map to them
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT key, uid, recurrence_id, identity FROM occurrences"))
    mapping = {}
    for _key, uid, recurrence_id, identity in rows:
        ident = identity or f"{uid}\x1f{recurrence_id or ''}"
        mapping.setdefault(ident, None)
    if mapping:
        from aggregator.normalise import event_id

        op.bulk_insert(
            sa.table("identities", sa.column("identity"), sa.column("event_id")),
            [{"identity": i, "event_id": event_id(*i.split("\x1f"))} for i in mapping],
        )


def downgrade() -> None:
    op.drop_table("identities")
