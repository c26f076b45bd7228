"""Source health page: how many occurrences a source had after each fetch (its timeline).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # earlier fetches have no count: the timeline leaves them out of the line
    op.add_column("fetches", sa.Column("occurrences", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fetches") as batch:
        batch.drop_column("occurrences")
