"""The only module that talks to the database: a Store with use-named methods.

SQLAlchemy 2 Core (async) on aiosqlite; the schema is made and changed by Alembic
migrations, so a database made by an older version migrates on open.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from urllib.parse import quote, unquote

from sqlalchemy import event, func, inspect, make_url, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from aggregator.store import schema
from aggregator.store.base import _configured
from aggregator.store.events import EventsMixin
from aggregator.store.filters import FiltersMixin
from aggregator.store.merging import FullMergeMixin, MergingMixin
from aggregator.store.occurrences import OccurrencesMixin
from aggregator.store.sources import MAX_WARNINGS, SourcesMixin

__all__ = ["MAX_WARNINGS", "ForeignDatabase", "Store", "said", "shown"]

MIGRATIONS = Path(__file__).parent / "migrations"


class ForeignDatabase(Exception):  # noqa: N818  (a refusal, like RemovalRefused)
    """The database's alembic_version names a revision none of our migrations has: another
    application's database, or a newer aggregator's. Nothing was changed in it."""


def revisions() -> set[str]:
    """Every migration's revision: each file is named after its own (0011_...)."""
    return {p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py")}


def _head() -> str:
    """The newest migration's revision."""
    return max(revisions())


def stored_revisions(connection: Connection) -> list[str] | None:
    """The revisions in the database's alembic_version; None when it has no such table."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return [str(row[0]) for row in rows]


def foreign_revisions(connection: Connection) -> list[str]:
    """The revisions in alembic_version that are not ours (none: ours, or no Alembic)."""
    ours = revisions()
    return [r for r in stored_revisions(connection) or [] if r not in ours]


def _at_head(connection: Connection) -> bool:
    """Whether the schema is the newest already (no need to load Alembic: 0.2 s a run)."""
    return stored_revisions(connection) == [_head()]


def _refuse_foreign(connection: Connection) -> None:
    """Before Alembic sees it: Alembic would fail on a revision it cannot find with a
    traceback, after taking the migration lock; this says what the database is."""
    foreign = foreign_revisions(connection)
    if foreign:
        raise ForeignDatabase(
            f"its alembic_version is {', '.join(foreign)}, a revision this aggregator's "
            f"schema does not have (ours are {min(revisions())} to {_head()}): another "
            "application's database, or a newer aggregator's; nothing was changed"
        )


#: PostgreSQL: the advisory lock that lets one process at a time migrate (several start
#: together: web processes and a scheduler)
MIGRATION_LOCK = 0x61676772_6D696772


def _upgrade(connection: Connection) -> None:
    if _at_head(connection):
        return
    _refuse_foreign(connection)
    if connection.dialect.name == "postgresql":
        # held by the session until it ends; the others wait here, then find the schema at
        # its head already
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
        connection.commit()
        if _at_head(connection):
            return
    from alembic import command  # noqa: PLC0415  (only when a migration is due)
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def _migrate(url: str) -> None:
    """Bring the schema to the newest version, each migration with its version row in one
    transaction (env.py: transaction_per_migration), so a process killed at any moment
    leaves the schema of the last whole migration and the next start goes on from there.

    pysqlite (under aiosqlite) opens no transaction before DDL, so each CREATE or ALTER
    would commit alone: on this connection the driver's own BEGIN is switched off and
    SQLAlchemy's begin emits it, which makes SQLite's DDL transactional (SQLAlchemy docs,
    "Serializable isolation / Savepoints / Transactional DDL" for pysqlite and aiosqlite).
    """
    engine = create_async_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _migration_pragmas)
        event.listen(engine.sync_engine, "begin", _begin)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_upgrade)
            await conn.commit()
    finally:
        await engine.dispose()
    path = engine.url.database
    if engine.dialect.name == "sqlite" and path and path != ":memory:":
        await asyncio.to_thread(_give_back_space, path)


def _give_back_space(path: str) -> None:
    """VACUUM when over half the file is free pages (a migration that rewrote the tables
    leaves their old pages free): the file shrinks to what the data takes. A database
    refreshed as usual reuses its few free pages and is left alone."""
    connection = sqlite3.connect(path)
    try:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        if pages and free * 2 > pages:
            connection.execute("VACUUM")
    finally:
        connection.close()


def _migration_pragmas(dbapi_connection, record) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    # SQLite's batch migrations copy a table and drop the old one; with foreign keys on,
    # that drop would cascade to the child rows (occurrences!). Only outside a transaction
    # does this pragma take effect, so here, before any BEGIN.
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.close()
    dbapi_connection.isolation_level = None  # no BEGIN from the driver: see _begin


def _begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


class Store(
    SourcesMixin, OccurrencesMixin, EventsMixin, MergingMixin, FullMergeMixin, FiltersMixin
):
    """The store: each part of it in a module of its own (sources, occurrences, events)."""

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and migrate the schema to the newest version."""
        await _migrate(url)
        engine = create_async_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    # -- sources -------------------------------------------------------------------------
    async def data_version(self) -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                select(schema.meta.c.value).where(schema.meta.c.key == "data_version")
            )
            return int(value or 0)

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            count = select(func.count())
            return {
                "sources": await conn.scalar(
                    count.select_from(schema.sources).where(schema.sources.c.removed_at.is_(None))
                ),
                "occurrences": await conn.scalar(
                    count.select_from(schema.occurrences).where(
                        _configured(schema.occurrences.c.source_id)
                    )
                ),
                "events": await conn.scalar(
                    count.select_from(schema.events).where(schema.events.c.unpublished_at.is_(None))
                ),
            }


def shown(url: str) -> str:
    """The database URL as it may be printed or logged: its password hidden (***)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not a URL SQLAlchemy reads: hide what looks like one
        return re.sub(r"(^|/)([^/@:]*):[^@/]*@", r"\1\2:***@", url)


def said(error: BaseException, *urls: str) -> str:
    """An error's words in one line, fit to print: the database's own words (SQLAlchemy's
    add the statement, a batch of its rows and a link), and never a password of `urls`,
    whatever the driver quoted."""
    words = str(getattr(error, "orig", None) or error) or type(error).__name__
    words = " ".join(words.split())
    for url in urls:
        try:
            password = make_url(url).password
        except (ArgumentError, ValueError):
            password = None
        if password:
            for form in {password, quote(password, safe=""), unquote(password)}:
                words = words.replace(form, "***")
    return words[:500]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: no corruption on a crash, far fewer fsyncs (https://sqlite.org/wal.html)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
