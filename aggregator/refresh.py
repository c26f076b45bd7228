"""One source's cycle, and a refresh of every source. The decisions are in decide.py; this
is the driver that carries them between the stages:

    current = store.source_for_update(id)              # a read: its state (all at once in
                                                        # refresh_all)
    fetched = fetch(decide.fetch_plan(current.state))   # the fetch stage (politeness, guard)
    parsed  = parse.read_source(fetched, kept pages)    # only a new body, in a worker
    stored  = store.load_occurrences(id)                # only when there is something to
                                                        # measure by them (decide.needs_stored)
    update  = decide.decide(state, fetched, stored, parsed)  # pure, in a thread
    store.apply(update)                                 # one write

A cycle in which nothing changed (304, the same body, a failure) reads the state and writes
the attempt: nothing else.

Any error on the way is a bug: logged in full, recorded as a failed attempt in words, and it
stops only that source.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from aggregator import metrics, worker
from aggregator.decide import (
    body_hash,
    decide,
    failed_unexpectedly,
    fetch_plan,
    moved_away,
    must_read,
    needs_stored,
)
from aggregator.errors import Deposed, ParseError
from aggregator.fetch import Fetcher
from aggregator.model import (
    Fetched,
    FetchOutcome,
    Settings,
    Source,
    SourceForUpdate,
    SourceRead,
    SourceState,
    SourceUpdate,
)
from aggregator.publish import publish
from aggregator.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceReport:
    """What one source's cycle did, in the words `aggregator refresh` prints and logs."""

    source_id: str
    #: UPDATED, UNCHANGED, NOT_MODIFIED, HELD or FAILED
    outcome: FetchOutcome
    occurrences: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    error: str | None = None
    duration: float = 0.0

    def line(self) -> str:
        if self.outcome is FetchOutcome.FAILED:
            return f"{self.source_id}: FAILED - {self.error} (last good events kept)"
        if self.outcome is FetchOutcome.HELD:
            return f"{self.source_id}: DROP HELD - {self.error}"
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(self.changes.items()))
        text = f"{self.source_id}: {self.outcome.value}, {self.occurrences} occurrences"
        if detail:
            text += f" ({detail})"
        if self.warnings:
            text += f", {len(self.warnings)} warnings"
        return f"{text} in {self.duration:.2f} s"

    @classmethod
    def of(cls, update: SourceUpdate, state: SourceState) -> SourceReport:
        """What an applied cycle says, for the command line and the log."""
        attempt = update.attempt
        outcome = FetchOutcome(attempt.outcome)
        if outcome is FetchOutcome.FAILED:
            error, warnings = str(attempt.error), ()
        else:
            error = attempt.held_drop if outcome is FetchOutcome.HELD else None
            found = state.warnings if update.warnings is None else update.warnings
            warnings = tuple(str(w) for w in found)
        return cls(
            update.source_id,
            outcome,
            state.occurrence_count if update.snapshot is None else len(update.snapshot),
            changes=dict(update.changes),
            warnings=warnings,
            error=error,
            duration=attempt.duration,
        )


async def refresh_source(
    store: Store,
    fetcher: Fetcher,
    source: Source,
    settings: Settings,
    now: datetime,
    current: SourceForUpdate | None = None,
) -> SourceReport:
    """Fetch, read and store one source; every attempt is recorded, whatever its outcome,
    an unexpected error included (in refresh and under the scheduler alike).

    `current` is what the store said of the source when the caller read it already.
    """
    try:
        current = current or await store.source_for_update(source.id)
        update = await _cycle(store, fetcher, source, settings, now, current)
        await store.apply(update)
        report = SourceReport.of(update, current.state)
    except Deposed:  # not the scheduler any more: nothing to record, the work stops
        raise
    except Exception as e:  # a bug: logged in full, recorded in words, it stops only this source
        log.exception("refreshing %s failed unexpectedly", source.id)
        state = current.state if current else None
        report = await _record_bug(store, source, settings, now, state, e)
    metrics.FETCHES.labels(source.id, report.outcome.value).inc()
    metrics.FETCH_SECONDS.labels(source.id).observe(report.duration)
    return report


async def _cycle(
    store: Store,
    fetcher: Fetcher,
    source: Source,
    settings: Settings,
    now: datetime,
    current: SourceForUpdate,
) -> SourceUpdate:
    """Fetch, read what is new (in a worker) and decide: the intent, nothing written."""
    fetched = await fetch_source(fetcher, source, current.state, now)
    digest = body_hash(fetched, now, settings)  # once: each question below would hash again
    parsed: SourceRead | ParseError | None = None
    if must_read(current.state, fetched, now, settings, digest=digest):
        # loaded by the first feed to read (a cycle where nothing changed reads none)
        from aggregator.parse import read_source  # noqa: PLC0415

        kept = await store.kept_pages(source.id)
        try:
            parsed = await read_source(
                fetched.result,
                source,
                settings,
                now,
                # the pages its items link are member content: judged by the guard
                fetch_page=partial(fetcher.fetch, content=True, trusted_host=source.url),
                parse=worker.parse,
                kept=kept,
            )
        except ParseError as e:
            parsed = e
    # the stored snapshot only when there is something to measure by it: a 304 or a failure
    # reads no occurrence, so a cycle in which nothing changed costs no rows
    # (a read that failed changes nothing: nothing to measure)
    needed = not isinstance(parsed, ParseError) and needs_stored(
        current.state, fetched, now, settings, digest=digest
    )
    stored = await store.load_occurrences(source.id) if needed else ()
    decided = partial(decide, current.state, fetched, stored, parsed, now, settings, digest=digest)
    if not isinstance(parsed, SourceRead):
        # nothing new read: quick, so decided at once (a thread would cost more than this)
        return decided()
    # a new read measured against the stored: long for a feed of thousands, so in a thread
    # and the server keeps answering
    return await asyncio.to_thread(decided)


