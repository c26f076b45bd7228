"""Windows on the published events (issue 16): each event's start and end as instants, and
the text a search looks in.

- events.starts_at / ends_at: the start and end in microseconds since 1970 (an all-day
  event's dates at midnight UTC), indexed together: a window of the outputs (`?from=`,
  `?days=`, the page's coming weeks, a month) reads only its own rows.
- events.search: the title, place and organisers, folded (aggregator.search): `/?q=` reads
  only the rows that hold its words.
- saved_filters: a selection too long for a subscribe link, under a short key.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from aggregator.normalise import from_iso, instant
from aggregator.search import searched
from aggregator.store.packing import unpack_json
from aggregator.store.schema import UTCMicros

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: rows filled at a time
_BATCH = 2000


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("starts_at", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("ends_at", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("search", sa.Text, nullable=True))
    bind = op.get_bind()
    events = sa.table(
        "events",
        sa.column("id", sa.String),
        sa.column("data", sa.LargeBinary),
        sa.column("starts_at", UTCMicros),
        sa.column("ends_at", UTCMicros),
        sa.column("search", sa.Text),
    )
    rows = bind.execute(sa.select(events.c.id, events.c.data)).all()
    fill = (
        sa.update(events)
        .where(events.c.id == sa.bindparam("event_id"))
        .values(
            starts_at=sa.bindparam("starts_at"),
            ends_at=sa.bindparam("ends_at"),
            search=sa.bindparam("search"),
        )
    )
    for first in range(0, len(rows), _BATCH):
        values = [_window(row.id, row.data) for row in rows[first : first + _BATCH]]
        bind.execute(fill, values)
    op.create_index("ix_events_window", "events", ["starts_at", "ends_at"])
    op.create_table(
        "saved_filters",
        sa.Column("key", sa.String(16), primary_key=True),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("used_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_saved_filters_used_at", "saved_filters", ["used_at"])


def _window(event_id: str, packed: bytes) -> dict:
    data = unpack_json(packed)
    return {
        "event_id": event_id,
        "starts_at": instant(from_iso(data["start"])),
        "ends_at": instant(from_iso(data["end"])),
        "search": searched(data["title"], data["location"], data["organisers"]),
    }


def downgrade() -> None:
    op.drop_table("saved_filters")
    op.drop_index("ix_events_window", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("search")
        batch.drop_column("ends_at")
        batch.drop_column("starts_at")
