"""`aggregator copy --to URL`: an installation's database moved into another, SQLite to
PostgreSQL or back, whole and checked. The source is only read (once migrated to the newest
schema, as any start does); the target must be empty.

    refuse when source and target are one database, the target is another application's
        (tables or an Alembic revision not ours), or holds rows
    source = Store.open(database_url)             # migrated to the newest schema
    target = Store.open(to_url)                   # made at the newest schema by Alembic
    in one read snapshot of the source and one transaction on the target:
        for table in foreign-key order, texts last:
            stream its rows, insert them a batch at a time
        PostgreSQL: move each id sequence past the ids copied
        compare the rows of every table in source and target
    commit: a failure anywhere leaves the target as empty as it was

Rows are copied as the database keeps them (packed bytes, microseconds), not through the
store's column types: nothing is unpacked and packed again, and the bytes stay the same.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import (
    Column,
    MetaData,
    Table,
    TypeDecorator,
    func,
    insert,
    inspect,
    literal_column,
    make_url,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from aggregator.store import ForeignDatabase, Store, foreign_revisions, said, shown
from aggregator.store.schema import metadata, texts

#: rows read and inserted at a time: one executemany each, so memory holds one batch
BATCH = 2000
#: a table this long says how far it is every so many rows
PROGRESS_EVERY = 100_000


class CopyError(Exception):
    """The copy did not happen; the words say what and where."""


class CopyRefused(CopyError):
    """Not started: the target is the source, another application's database, or holds
    rows. Nothing was written."""


class CopyFailed(CopyError):
    """A database could not be opened, or the copy failed and was undone."""


async def copy_database(
    source_url: str, target_url: str, say: Callable[[str], None] = print
) -> dict[str, int]:
    """Copy every table of the source database into the empty target; the rows of each.

    Raises CopyRefused when the two are one database, the target is another
    application's or holds rows (nothing written), CopyFailed when a database cannot be
    opened or the copy fails (the target left empty)."""
    source_shown, target_shown = shown(source_url), shown(target_url)
    if _same_database(source_url, target_url):
        raise CopyRefused(f"{target_shown} is the source database itself")
    # before the target is opened: opening migrates, and an installation is not touched
    await _refuse_what_is_in(target_url)
    source = await _open(source_url, "source")
    try:
        target = await _open(target_url, "target")
        try:
            say(f"copying {source_shown} into {target_shown}")
            counts = await _copy(source.engine, target.engine, target_shown, say)
        finally:
            await target.close()
    finally:
        await source.close()
    for name, rows in counts.items():
        say(f"{name}: {rows} rows")
    say(f"copied {sum(counts.values())} rows of {len(counts)} tables into {target_shown}")
    return counts


async def _open(url: str, role: str) -> Store:
    try:
        return await Store.open(url)
    except ForeignDatabase as e:
        raise CopyRefused(f"the {role} database {shown(url)} is not ours: {e}") from e
    except (SQLAlchemyError, OSError, sqlite3.Error) as e:
        raise CopyFailed(f"cannot open the {role} database {shown(url)}: {said(e, url)}") from e


async def _refuse_what_is_in(url: str) -> None:
    """Refuse a target that is another application's database (a table, or an Alembic
    revision, not ours) or holds rows, before anything touches it (a SQLite file that is
    not there yet is empty, and is not made here)."""
    address = make_url(url)
    if address.get_backend_name() == "sqlite" and not _sqlite_file(url).exists():
        return
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            foreign = await conn.run_sync(_foreign)
            held = [] if foreign else await _tables_with_rows(conn)
    except (SQLAlchemyError, OSError, sqlite3.Error) as e:
        raise CopyFailed(f"cannot open the target database {shown(url)}: {said(e, url)}") from e
    finally:
        await engine.dispose()
    if foreign:
        raise CopyRefused(
            f"{shown(url)} is another application's database ({foreign}); "
            "copy only into an empty database, never over another's"
        )
    if held:
        raise CopyRefused(_holds_rows(url, held))


def _foreign(conn: Connection) -> str:
    """What says that the database is not ours: tables that are not, an Alembic revision
    that is not ("" when neither)."""
    ours = {table.name for table in metadata.sorted_tables} | {"alembic_version"}
    tables = sorted(set(inspect(conn).get_table_names()) - ours)
    revisions = foreign_revisions(conn)
    signs = []
    if tables:
        signs.append(f"tables {', '.join(tables[:5])}{', ...' if len(tables) > 5 else ''}")
    if revisions:
        signs.append(f"Alembic revision {', '.join(revisions)}")
    return "; ".join(signs)


def _url(engine: AsyncEngine) -> str:
    """The engine's URL with its password (str() hides it): to find it in words, and hide it."""
    return engine.url.render_as_string(hide_password=False)


def _holds_rows(url: str, held: list[str]) -> str:
    return (
        f"{shown(url)} already holds rows ({', '.join(held)}); "
        "copy only into an empty database, never over an installation"
    )


async def _tables_with_rows(conn: AsyncConnection) -> list[str]:
    """The store's tables in this database that hold a row."""
    present = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    held = []
    for table in metadata.sorted_tables:
        if table.name in present:
            one = select(literal_column("1")).select_from(table).limit(1)
            if (await conn.execute(one)).first() is not None:
                held.append(table.name)
    return held


