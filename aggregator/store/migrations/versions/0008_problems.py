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
    # the warnings as the older version stores them: their words
    sources = sa.table("sources", sa.column("id", sa.String), sa.column("warnings", sa.JSON))
    connection = op.get_bind()
    for row in connection.execute(sa.select(sources.c.id, sources.c.warnings)).all():
        words = [w["words"] if isinstance(w, dict) else w for w in row.warnings or ()]
        if words != list(row.warnings or ()):
            connection.execute(
                sa.update(sources).where(sources.c.id == row.id).values(warnings=words)
            )
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("last_problem")
    with op.batch_alter_table("fetches") as batch:
        batch.drop_column("problem")
