"""The first schema: sources, their occurrences, published events, fetch history.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from aggregator.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("last_fetch_at", UTCDateTime),
        sa.Column("last_success_at", UTCDateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("failures_in_row", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_check_at", UTCDateTime),
        sa.Column("occurrence_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("warnings", sa.JSON, nullable=False),
    )
    op.create_table(
        "occurrences",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column(
            "source_id",
            sa.String(100),
            sa.ForeignKey("sources.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("uid", sa.Text, nullable=False),
        sa.Column("recurrence_id", sa.String(32)),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("start", sa.String(32), nullable=False),
        sa.Column("end", sa.String(32), nullable=False),
        sa.Column("all_day", sa.Boolean, nullable=False),
        sa.Column("tzid", sa.String(100)),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("categories", sa.JSON, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("fingerprint", sa.String(64), nullable=False),
    )
    op.create_index("ix_occurrences_source_id", "occurrences", ["source_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("last_modified", UTCDateTime, nullable=False),
        sa.Column("start", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("ics", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "fetches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "source_id",
            sa.String(100),
            sa.ForeignKey("sources.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("duration", sa.Float, nullable=False, server_default="0"),
        sa.Column("bytes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_fetches_source_at", "fetches", ["source_id", "at"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("meta", "fetches", "events", "occurrences", "sources"):
        op.drop_table(table)
