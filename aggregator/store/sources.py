"""A source's row, its fetch history and the pages its items link: what the cycle reads and
records."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update

from aggregator.errors import RemovalRefused
from aggregator.model import (
    Attempt,
    CachedPage,
    FetchOutcome,
    FetchRecord,
    FoundEvent,
    Occurrence,
    PageData,
    Source,
    SourceState,
    Status,
    Validators,
)
from aggregator.normalise import from_iso, iso
from aggregator.reconcile import identity_of
from aggregator.store.base import (
    StoreBase,
    _chunks,
    _owe_publish,
    _write_many,
)
from aggregator.store.occurrences import _occurrence_rows
from aggregator.store.schema import (
    changes,
    events,
    fetches,
    identities,
    occurrences,
    pages,
    sources,
)

MIGRATIONS = Path(__file__).parent / "migrations"
FETCH_HISTORY = timedelta(days=30)
#: a source's stored warnings, at most
MAX_WARNINGS = 200


class SourcesMixin(StoreBase):
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

    async def fetch_history(self, source_id: str, limit: int = 100) -> list[FetchRecord]:
        """The source's newest recorded attempts first, at most `limit`."""
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(fetches)
                .where(fetches.c.source_id == source_id)
                .order_by(fetches.c.at.desc(), fetches.c.id.desc())
                .limit(limit)
            )
            return [_fetch_record(row) for row in result]

    # -- occurrences ---------------------------------------------------------------------


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


def _fetch_record(row) -> FetchRecord:
    return FetchRecord(
        source_id=row.source_id,
        at=row.at,
        outcome=FetchOutcome(row.outcome),
        status=row.status,
        duration=row.duration,
        bytes=row.bytes,
        error=row.error,
        message=row.message,
        occurrences=row.occurrences,
        id=row.id,
    )


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
