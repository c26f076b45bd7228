"""A source's row, its fetch history and the pages its items link: what the cycle reads
(source_for_update) and writes (apply), once each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select, update

from aggregator.errors import RemovalRefused
from aggregator.model import (
    Attempt,
    CachedPage,
    FetchOutcome,
    FetchRecord,
    Occurrence,
    Problem,
    Source,
    SourceForUpdate,
    SourceState,
    SourceUpdate,
)
from aggregator.problems import as_problem
from aggregator.reconcile import identity_of
from aggregator.store.base import (
    StoreBase,
    _chunks,
    _owe_publish,
)
from aggregator.store.occurrences import _occurrence_rows, replace_snapshot
from aggregator.store.rows import (
    MAX_WARNINGS,
    cached_page,
    capped,
    fetch_record,
    first_by_words,
    page_row,
    problem_json,
    problem_of,
    source_state,
    words_of,
)
from aggregator.store.schema import (
    changes,
    events,
    fetches,
    identities,
    occurrences,
    pages,
    sources,
)

FETCH_HISTORY = timedelta(days=30)
#: what a new address from the operator forgets of the old one (sync_sources)
_NEW_ADDRESS = {
    "etag": None,
    "last_modified": None,
    "content_hash": None,
    "moved_to": None,
    "gone_at": None,
    "held_drop": None,
    "failures_in_row": 0,
    "failing_since": None,
    "last_error": None,
    "last_problem": None,
    "next_check_at": None,
}


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
        async with self._writing(fenced=True) as conn:
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
                    values.update(_NEW_ADDRESS, url=source.url)
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
        async with self._writing(fenced=True) as conn:
            stored = [r.id for r in await conn.execute(select(sources.c.id))]
            gone = sorted(i for i in stored if i not in wanted)
            return await _delete_sources(conn, gone) if gone else {}

    async def source_states(self) -> dict[str, SourceState]:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(sources))
            return {row.id: source_state(row) for row in result}

    async def source_state(self, source_id: str) -> SourceState:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(sources).where(sources.c.id == source_id))).one()
            return source_state(row)

    async def due_sources(self, now: datetime) -> list[SourceState]:
        """The states of the configured sources to fetch now: never fetched, or their next
        check has come (decide.is_due, asked of every source at once), by id."""
        due = or_(sources.c.next_check_at.is_(None), sources.c.next_check_at <= now)
        query = select(sources).where(sources.c.removed_at.is_(None), due).order_by(sources.c.id)
        async with self.engine.connect() as conn:
            return [source_state(row) for row in await conn.execute(query)]

    async def source_for_update(self, source_id: str) -> SourceForUpdate:
        """What one cycle of the source needs before it fetches: its state."""
        return SourceForUpdate(await self.source_state(source_id))

    async def sources_for_update(self) -> dict[str, SourceForUpdate]:
        """source_for_update of every stored source, in one read (a refresh of them all)."""
        return {i: SourceForUpdate(state) for i, state in (await self.source_states()).items()}

    async def kept_pages(self, source_id: str) -> dict[str, CachedPage]:
        """The pages its items link, kept from earlier cycles, by URL (RSS): read with a new
        body, to read again only the pages of items that changed."""
        async with self.engine.connect() as conn:
            kept = (await conn.execute(select(pages).where(pages.c.source_id == source_id))).all()
        return {r.url: cached_page(r) for r in kept}

    async def apply(self, intent: SourceUpdate) -> None:
        """Write one source's cycle as decided (decide.py), in one transaction: the attempt
        in the fetch history, the source's row, its new snapshot, the pages read, and the
        publish owed.

        Every attempt is kept, whatever its outcome (prune_history forgets old ones). Only a
        snapshot replaces the source's occurrences; a failure or a held drop changes none.
        Like every write of the scheduler's work here, fenced (base._writing): a leader that
        lost the scheduler's lease writes none of it (Deposed).
        """
        snapshot = intent.snapshot
        rows = await asyncio.to_thread(_occurrence_rows, snapshot) if snapshot else []
        source = sources.c.id == intent.source_id
        # a snapshot waits for a publish in progress (it merges what changed until then)
        turn = self.merge_turn if snapshot is not None else contextlib.nullcontext()
        async with turn, self._writing(fenced=True) as conn:
            await conn.execute(insert(fetches).values(**_fetch_row(intent)))
            await conn.execute(update(sources).where(source).values(**_source_values(intent)))
            if snapshot is not None:
                await replace_snapshot(conn, intent.source_id, rows)
                if intent.attempt.outcome == FetchOutcome.UPDATED:
                    # in the same transaction: a process killed before it publishes leaves
                    # the debt, and the next refresh pays it though the feed reads unchanged
                    await _owe_publish(conn)
            if intent.pages:  # kept for the next cycle, replacing what was kept for the URLs
                urls = [c.page.url for c in intent.pages]
                await conn.execute(delete(pages).where(pages.c.url.in_(urls)))
                await conn.execute(
                    insert(pages), [page_row(intent.source_id, c) for c in intent.pages]
                )

    async def record_attempt(
        self,
        source_id: str,
        attempt: Attempt,
        snapshot: Sequence[Occurrence] | None = None,
        *,
        content_hash: str | None = None,
        warnings: Sequence[Problem | str] = (),
    ) -> None:
        """Record one attempt (and a snapshot) decided elsewhere: `apply` for tools and tests
        that write a source's state without a cycle."""
        await self.apply(
            SourceUpdate(
                source_id,
                replace(attempt, outcome=FetchOutcome(attempt.outcome)),
                None if snapshot is None else tuple(snapshot),
                content_hash=content_hash,
                warnings=tuple(map(as_problem, warnings)),
            )
        )

    async def add_source_warnings(self, source_id: str, warnings: Sequence[Problem | str]) -> None:
        """Add warnings to the source's stored ones (e.g. an event that could not be
        rendered), each once, at most MAX_WARNINGS in all; the next read of the feed
        replaces them all."""
        if not warnings:
            return
        async with self._writing(fenced=True) as conn:
            current = await conn.scalar(select(sources.c.warnings).where(sources.c.id == source_id))
            if current is None:
                return
            found = [problem_of(w) for w in current] + [as_problem(w) for w in warnings]
            kept = [problem_json(w) for w in first_by_words(found)][:MAX_WARNINGS]
            if kept != [problem_json(problem_of(w)) for w in current]:
                await conn.execute(
                    update(sources).where(sources.c.id == source_id).values(warnings=kept)
                )

    async def prune_history(self, now: datetime, *, removed_source_days: int = 30) -> None:
        """Forget fetch attempts older than 30 days, and sources taken out of the
        configuration and events unpublished more than `removed_source_days` ago."""
        cutoff = now - timedelta(days=removed_source_days)
        async with self._writing(fenced=True) as conn:
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
            return [fetch_record(row) for row in result]


