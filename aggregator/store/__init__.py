"""The only module that talks to the database: a Store with use-named methods.

SQLAlchemy 2 Core (async) on aiosqlite; the schema is made and changed by Alembic
migrations, so a database made by an older version migrates on open.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aggregator.model import (
    FetchResult,
    MergedEvent,
    NetworkEvent,
    Occurrence,
    Source,
    SourceState,
    Status,
    Validators,
)
from aggregator.normalise import fingerprint, from_iso, iso
from aggregator.store.schema import events, fetches, meta, occurrences, sources

__all__ = ["Store"]

MIGRATIONS = Path(__file__).parent / "migrations"
FETCH_HISTORY = timedelta(days=30)

#: renders a merged event with its version (sequence, created, last modified) into VEVENT bytes
RenderEvent = Callable[[MergedEvent, int, datetime, datetime], bytes]


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and migrate the schema to the newest version."""
        engine = create_async_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    # -- sources -------------------------------------------------------------------------

    async def sync_sources(self, configured: Iterable[Source]) -> None:
        """Make a row for every configured source; a changed URL forgets the old validators."""
        async with self.engine.begin() as conn:
            rows = {r.id: r for r in await conn.execute(select(sources.c.id, sources.c.url))}
            for source in configured:
                row = rows.get(source.id)
                if row is None:
                    await conn.execute(
                        insert(sources).values(id=source.id, url=source.url, warnings=[])
                    )
                elif row.url != source.url:
                    await conn.execute(
                        update(sources)
                        .where(sources.c.id == source.id)
                        .values(url=source.url, etag=None, last_modified=None, content_hash=None)
                    )

    async def source_states(self) -> dict[str, SourceState]:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(sources))
            return {row.id: _source_state(row) for row in result}

    async def source_state(self, source_id: str) -> SourceState:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(sources).where(sources.c.id == source_id))).one()
            return _source_state(row)

    async def record_fetch(
        self, source_id: str, result: FetchResult, now: datetime, error: str | None = None
    ) -> None:
        """Record one attempt, whatever its outcome; history older than 30 days goes.

        `error` overrides a good fetch's outcome when what came could not be read.
        """
        outcome = "failed" if error else result.outcome.value
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(fetches).values(
                    source_id=source_id,
                    at=now,
                    outcome=outcome,
                    status=result.status,
                    duration=result.duration,
                    bytes=len(result.body),
                    error=error or result.error,
                )
            )
            await conn.execute(
                delete(fetches).where(
                    fetches.c.source_id == source_id, fetches.c.at < now - FETCH_HISTORY
                )
            )

    async def record_failure(
        self, source_id: str, error: str, now: datetime, next_check_at: datetime | None = None
    ) -> None:
        """A failed fetch or parse: the health changes, the stored occurrences do not."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(sources)
                .where(sources.c.id == source_id)
                .values(
                    last_fetch_at=now,
                    last_error=error,
                    failures_in_row=sources.c.failures_in_row + 1,
                    next_check_at=next_check_at,
                )
            )

    async def record_unchanged(
        self,
        source_id: str,
        validators: Validators,
        now: datetime,
        next_check_at: datetime | None = None,
    ) -> None:
        """A 304, or a body that hashes like the last good one: nothing to read again."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(sources)
                .where(sources.c.id == source_id)
                .values(**_success(now, validators, next_check_at))
            )

    async def replace_snapshot(
        self,
        source_id: str,
        snapshot: Sequence[Occurrence],
        *,
        validators: Validators,
        content_hash: str,
        warnings: Sequence[str],
        now: datetime,
        next_check_at: datetime | None = None,
    ) -> None:
        """Make `snapshot` the source's last good set of occurrences, in one transaction."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(occurrences).where(occurrences.c.source_id == source_id))
            if snapshot:
                await conn.execute(insert(occurrences), [_occurrence_row(o) for o in snapshot])
            await conn.execute(
                update(sources)
                .where(sources.c.id == source_id)
                .values(
                    **_success(now, validators, next_check_at),
                    content_hash=content_hash,
                    occurrence_count=len(snapshot),
                    warnings=list(warnings),
                )
            )

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
        query = select(occurrences).order_by(occurrences.c.key)
        if source_id is not None:
            query = query.where(occurrences.c.source_id == source_id)
        async with self.engine.connect() as conn:
            return [_occurrence(row) for row in await conn.execute(query)]

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
        (rule 8); an unchanged one keeps its bytes. Returns whether anything changed.
        """
        changed = False
        async with self.engine.begin() as conn:
            known = {
                r.id: r
                for r in await conn.execute(
                    select(events.c.id, events.c.fingerprint, events.c.sequence, events.c.created)
                )
            }
            seen = set()
            for item in merged:
                seen.add(item.id)
                print_ = fingerprint({"event": item.fingerprint, "render": render_key})
                row = known.get(item.id)
                if row is not None and row.fingerprint == print_:
                    continue
                changed = True
                if row is None:
                    sequence, created = 0, now
                else:
                    sequence, created = row.sequence + 1, row.created
                values = {
                    "fingerprint": print_,
                    "sequence": sequence,
                    "created": created,
                    "last_modified": now,
                    "start": iso(item.start),
                    "data": _event_data(item),
                    "ics": render_event(item, sequence, created, now),
                }
                if row is None:
                    await conn.execute(insert(events).values(id=item.id, **values))
                else:
                    await conn.execute(
                        update(events).where(events.c.id == item.id).values(**values)
                    )
            gone = set(known) - seen
            if gone:
                changed = True
                await conn.execute(delete(events).where(events.c.id.in_(gone)))
            if changed:
                await _bump_version(conn)
        return changed

    async def published_events(self) -> list[NetworkEvent]:
        """Every published event, in a stable order: start, then id."""
        async with self.engine.connect() as conn:
            result = await conn.execute(select(events).order_by(events.c.start, events.c.id))
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
            return {
                "sources": await conn.scalar(select(func.count()).select_from(sources)),
                "occurrences": await conn.scalar(select(func.count()).select_from(occurrences)),
                "events": await conn.scalar(select(func.count()).select_from(events)),
            }


async def _bump_version(conn) -> None:
    current = await conn.scalar(select(meta.c.value).where(meta.c.key == "data_version"))
    if current is None:
        await conn.execute(insert(meta).values(key="data_version", value="1"))
    else:
        await conn.execute(
            update(meta).where(meta.c.key == "data_version").values(value=str(int(current) + 1))
        )


def _success(now: datetime, validators: Validators, next_check_at: datetime | None) -> dict:
    """A good fetch resets the source's health and keeps the server's validators."""
    return {
        "last_fetch_at": now,
        "last_success_at": now,
        "last_error": None,
        "failures_in_row": 0,
        "etag": validators.etag,
        "last_modified": validators.last_modified,
        "next_check_at": next_check_at,
    }


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
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
    )


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
    )


def _event_data(item: MergedEvent) -> dict:
    data = asdict(item)
    data.update(start=iso(item.start), end=iso(item.end), status=item.status.value)
    return json.loads(json.dumps(data))  # tuples -> lists, so what we store is what we read


def _merged(data: dict) -> MergedEvent:
    values = dict(data)
    values.update(
        start=from_iso(data["start"]), end=from_iso(data["end"]), status=Status(data["status"])
    )
    for name in ("categories", "organisers", "source_ids", "members"):
        values[name] = tuple(values[name])
    return MergedEvent(**values)
