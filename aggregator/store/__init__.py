"""The only module that talks to the database: a Store with use-named methods.

SQLAlchemy 2 Core (async) on aiosqlite; the schema is made and changed by Alembic
migrations, so a database made by an older version migrates on open.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Integer, Text, bindparam, cast, delete, event, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from aggregator.errors import RemovalRefused
from aggregator.model import (
    Attempt,
    CachedPage,
    FoundEvent,
    MergedEvent,
    NetworkEvent,
    Occurrence,
    PageData,
    Source,
    SourceState,
    Status,
    Validators,
)
from aggregator.normalise import fingerprint, from_iso, iso
from aggregator.reconcile import event_change, identity_of
from aggregator.store.schema import (
    changes,
    events,
    fetches,
    identities,
    meta,
    occurrences,
    pages,
    sources,
)

__all__ = ["Store"]

MIGRATIONS = Path(__file__).parent / "migrations"
FETCH_HISTORY = timedelta(days=30)
#: a source's stored warnings, at most
MAX_WARNINGS = 200

#: renders a merged event with its version (sequence, created, last modified) into VEVENT
#: bytes; None when the event could not be rendered (it is skipped, the rest is published)
RenderEvent = Callable[[MergedEvent, int, datetime, datetime], bytes | None]


def _upgrade(connection: Connection) -> None:
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


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # SQLite has one writer at a time, and a transaction that must wait to upgrade from
        # reading to writing fails at once ("database is locked") instead of waiting; so the
        # writers of this process take turns here. PostgreSQL needs no such turn-taking.
        self._write_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        #: how far the writes went when load_occurrences() last read them all (see publish)
        self._loaded_writes: int | None = None

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block ends."""
        if self._write_turn is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_turn, self.engine.begin() as conn:
            yield conn

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

    async def sync_sources(
        self,
        configured: Iterable[Source],
        *,
        now: datetime | None = None,
        allow_removals: bool = False,
    ) -> bool:
        """Make the stored sources those configured; whether any came, went or came back.

        A new address from the operator forgets what the old one told us (validators, a
        permanent move, gone, failures and backoff). A source taken out of sources.yaml is
        unpublished, not deleted (rule 12): its occurrences leave every output at the next
        publish, its data stays `limits.removed_source_days` (prune_history) unless
        `aggregator prune` deletes it, and put back it returns with the same network ids.
        A configuration that would unpublish more than half the published sources at once
        (a missing config mount, the demo file in its place) is refused with RemovalRefused
        and changes nothing, unless `allow_removals`.
        """
        configured = list(configured)
        now = now or datetime.now(UTC)
        wanted = {s.id for s in configured}
        async with self._writing() as conn:
            rows = {
                r.id: r
                for r in await conn.execute(
                    select(sources.c.id, sources.c.url, sources.c.removed_at)
                )
            }
            published = [i for i, r in rows.items() if r.removed_at is None]
            leaving = sorted(i for i in published if i not in wanted)
            if leaving and len(leaving) * 2 > len(published) and not allow_removals:
                raise RemovalRefused(_refusal(leaving, len(published)))
            came = False
            for source in configured:
                row = rows.get(source.id)
                if row is None:
                    await conn.execute(
                        insert(sources).values(id=source.id, url=source.url, warnings=[])
                    )
                    came = True
                    continue
                values: dict = {}
                if row.removed_at is not None:
                    values["removed_at"] = None
                    came = True
                if row.url != source.url:
                    values.update(
                        url=source.url,
                        etag=None,
                        last_modified=None,
                        content_hash=None,
                        moved_to=None,
                        gone_at=None,
                        held_drop=None,
                        failures_in_row=0,
                        failing_since=None,
                        last_error=None,
                        next_check_at=None,
                    )
                if values:
                    await conn.execute(
                        update(sources).where(sources.c.id == source.id).values(**values)
                    )
            if leaving:
                await conn.execute(
                    update(sources).where(sources.c.id.in_(leaving)).values(removed_at=now)
                )
            if came or leaving:
                await _owe_publish(conn)
        return came or bool(leaving)

    async def delete_removed_sources(self, configured: Iterable[Source]) -> dict[str, dict]:
        """Delete at once everything kept of the sources not in `configured` (`aggregator
        prune`): occurrences, fetches, pages, the ids of their events and their unpublished
        events. What was deleted, per source: {"occurrences": n, "fetches": n, ...}.

        Run sync_sources and a publish first: a source still published is deleted here too,
        and its events would stay in the outputs until the next publish.
        """
        wanted = {s.id for s in configured}
        async with self._writing() as conn:
            stored = [r.id for r in await conn.execute(select(sources.c.id))]
            gone = sorted(i for i in stored if i not in wanted)
            return await _delete_sources(conn, gone) if gone else {}

    async def source_states(self) -> dict[str, SourceState]:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(sources))
            return {row.id: _source_state(row) for row in result}

    async def source_state(self, source_id: str) -> SourceState:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(sources).where(sources.c.id == source_id))).one()
            return _source_state(row)

    async def record_attempt(
        self,
        source_id: str,
        attempt: Attempt,
        snapshot: Sequence[Occurrence] | None = None,
        *,
        content_hash: str | None = None,
        warnings: Sequence[str] = (),
    ) -> None:
        """Record one fetch attempt and its effect on the source, in one transaction.

        Every attempt is kept, whatever its outcome (prune_history forgets old ones). Only
        'updated' with a snapshot replaces the source's occurrences; a failure or a held drop
        changes none of them.
        """
        values: dict = {"last_fetch_at": attempt.at, "next_check_at": attempt.next_check_at}
        if attempt.outcome == "failed":
            values.update(
                last_error=attempt.error,
                failures_in_row=sources.c.failures_in_row + 1,
                failing_since=func.coalesce(sources.c.failing_since, attempt.at),
            )
            if attempt.gone:
                values["gone_at"] = func.coalesce(sources.c.gone_at, attempt.at)
        else:
            values.update(
                last_success_at=attempt.at,
                last_error=None,
                failures_in_row=0,
                failing_since=None,
                gone_at=None,
                held_drop=attempt.held_drop,
            )
            if attempt.validators is not None:
                values.update(
                    etag=attempt.validators.etag, last_modified=attempt.validators.last_modified
                )
            if attempt.moved_to:
                values["moved_to"] = attempt.moved_to
        if attempt.forget_move:
            values["moved_to"] = None
        if attempt.unstable_uids:
            values["unstable_uids"] = True
        if snapshot is not None:
            values.update(
                occurrence_count=len(snapshot),
                pending_removals=sum(
                    o.missing_since is not None and o.removed_at is None for o in snapshot
                ),
            )
            if content_hash is not None:  # None: the same body confirmed removals
                values.update(content_hash=content_hash, warnings=_capped(warnings))
        async with self._writing() as conn:
            await conn.execute(
                insert(fetches).values(
                    source_id=source_id,
                    at=attempt.at,
                    outcome=attempt.outcome,
                    status=attempt.status,
                    duration=attempt.duration,
                    bytes=attempt.bytes,
                    error=attempt.error,
                    message=attempt.message,
                    occurrences=(
                        len(snapshot)
                        if snapshot is not None
                        else select(sources.c.occurrence_count)
                        .where(sources.c.id == source_id)
                        .scalar_subquery()
                    ),
                )
            )
            await conn.execute(update(sources).where(sources.c.id == source_id).values(**values))
            if snapshot is not None:
                await conn.execute(delete(occurrences).where(occurrences.c.source_id == source_id))
                if snapshot:
                    rows = await asyncio.to_thread(_occurrence_rows, snapshot)
                    await _write_many(conn, insert(occurrences), rows)
                if attempt.outcome == "updated":
                    # in the same transaction: a process killed before it publishes leaves
                    # the debt, and the next refresh pays it though the feed reads unchanged
                    await _owe_publish(conn)

    async def add_source_warnings(self, source_id: str, warnings: Sequence[str]) -> None:
        """Add warnings to the source's stored ones (e.g. an event that could not be
        rendered), each once, at most MAX_WARNINGS in all; the next read of the feed
        replaces them all."""
        if not warnings:
            return
        async with self._writing() as conn:
            current = await conn.scalar(select(sources.c.warnings).where(sources.c.id == source_id))
            if current is None:
                return
            kept = list(dict.fromkeys([*current, *warnings]))[:MAX_WARNINGS]
            if kept != list(current):
                await conn.execute(
                    update(sources).where(sources.c.id == source_id).values(warnings=kept)
                )

    async def load_pages(self, source_id: str) -> dict[str, CachedPage]:
        """The linked pages of an RSS source's items, by URL."""
        async with self.engine.connect() as conn:
            result = await conn.execute(select(pages).where(pages.c.source_id == source_id))
            return {
                row.url: CachedPage(
                    page=_page(row.data),
                    item_fingerprint=row.item_fingerprint,
                    fetched_at=row.fetched_at,
                    validators=Validators(etag=row.etag, last_modified=row.last_modified),
                )
                for row in result
            }

    async def save_pages(self, source_id: str, cached: Sequence[CachedPage]) -> None:
        """Keep pages read in this cycle, replacing what was kept for the same URLs."""
        if not cached:
            return
        async with self._writing() as conn:
            urls = [c.page.url for c in cached]
            await conn.execute(delete(pages).where(pages.c.url.in_(urls)))
            await conn.execute(
                insert(pages),
                [
                    {
                        "url": c.page.url,
                        "source_id": source_id,
                        "item_fingerprint": c.item_fingerprint,
                        "fetched_at": c.fetched_at,
                        "etag": c.validators.etag,
                        "last_modified": c.validators.last_modified,
                        "data": _page_data(c.page),
                    }
                    for c in cached
                ],
            )

    async def prune_history(self, now: datetime, *, removed_source_days: int = 30) -> None:
        """Forget fetch attempts older than 30 days, and sources taken out of the
        configuration and events unpublished more than `removed_source_days` ago."""
        cutoff = now - timedelta(days=removed_source_days)
        async with self._writing() as conn:
            await conn.execute(delete(fetches).where(fetches.c.at < now - FETCH_HISTORY))
            expired = [
                r.id
                for r in await conn.execute(
                    select(sources.c.id).where(sources.c.removed_at < cutoff)
                )
            ]
            if expired:
                await _delete_sources(conn, expired)
            old = select(events.c.id).where(events.c.unpublished_at < cutoff)
            await conn.execute(delete(changes).where(changes.c.event_id.in_(old)))
            await conn.execute(delete(events).where(events.c.unpublished_at < cutoff))

    async def fetch_history(self, source_id: str, limit: int = 100) -> list[dict]:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(fetches)
                .where(fetches.c.source_id == source_id)
                .order_by(fetches.c.at.desc(), fetches.c.id.desc())
                .limit(limit)
            )
            return [dict(row._mapping) for row in result]

    # -- occurrences ---------------------------------------------------------------------

    async def load_occurrences(self, source_id: str | None = None) -> list[Occurrence]:
        """The occurrences of the configured sources (or of one), for publishing: those of a
        source taken out of sources.yaml are kept but never loaded.

        Without a source id this is the read a publish starts from: it notes how far the
        writes went, and the next `publish` settles what was owed up to there."""
        query = (
            select(occurrences)
            .where(occurrences.c.source_id.in_(_configured))
            .order_by(occurrences.c.key)
        )
        if source_id is not None:
            query = query.where(occurrences.c.source_id == source_id)
        async with self.engine.connect() as conn:
            if source_id is None:
                # read before the occurrences: a write in between leaves the debt, never hides it
                self._loaded_writes = await _meta_number(conn, "writes")
            rows = (await conn.execute(query)).all()
        # thousands of rows: made into occurrences in a thread, so the server keeps answering
        return await asyncio.to_thread(_occurrences_of, rows)

    async def publish_owed(self) -> bool:
        """Whether occurrences or sources changed since the last publish (a process may have
        been stopped or killed between a source's write and the publish)."""
        async with self.engine.connect() as conn:
            return await _meta_number(conn, "writes") != await _meta_number(conn, "published")

    # -- published network events --------------------------------------------------------

    async def publish(
        self,
        merged: Iterable[MergedEvent],
        render_event: RenderEvent,
        render_key: str,
        now: datetime,
    ) -> bool:
        """Store the merged events; only those whose content changed get a new version.

        A changed event gets SEQUENCE + 1 and LAST-MODIFIED = now and is serialised again
        (rule 8); an unchanged one keeps its bytes. An event no longer merged is unpublished
        but kept, so if it returns (its source put back in sources.yaml) its SEQUENCE goes
        on from where it was. An event `render_event` cannot render (None) is skipped: its
        last version stays as it was, or it waits unpublished. Returns whether anything
        changed.
        """
        merged_list = list(merged)
        loaded, self._loaded_writes = self._loaded_writes, None
        async with self._writing() as conn:
            known = {
                r.id: r
                for r in await conn.execute(
                    select(
                        events.c.id,
                        events.c.fingerprint,
                        events.c.sequence,
                        events.c.created,
                        events.c.data,
                        events.c.unpublished_at,
                    )
                )
            }
            # versioning and rendering are CPU work on every changed event: in a thread, so
            # the server keeps answering during a large publish (the write turn is held)
            seen, inserts, updates, history = await asyncio.to_thread(
                _versions, merged_list, known, render_event, render_key, now
            )
            gone = {i for i, r in known.items() if r.unpublished_at is None} - seen
            # executemany: one statement for all, not one round trip per event
            if inserts:
                await _write_many(conn, insert(events), inserts)
            if updates:
                await _write_many(
                    conn, update(events).where(events.c.id == bindparam("event_id")), updates
                )
            for some in _chunks(sorted(gone)):
                await conn.execute(
                    update(events).where(events.c.id.in_(some)).values(unpublished_at=now)
                )
            if history:
                await conn.execute(insert(changes), history)
            await _remember_ids(conn, merged_list)
            changed = bool(inserts or updates or gone)
            if changed:
                await _bump_version(conn)
            written = await _meta_number(conn, "writes") if loaded is None else loaded
            await _set_meta(conn, "published", str(written))
        return changed

    async def known_ids(self) -> dict[str, str]:
        """Member identity -> the network id it was published under."""
        async with self.engine.connect() as conn:
            result = await conn.execute(select(identities.c.identity, identities.c.event_id))
            return {row.identity: row.event_id for row in result}

    async def recent_changes(self, limit: int | None = 200, days: int = 30) -> list[dict]:
        """The newest changes first: at most `limit` (None: all), within `days` of the
        newest one; none of an unpublished event."""
        shown = changes.c.event_id.not_in(_unpublished)
        async with self.engine.connect() as conn:
            newest = await conn.scalar(select(func.max(changes.c.at)).where(shown))
            if newest is None:
                return []
            result = await conn.execute(
                select(changes)
                .where(shown, changes.c.at >= newest - timedelta(days=days))
                .order_by(changes.c.at.desc(), changes.c.id.desc())
                .limit(limit)
            )
            return [dict(row._mapping) for row in result]

    async def event_history(self) -> dict[str, list[dict]]:
        """Every event's changes, oldest first, by event id; none of an unpublished event."""
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(changes)
                .where(changes.c.event_id.not_in(_unpublished))
                .order_by(changes.c.at, changes.c.id)
            )
            history: dict[str, list[dict]] = {}
            for row in result:
                history.setdefault(row.event_id, []).append(dict(row._mapping))
            return history

    async def published_events(self) -> list[NetworkEvent]:
        """Every published event, in a stable order: start, then id."""
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(events)
                .where(events.c.unpublished_at.is_(None))
                .order_by(events.c.start, events.c.id)
            )
            return [
                NetworkEvent(
                    event=_merged(row.data),
                    sequence=row.sequence,
                    created=row.created,
                    last_modified=row.last_modified,
                    ics=row.ics,
                )
                for row in result
            ]

    async def data_version(self) -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(select(meta.c.value).where(meta.c.key == "data_version"))
            return int(value or 0)

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            count = select(func.count())
            return {
                "sources": await conn.scalar(
                    count.select_from(sources).where(sources.c.removed_at.is_(None))
                ),
                "occurrences": await conn.scalar(
                    count.select_from(occurrences).where(occurrences.c.source_id.in_(_configured))
                ),
                "events": await conn.scalar(
                    count.select_from(events).where(events.c.unpublished_at.is_(None))
                ),
            }