def _fetch_row(intent: SourceUpdate) -> dict:
    """The fetch history's row of an attempt."""
    attempt = intent.attempt
    snapshot = intent.snapshot
    return {
        "source_id": intent.source_id,
        "at": attempt.at,
        "outcome": FetchOutcome(attempt.outcome).value,
        "status": attempt.status,
        "duration": attempt.duration,
        "bytes": attempt.bytes,
        "error": words_of(attempt.error),
        "message": words_of(attempt.message),
        "problem": problem_json(attempt.message),
        "occurrences": (
            len(snapshot)
            if snapshot is not None
            else select(sources.c.occurrence_count)
            .where(sources.c.id == intent.source_id)
            .scalar_subquery()
        ),
    }


def _source_values(intent: SourceUpdate) -> dict:
    """What an attempt changes on the source's row: its health, validators and address,
    and with a snapshot its counts (and, after a read, the content hash and warnings)."""
    attempt = intent.attempt
    values: dict = {"last_fetch_at": attempt.at, "next_check_at": attempt.next_check_at}
    if attempt.outcome == FetchOutcome.FAILED:
        values.update(
            last_error=words_of(attempt.error),
            last_problem=problem_json(attempt.error),
            failures_in_row=sources.c.failures_in_row + 1,
            failing_since=func.coalesce(sources.c.failing_since, attempt.at),
        )
        if attempt.gone:
            values["gone_at"] = func.coalesce(sources.c.gone_at, attempt.at)
    else:
        values.update(
            last_success_at=attempt.at,
            last_error=None,
            last_problem=None,
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
    snapshot = intent.snapshot
    if snapshot is not None:
        values.update(
            occurrence_count=len(snapshot),
            pending_removals=sum(
                o.missing_since is not None and o.removed_at is None for o in snapshot
            ),
        )
        if intent.content_hash is not None:  # None: the same body confirmed removals
            values.update(content_hash=intent.content_hash, warnings=capped(intent.warnings or ()))
    return values


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
