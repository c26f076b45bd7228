"""Incremental merging: what a publish needs to merge only what changed.

- occurrences: `row_hash` (whether a new snapshot changed the row), and, kept by publish,
  the network event each occurrence was merged into (`event_id`), its title's key words
  (`set_id`), its place in time (`at`) and hashes of its identity and address: a changed
  occurrence finds its possible copies by them, without reading the network.
- word_sets / word_index / word_counts: each distinct set of title key words, the words it
  looks for copies by, and how often each word occurs in the network (what makes it rare).
- merge_pending: the occurrences added, changed or deleted since the last publish, with
  the event and word set each was merged with at the last publish.
- events.expires_at: when a cancelled or postponed event's date has passed (rule 7).

A database made before has no merge state: its next publish merges the whole network once
and fills it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_OCCURRENCE_COLUMNS = (
    ("row_hash", sa.String(16)),
    ("event_id", sa.String(64)),
    ("set_id", sa.Integer),
    ("at", sa.BigInteger),
    ("ident_hash", sa.BigInteger),
    ("url_hash", sa.BigInteger),
)
_INDEXES = ("event_id", "set_id", "at", "ident_hash", "url_hash")


def upgrade() -> None:
    with op.batch_alter_table("occurrences") as batch:
        for name, kind in _OCCURRENCE_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    for name in _INDEXES:
        op.create_index(f"ix_occurrences_{name}", "occurrences", [name])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime, nullable=True))
    op.create_table(
        "word_sets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("words", sa.Text, nullable=False, unique=True),
        sa.Column("probes", sa.Text, nullable=False),
    )
    op.create_table(
        "word_index",
        sa.Column("word", sa.Text, primary_key=True),
        sa.Column("set_id", sa.Integer, primary_key=True),
    )
    op.create_table(
        "word_counts",
        sa.Column("word", sa.Text, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "merge_pending",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(64)),
        sa.Column("set_id", sa.Integer),
    )


def downgrade() -> None:
    for table in ("merge_pending", "word_counts", "word_index", "word_sets"):
        op.drop_table(table)
    op.execute("DELETE FROM meta WHERE key IN ('merge_config', 'merge_total')")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("expires_at")
    for name in _INDEXES:
        op.drop_index(f"ix_occurrences_{name}", "occurrences")
    with op.batch_alter_table("occurrences") as batch:
        for name, _kind in _OCCURRENCE_COLUMNS:
            batch.drop_column(name)