#: the sources in sources.yaml: one taken out is kept a while but not published
_configured = select(sources.c.id).where(sources.c.removed_at.is_(None))
#: events that left the outputs, kept for their SEQUENCE
_unpublished = select(events.c.id).where(events.c.unpublished_at.is_not(None))


def _refusal(leaving: Sequence[str], published: int) -> str:
    named = ", ".join(leaving[:5]) + (f" and {len(leaving) - 5} more" if len(leaving) > 5 else "")
    return (
        f"this configuration would unpublish {len(leaving)} of the {published} published "
        f"sources at once ({named}). Is the right sources.yaml in place? Nothing was "
        "changed; if the removal is meant, run again with --allow-removals."
    )


async def _delete_sources(conn, ids: Sequence[str]) -> dict[str, dict]:
    """Delete everything kept of these sources; what was deleted, per source."""
    deleted: dict[str, dict] = {i: {} for i in ids}
    for name, table in (("occurrences", occurrences), ("fetches", fetches), ("pages", pages)):
        for source_id, count in await conn.execute(
            select(table.c.source_id, func.count())
            .where(table.c.source_id.in_(ids))
            .group_by(table.c.source_id)
        ):
            deleted[source_id][name] = count
    # their unpublished events: those no other source had a part in
    own = []
    for row in await conn.execute(
        select(events.c.id, events.c.data).where(events.c.unpublished_at.is_not(None))
    ):
        members = set(row.data.get("source_ids", ()))
        if members and members <= set(ids):
            own.append(row.id)
            for source_id in members:
                deleted[source_id]["events"] = deleted[source_id].get("events", 0) + 1
    # identity_of reads only these columns, which a row has as well as an Occurrence
    columns = (occurrences.c.identity, occurrences.c.uid, occurrences.c.recurrence_id)
    theirs = occurrences.c.source_id.in_(ids)
    leaving = {identity_of(o) for o in await conn.execute(select(*columns).where(theirs))}
    for table in (occurrences, fetches, pages):
        await conn.execute(delete(table).where(table.c.source_id.in_(ids)))
    await conn.execute(delete(sources).where(sources.c.id.in_(ids)))
    for some in _chunks(own):
        await conn.execute(delete(changes).where(changes.c.event_id.in_(some)))
        await conn.execute(delete(events).where(events.c.id.in_(some)))
    if leaving:  # an identity another source still has keeps its id
        still = {identity_of(o) for o in await conn.execute(select(*columns))}
        for some in _chunks(sorted(leaving - still)):
            await conn.execute(delete(identities).where(identities.c.identity.in_(some)))
    return deleted


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