async def _copy(
    source: AsyncEngine, target: AsyncEngine, target_shown: str, say: Callable[[str], None]
) -> dict[str, int]:
    """Every table, in one transaction on the target, checked before it commits."""
    table = None
    try:
        async with _snapshot(source) as reading, target.begin() as writing:
            held = await _tables_with_rows(writing)
            if held:  # rows written since the check before the target was opened
                raise CopyRefused(_holds_rows(str(target.url), held))
            for table in copy_order():
                await _copy_table(reading, writing, table, say)
            table = None
            if writing.dialect.name == "postgresql":
                await _move_sequences(writing)
            return await _compare(reading, writing, target_shown)
    except (SQLAlchemyError, OSError, sqlite3.Error) as e:
        where = f" at table {table.name}" if table is not None else ""
        raise CopyFailed(
            f"copying into {target_shown} failed{where}, nothing was kept there: "
            f"{said(e, *(_url(engine) for engine in (source, target)))}"
        ) from e


def copy_order() -> list[Table]:
    """The tables in foreign-key order, texts last. Triggers count in texts.refs the rows
    that name a text (migration 0010), and count again as those rows are inserted: with
    texts copied after them there is no text to count in yet, and the refs come as stored."""
    tables = [t for t in metadata.sorted_tables if t is not texts]
    return [*tables, texts]


@asynccontextmanager
async def _snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection that reads the whole database as it was at one moment, while a server
    may go on writing: every table's rows of one state, so the copy holds together."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = await conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            async with conn.begin():
                yield conn
            return
        # pysqlite opens a transaction only before a write, so each SELECT would read the
        # state of its own moment; in WAL mode one open transaction reads one state
        await conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            await conn.rollback()


async def _copy_table(
    reading: AsyncConnection, writing: AsyncConnection, table: Table, say: Callable[[str], None]
) -> int:
    """Stream the table's rows in primary-key order (texts keep their order of ids, in which
    they fill the pages) and insert them a batch at a time."""
    stored = _as_stored(table)
    query = select(stored).order_by(*stored.primary_key.columns)
    result = await reading.stream(query.execution_options(yield_per=BATCH))
    statement = insert(stored)
    copied = 0
    async for rows in result.partitions():
        await writing.execute(statement, [row._asdict() for row in rows])
        if (copied + len(rows)) // PROGRESS_EVERY > copied // PROGRESS_EVERY:
            say(f"  {table.name}: {copied + len(rows)} rows so far")
        copied += len(rows)
    say(f"{table.name}: copied {copied} rows")
    return copied


#: one per table: the store's tables with the types the database keeps
_stored_tables: dict[str, Table] = {}


def _as_stored(table: Table) -> Table:
    """The table with its columns of the types the database keeps: Packed as bytes,
    UTCMicros as integers, UTCDateTime as naive UTC. JSON stays JSON (decoded and encoded
    again: its text is not the same on PostgreSQL, where it is a json column)."""
    if table.name not in _stored_tables:
        columns = [
            Column(
                c.name,
                c.type.impl_instance if isinstance(c.type, TypeDecorator) else c.type,
                primary_key=c.primary_key,
                autoincrement=False,
            )
            for c in table.columns
        ]
        _stored_tables[table.name] = Table(table.name, _STORED, *columns)
    return _stored_tables[table.name]


_STORED = MetaData()


async def _move_sequences(conn: AsyncConnection) -> None:
    """PostgreSQL takes a new id from the column's sequence, which the copied ids did not
    move: without this the next fetch recorded would collide with the first copied one."""
    for table in metadata.sorted_tables:
        column = table.autoincrement_column
        if column is None:
            continue
        await conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                f"COALESCE(MAX({column.name}), 1), MAX({column.name}) IS NOT NULL) "
                f"FROM {table.name}"
            )
        )


async def _compare(
    reading: AsyncConnection, writing: AsyncConnection, target_shown: str
) -> dict[str, int]:
    """The rows of each table, counted in both; a difference undoes the copy."""
    counts = {}
    for table in metadata.sorted_tables:
        count = select(func.count()).select_from(table)
        source_rows = await reading.scalar(count)
        target_rows = await writing.scalar(count)
        if source_rows != target_rows:
            raise CopyFailed(
                f"table {table.name} has {source_rows} rows in the source but "
                f"{target_rows} in {target_shown}; nothing was kept there"
            )
        counts[table.name] = source_rows
    return counts


def _same_database(a: str, b: str) -> bool:
    """Whether two URLs name one database: one SQLite file (by its real path), or one
    database of one PostgreSQL server (the user and driver do not matter)."""
    first, second = make_url(a), make_url(b)
    if first.get_backend_name() != second.get_backend_name():
        return False
    if first.get_backend_name() == "sqlite":
        return os.path.realpath(_sqlite_file(a)) == os.path.realpath(_sqlite_file(b))
    return _server(first) == _server(second) and first.database == second.database


def _server(url) -> tuple[str, int]:
    local = {None, "", "localhost", "127.0.0.1", "::1"}
    return ("local" if url.host in local else url.host.lower(), url.port or 5432)


def _sqlite_file(url: str) -> Path:
    return Path(make_url(url).database or "")
