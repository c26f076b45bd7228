"""RSS sources: the linked event pages, kept between fetches; how an item's time was found.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from aggregator.store.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("occurrences") as batch:
        batch.add_column(sa.Column("origin", sa.Text, nullable=False, server_default=""))
    op.create_table(
        "pages",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column(
            "source_id",
            sa.String(100),
            sa.ForeignKey("sources.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("item_fingerprint", sa.String(64), nullable=False),
        sa.Column("fetched_at", UTCDateTime, nullable=False),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_pages_source_id", "pages", ["source_id"])


def downgrade() -> None:
    op.drop_table("pages")
    with op.batch_alter_table("occurrences") as batch:
        batch.drop_column("origin")
