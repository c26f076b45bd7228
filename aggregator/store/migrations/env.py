"""Alembic environment: migrations run on the connection the Store hands over.

Each migration and its alembic_version row are one transaction (the Store's migration
connection lets SQLite run DDL inside transactions), so a process killed half way leaves
the schema of the last whole migration, never a table without its version.
"""

from alembic import context

from aggregator.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