def _versions(
    merged_list: Sequence[MergedEvent],
    known: dict,
    render_event: RenderEvent,
    render_key: str,
    now: datetime,
) -> tuple[set[str], list[dict], list[dict], list[dict]]:
    """The rows a publish writes (pure but for render_event): a new version, and new bytes,
    for each event whose content changed; its change for the history."""
    seen, inserts, updates, history = set(), [], [], []
    for item in merged_list:
        seen.add(item.id)  # also when it cannot be rendered: that is not gone
        print_ = fingerprint({"event": item.fingerprint, "render": render_key})
        row = known.get(item.id)
        back = row is not None and row.unpublished_at is not None
        if row is not None and not back and row.fingerprint == print_:
            continue
        old = _merged(row.data) if row is not None else None
        if old is not None:
            # "moved from": where it was before its latest move
            moved = (old.start, old.end) != (item.start, item.end)
            item = replace(item, previous_start=old.start if moved else old.previous_start)
        sequence, created = (0, now) if row is None else (row.sequence + 1, row.created)
        ics = render_event(item, sequence, created, now)
        if ics is None:
            continue
        values = {
            "fingerprint": print_,
            "sequence": sequence,
            "created": created,
            "last_modified": now,
            "start": iso(item.start),
            "data": _event_data(item),
            "ics": ics,
            "unpublished_at": None,
        }
        if row is None:
            inserts.append({"id": item.id, **values})
        else:
            updates.append({"event_id": item.id, **values})
        # back in the outputs: subscribers see it added again
        kind, before, after = event_change(None if back else old, item)
        if old is None or back or after.get("fields") or kind != "updated":
            history.append(
                {
                    "event_id": item.id,
                    "at": now,
                    "kind": kind,
                    "title": item.title,
                    "before": before,
                    "after": after,
                }
            )
    return seen, inserts, updates, history


