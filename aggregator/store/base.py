"""What every part of the store shares: the engine, the write turn, batching, the meta
counters, and the selections of what is published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

from sqlalchemy import ColumnElement, Integer, Text, cast, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aggregator.store.schema import events, meta, sources


class StoreBase:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # SQLite has one writer at a time, and a transaction that must wait to upgrade from
        # reading to writing fails at once ("database is locked") instead of waiting; so the
        # writers of this process take turns here. PostgreSQL needs no such turn-taking.
        self._write_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        #: how far the writes went when load_occurrences() last read them all (see publish)
        self._loaded_writes: int | None = None
        #: a publish merges what changed since the last one: no snapshot of this process
        #: is written while it reads the changes and writes what it made of them
        self.merge_turn = asyncio.Lock()

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block ends."""
        if self._write_turn is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_turn, self.engine.begin() as conn:
            yield conn


def _configured(source_id: ColumnElement) -> ColumnElement[bool]:
    """`source_id` is that of a source in sources.yaml (one taken out is kept a while but
    not published). A correlated EXISTS, not `IN (SELECT id ...)`: inside another IN, SQLite
    (3.40) evaluates that list again for every row, 50 times slower (5,000 rows of
    occurrences found by ident_hash: 1.4 s against 0.03 s)."""
    return exists().where(sources.c.id == source_id, sources.c.removed_at.is_(None))


def _still_published(event_id: ColumnElement) -> ColumnElement[bool]:
    """`event_id` is not that of an event that left the outputs (kept for its SEQUENCE).
    NOT EXISTS, never NOT IN (SELECT ...): PostgreSQL cannot make an anti-join of NOT IN
    (NULLs could be in the list), and when the list outgrows work_mem it reads the list
    again for every row."""
    return ~exists().where(events.c.id == event_id, events.c.unpublished_at.is_not(None))


def _chunks(values: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    """At most `size` at a time: SQLite takes a limited number of values in one IN."""
    return (values[i : i + size] for i in range(0, len(values), size))


async def _meta_number(conn, key: str) -> int:
    value = await conn.scalar(select(meta.c.value).where(meta.c.key == key))
    return int(value or 0)


async def _set_meta(conn, key: str, value: str) -> None:
    done = await conn.execute(update(meta).where(meta.c.key == key).values(value=value))
    if done.rowcount == 0:
        await conn.execute(insert(meta).values(key=key, value=value))


async def _owe_publish(conn) -> None:
    """Count a write the outputs do not show yet (publish_owed compares the counts)."""
    done = await conn.execute(
        update(meta)
        .where(meta.c.key == "writes")
        .values(value=cast(cast(meta.c.value, Integer) + 1, Text))
    )
    if done.rowcount == 0:
        await conn.execute(insert(meta).values(key="writes", value="1"))


#: the PostgreSQL channel a publish is told on (lease.Listener hears it)
PUBLISHED_CHANNEL = "aggregator_published"


async def _bump_version(conn) -> None:
    """The data changed: its version one more, and on PostgreSQL a NOTIFY of it, which
    every serving process hears when this transaction commits (never before, never for a
    transaction rolled back)."""
    current = await conn.scalar(select(meta.c.value).where(meta.c.key == "data_version"))
    version = 1 if current is None else int(current) + 1
    if current is None:
        await conn.execute(insert(meta).values(key="data_version", value="1"))
    else:
        await conn.execute(
            update(meta).where(meta.c.key == "data_version").values(value=str(version))
        )
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_notify(PUBLISHED_CHANNEL, str(version))))


#: rows per statement of a large write: each batch's parameters are prepared on the event loop
_BATCH = 500


async def _write_many(conn, statement, rows: Sequence[dict]) -> None:
    """executemany in batches: one statement per batch, not one round trip per row, and the
    event loop answers requests between batches."""
    for start in range(0, len(rows), _BATCH):
        await conn.execute(statement, rows[start : start + _BATCH])
