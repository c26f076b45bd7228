"""What every part of the store shares: the engine, the write turn and its fence, batching,
the meta counters, and the selections of what is published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, nullcontext
from datetime import timedelta

from sqlalchemy import ColumnElement, Integer, Text, cast, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aggregator.errors import Deposed
from aggregator.store.schema import events, meta, sources

#: meta's key of the scheduler's lease epoch: one more each time a process takes the lease
LEASE_EPOCH = "lease_epoch"
#: the token of a store whose process let go of the lease: no epoch is 0 (the first is 1)
DEPOSED = 0


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
        #: (data version, the longest published event's length): events._longest
        self._longest_known: tuple[int, timedelta] | None = None
        #: the fencing token of the scheduler's work this process does: the lease's epoch
        #: when it took the lease (take_fence), DEPOSED once it let go; None: unfenced (the
        #: command line's `refresh`, tools and tests that never lead)
        self.fence: int | None = None

    @asynccontextmanager
    async def _writing(self, *, fenced: bool = False) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block ends.

        `fenced`: a write of the scheduler's work (a source's cycle, a publish). Unless the
        store is unfenced, it commits only if the lease's epoch is still this store's token,
        read in the same transaction just before the commit, and else raises Deposed and
        writes nothing: a leader that lost its lease without noticing yet (a session ended,
        a lock file replaced) cannot write beside its successor. Read at the end, the epoch
        is what the commit follows: on PostgreSQL FOR SHARE, so a new leader's take_fence
        waits for this commit or this read waits for its commit (and sees it); on SQLite a
        transaction that wrote holds the one write lock until it commits, so no new epoch
        comes between (and one that began reading before a new epoch's commit cannot write
        at all: "database is locked").
        """
        token = self.fence
        if fenced and token == DEPOSED:  # known already: no need to do the work
            raise Deposed(None)
        async with self._write_turn or nullcontext(), self.engine.begin() as conn:
            yield conn
            if fenced and token is not None:
                await self._check_fence(conn, token)

    async def _check_fence(self, conn: AsyncConnection, token: int) -> None:
        """Raise Deposed (the transaction rolls back) unless the lease's epoch and this
        store's token are still `token`, the token the write began with: one that began
        before its process let go of the lease is refused, not let through."""
        epoch = await conn.scalar(
            select(meta.c.value).where(meta.c.key == LEASE_EPOCH).with_for_update(read=True)
        )
        epoch = None if epoch is None else int(epoch)
        if epoch != token:
            if self.fence == token:  # another took the lease: later writes refused at once
                self.fence = DEPOSED
            raise Deposed(token, epoch)
        if self.fence != token:  # let go of the lease since this write began
            raise Deposed(None)

    async def take_fence(self) -> int:
        """The lease was just taken: a new fencing token, the lease's epoch one more, in a
        transaction of its own; this store's fenced writes carry it from now on, and those
        of every earlier holder are refused. Called only by the lease's holder."""
        async with self._writing() as conn:
            await _count_up(conn, LEASE_EPOCH)
            token = await _meta_number(conn, LEASE_EPOCH)
        self.fence = token
        return token

    def depose(self) -> None:
        """This process let go of the lease (or lost it): its fenced writes are refused from
        now on, one under way included; never let through unfenced."""
        self.fence = DEPOSED


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
    await _count_up(conn, "writes")


async def _count_up(conn, key: str) -> None:
    """meta's number `key` one more, in one statement (1 when there was none)."""
    done = await conn.execute(
        update(meta)
        .where(meta.c.key == key)
        .values(value=cast(cast(meta.c.value, Integer) + 1, Text))
    )
    if done.rowcount == 0:
        await conn.execute(insert(meta).values(key=key, value="1"))


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