async def _remember_ids(conn, merged: Sequence[MergedEvent]) -> None:
    """Keep, for every member identity, the id its event was published under."""
    wanted = {identity: item.id for item in merged for identity in item.identities}
    if not wanted:
        return
    stored = {
        row.identity: row.event_id
        for row in await conn.execute(select(identities.c.identity, identities.c.event_id))
    }
    new = [{"identity": i, "event_id": e} for i, e in wanted.items() if i not in stored]
    moved = [
        {"ident": i, "event_id": e} for i, e in wanted.items() if stored.get(i) not in (None, e)
    ]
    if new:
        await conn.execute(insert(identities), new)
    if moved:
        await conn.execute(
            update(identities).where(identities.c.identity == bindparam("ident")), moved
        )


async def _bump_version(conn) -> None:
    current = await conn.scalar(select(meta.c.value).where(meta.c.key == "data_version"))
    if current is None:
        await conn.execute(insert(meta).values(key="data_version", value="1"))
    else:
        await conn.execute(
            update(meta).where(meta.c.key == "data_version").values(value=str(int(current) + 1))
        )


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: no corruption on a crash, far fewer fsyncs (https://sqlite.org/wal.html)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _source_state(row) -> SourceState:
    return SourceState(
        id=row.id,
        url=row.url,
        validators=Validators(etag=row.etag, last_modified=row.last_modified),
        content_hash=row.content_hash,
        last_fetch_at=row.last_fetch_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        failures_in_row=row.failures_in_row,
        next_check_at=row.next_check_at,
        occurrence_count=row.occurrence_count,
        warnings=tuple(row.warnings or ()),
        failing_since=row.failing_since,
        held_drop=row.held_drop,
        gone_at=row.gone_at,
        moved_to=row.moved_to,
        pending_removals=row.pending_removals,
        unstable_uids=row.unstable_uids,
    )


def _capped(warnings: Iterable[str]) -> list[str]:
    """Each warning once, at most MAX_WARNINGS, and how many more there were: one feed
    cannot flood its page with warnings."""
    unique = list(dict.fromkeys(warnings))
    if len(unique) <= MAX_WARNINGS:
        return unique
    return [*unique[:MAX_WARNINGS], f"... and {len(unique) - MAX_WARNINGS} more warnings"]


#: rows per statement of a large write: each batch's parameters are prepared on the event loop
_BATCH = 500


async def _write_many(conn, statement, rows: Sequence[dict]) -> None:
    """executemany in batches: one statement per batch, not one round trip per row, and the
    event loop answers requests between batches."""
    for start in range(0, len(rows), _BATCH):
        await conn.execute(statement, rows[start : start + _BATCH])


def _occurrences_of(rows) -> list[Occurrence]:
    return [_occurrence(row) for row in rows]


def _occurrence_rows(snapshot: Sequence[Occurrence]) -> list[dict]:
    return [_occurrence_row(o) for o in snapshot]


def _occurrence_row(o: Occurrence) -> dict:
    return {
        "key": o.key,
        "source_id": o.source_id,
        "uid": o.uid,
        "recurrence_id": o.recurrence_id,
        "title": o.title,
        "start": iso(o.start),
        "end": iso(o.end),
        "all_day": o.all_day,
        "tzid": o.tzid,
        "description": o.description,
        "url": o.url,
        "location": o.location,
        "status": o.status.value,
        "categories": list(o.categories),
        "sequence": o.sequence,
        "fingerprint": o.fingerprint,
        "origin": o.origin,
        "identity": o.identity,
        "missing_since": o.missing_since,
        "removed_at": o.removed_at,
    }


def _occurrence(row) -> Occurrence:
    return Occurrence(
        key=row.key,
        source_id=row.source_id,
        uid=row.uid,
        recurrence_id=row.recurrence_id,
        title=row.title,
        start=from_iso(row.start),
        end=from_iso(row.end),
        all_day=row.all_day,
        tzid=row.tzid,
        description=row.description,
        url=row.url,
        location=row.location,
        status=Status(row.status),
        categories=tuple(row.categories),
        sequence=row.sequence,
        fingerprint=row.fingerprint,
        origin=row.origin,
        identity=row.identity,
        missing_since=row.missing_since,
        removed_at=row.removed_at,
    )


def _page_data(page: PageData) -> dict:
    return {
        "url": page.url,
        "events": [
            {
                **asdict(e),
                "start": iso(e.start),
                "end": iso(e.end),
                "status": e.status.value if e.status else None,
            }
            for e in page.events
        ],
        "ics_links": list(page.ics_links),
        "text": page.text,
        "location": page.location,
    }


def _page(data: dict) -> PageData:
    events = tuple(
        FoundEvent(
            **{
                **e,
                "start": from_iso(e["start"]),
                "end": from_iso(e["end"]),
                "status": Status(e["status"]) if e["status"] else None,
            }
        )
        for e in data["events"]
    )
    return PageData(
        url=data["url"],
        events=events,
        ics_links=tuple(data["ics_links"]),
        text=data["text"],
        location=data["location"],
    )


def _event_data(item: MergedEvent) -> dict:
    data = asdict(item)
    data.update(
        start=iso(item.start),
        end=iso(item.end),
        status=item.status.value,
        previous_start=iso(item.previous_start),
    )
    return json.loads(json.dumps(data))  # tuples -> lists, so what we store is what we read


def _merged(data: dict) -> MergedEvent:
    values = dict(data)
    values.update(
        start=from_iso(data["start"]), end=from_iso(data["end"]), status=Status(data["status"])
    )
    if values.get("previous_start"):
        values["previous_start"] = from_iso(values["previous_start"])
    for name in ("categories", "organisers", "source_ids", "members", "identities", "cancelled_by"):
        values[name] = tuple(values.get(name, ()))
    values["copies"] = tuple(tuple(copy) for copy in values.get("copies", ()))
    return MergedEvent(**values)