async def fetch_source(
    fetcher: Fetcher, source: Source, state: SourceState, now: datetime
) -> Fetched:
    """Fetch the source where and as decide.fetch_plan says; a remembered permanent address
    that went away is left for the configured one, in the same cycle."""
    plan = fetch_plan(state, source, now)
    # a permanent move was a redirect: the member's server said it, so it is content and
    # goes through the guard unless it stays on the configured host
    result = await fetcher.fetch(
        plan.url, plan.validators, content=plan.moved, trusted_host=source.url
    )
    if plan.moved and moved_away(result):
        result = await fetcher.fetch(source.url, plan.validators, trusted_host=source.url)
        return Fetched(source, result, forget_move=True)
    return Fetched(source, result)


async def _record_bug(
    store: Store,
    source: Source,
    settings: Settings,
    now: datetime,
    state: SourceState | None,
    error: Exception,
) -> SourceReport:
    """Record an unexpected error as the source's failed attempt."""
    state = state or await store.source_state(source.id)
    update = failed_unexpectedly(state, source, error, now, settings)
    await store.apply(update)
    return SourceReport(
        source.id, FetchOutcome.FAILED, state.occurrence_count, error=str(update.attempt.error)
    )


async def refresh_all(
    store: Store,
    fetcher: Fetcher,
    settings: Settings,
    now: datetime,
    sources: Sequence[Source] | None = None,
    on_report: Callable[[SourceReport], None] | None = None,
    on_start: Callable[[Source], None] | None = None,
    stop: asyncio.Event | None = None,
) -> tuple[list[SourceReport], bool]:
    """One full cycle: every source (the fetcher keeps it polite per host), then publish once.

    `on_start` hears of each source as its fetch begins, `on_report` as it ends. Once `stop`
    is set (SIGTERM) no source starts; those being read get `limits.stop_seconds` to finish
    their writes, then are cancelled (a cancelled one writes nothing). The publish runs if
    time is left; else it stays owed and the next run makes it. Reports are of the sources
    that finished. A configuration that unpublishes most sources raises RemovalRefused
    before anything is read (unless `settings.allow_removals`)."""
    await store.sync_sources(settings.sources, now=now, allow_removals=settings.allow_removals)
    await store.prune_history(now, removed_source_days=settings.limits.removed_source_days)
    limit = asyncio.Semaphore(settings.limits.concurrency)
    stop = stop or asyncio.Event()
    current = await store.sources_for_update()  # one read for all, not one per source

    async def one(source: Source) -> SourceReport | None:
        async with limit:
            if stop.is_set():
                return None
            if on_start:
                on_start(source)
            try:
                report = await refresh_source(
                    store, fetcher, source, settings, now, current[source.id]
                )
            except Deposed:
                raise
            except Exception as e:  # recording the bug failed too: once more, then raised
                log.exception("refreshing %s failed unexpectedly", source.id)
                report = await _record_bug(store, source, settings, now, None, e)
        if on_report:
            on_report(report)
        return report

    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(one(s)) for s in (sources or settings.sources)]
    deadline = await _until_done_or_stopped(tasks, stop, settings.limits.stop_seconds)
    for task in tasks:  # an error outside refresh_source's own handling is a bug: raised
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()
    reports = [t.result() for t in tasks if not t.cancelled() and t.result() is not None]
    # nothing read anew and no publish owed by an earlier run that was stopped or killed
    # between a source's write and its publish: the published events cannot have changed
    owed = any(r.outcome is FetchOutcome.UPDATED for r in reports) or await store.publish_owed()
    in_time = deadline is None or loop.time() < deadline
    changed = owed and in_time and await publish(store, settings, now)
    return reports, changed


async def _until_done_or_stopped(
    tasks: list[asyncio.Task], stop: asyncio.Event, stop_seconds: float
) -> float | None:
    """Wait for every task; once `stop` is set, `stop_seconds` more at most, then cancel
    those left. The deadline the publish must meet after a stop (None: no stop)."""
    loop = asyncio.get_running_loop()
    every = asyncio.gather(*tasks, return_exceptions=True)
    stopping = asyncio.create_task(stop.wait())
    deadline = None
    try:
        await asyncio.wait({every, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not every.done():  # stopped: those being read get stop_seconds to finish
            deadline = loop.time() + stop_seconds
            await asyncio.wait({every}, timeout=stop_seconds)
    finally:
        stopping.cancel()
        for task in tasks:
            task.cancel()
        await every
    return deadline
