"""One source's cycle: fetch -> parse -> normalise -> reconcile -> store; then publish.

Rule 6: a failed fetch or parse records the failure on the source and changes no stored
occurrence; the source keeps its last good snapshot.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import aiohttp

from aggregator.errors import ParseError
from aggregator.fetch import fetch_source
from aggregator.merge import merge
from aggregator.model import FetchOutcome, Settings, Source, Validators
from aggregator.parse import parse_feed
from aggregator.reconcile import reconcile
from aggregator.render import render_key
from aggregator.render.ics import render_event
from aggregator.store import Store


@dataclass(frozen=True)
class SourceReport:
    source_id: str
    #: 'updated', 'unchanged', 'not modified' or 'failed'
    outcome: str
    occurrences: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    error: str | None = None
    duration: float = 0.0

    def line(self) -> str:
        if self.outcome == "failed":
            return f"{self.source_id}: FAILED - {self.error} (last good events kept)"
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(self.changes.items()))
        text = f"{self.source_id}: {self.outcome}, {self.occurrences} occurrences"
        if detail:
            text += f" ({detail})"
        if self.warnings:
            text += f", {len(self.warnings)} warnings"
        return f"{text} in {self.duration:.2f} s"


def content_hash(body: bytes, now: datetime) -> str:
    """The body's hash, and the day: the horizon moves daily, so a feed is read again daily."""
    return hashlib.sha256(body + now.date().isoformat().encode()).hexdigest()


async def refresh_source(
    store: Store,
    session: aiohttp.ClientSession | None,
    source: Source,
    settings: Settings,
    now: datetime,
) -> SourceReport:
    """Fetch, read and store one source; every attempt is recorded, whatever its outcome."""
    state = await store.source_state(source.id)
    validators = state.validators if state.url == source.url else Validators()
    result = await fetch_source(session, source, settings.limits, validators)
    next_check = now + (source.refresh_interval or settings.network.refresh_interval)
    count = state.occurrence_count

    async def failed(error: str) -> SourceReport:
        await store.record_fetch(source.id, result, now, error=error)
        await store.record_failure(source.id, error, now, next_check)
        return SourceReport(source.id, "failed", count, error=error, duration=result.duration)

    async def unchanged(outcome: str) -> SourceReport:
        await store.record_fetch(source.id, result, now)
        await store.record_unchanged(source.id, result.validators, now, next_check)
        return SourceReport(
            source.id, outcome, count, warnings=state.warnings, duration=result.duration
        )

    if result.outcome is FetchOutcome.FAILED:
        return await failed(result.error or "the fetch failed")
    if result.outcome is FetchOutcome.NOT_MODIFIED:
        return await unchanged("not modified")
    digest = content_hash(result.body, now)
    if digest == state.content_hash:
        return await unchanged("unchanged")
    read = partial(
        parse_feed,
        result,
        source,
        network_zone=settings.network.timezone,
        now=now,
        limits=settings.limits,
    )
    try:
        parsed = await asyncio.to_thread(read)
    except ParseError as e:
        return await failed(f"could not read the feed: {e.message}")
    await store.record_fetch(source.id, result, now)
    changes = reconcile(await store.load_occurrences(source.id), parsed.occurrences)
    await store.replace_snapshot(
        source.id,
        parsed.occurrences,
        validators=result.validators,
        content_hash=digest,
        warnings=parsed.warnings,
        now=now,
        next_check_at=next_check,
    )
    return SourceReport(
        source.id,
        "updated" if changes else "unchanged",
        len(parsed.occurrences),
        changes=dict(Counter(c.kind.value for c in changes)),
        warnings=parsed.warnings,
        duration=result.duration,
    )


async def publish(store: Store, settings: Settings, now: datetime) -> bool:
    """Merge every source's occurrences and publish the network events that changed."""
    merged = merge(await store.load_occurrences(), settings.sources)
    render = partial(_render_event, network=settings.network)
    return await store.publish(merged, render, render_key(settings.network), now)


def _render_event(event, sequence, created, last_modified, *, network):
    return render_event(event, sequence, created, last_modified, network)


async def refresh_all(
    store: Store,
    session: aiohttp.ClientSession | None,
    settings: Settings,
    now: datetime,
    sources: Sequence[Source] | None = None,
    on_report: Callable[[SourceReport], None] | None = None,
    concurrency: int = 8,
) -> tuple[list[SourceReport], bool]:
    """One full cycle: every source (at most `concurrency` at once), then publish once."""
    await store.sync_sources(settings.sources)
    limit = asyncio.Semaphore(concurrency)

    async def one(source: Source) -> SourceReport:
        async with limit:
            report = await refresh_source(store, session, source, settings, now)
        if on_report:
            on_report(report)
        return report

    reports = await asyncio.gather(*(one(s) for s in (sources or settings.sources)))
    changed = await publish(store, settings, now)
    return list(reports), changed
