"""Problems with codes: an attempt's message and a source's last error kept as a problem
(a stable code, the English words, the detail), so a page says them in its own language.
The text columns keep the English words; rows made before have no problem (read as words).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("fetches", sa.Column("problem", sa.JSON, nullable=True))
    op.add_column("sources", sa.Column("last_problem", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("last_problem")
    with op.batch_alter_table("fetches") as batch:
        batch.drop_column("problem")
