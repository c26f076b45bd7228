"""One source's cycle: fetch -> parse -> normalise -> reconcile -> store; then publish.

Rule 6: a failed fetch or parse records the failure on the source and changes no stored
occurrence; the source keeps its last good snapshot. A suspicious drop (no events where
there were upcoming ones, or most of them gone at once) is held back until the next fetch
confirms it; past events that leave a feed are kept, not removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial

from aggregator import metrics, worker
from aggregator.errors import ParseError, Refused
from aggregator.fetch import Fetcher, is_local
from aggregator.merge import merge
from aggregator.model import (
    Attempt,
    CachedPage,
    FetchOutcome,
    FetchResult,
    FoundEvent,
    Limits,
    MergedEvent,
    Occurrence,
    PageData,
    ParsedFeed,
    Settings,
    Source,
    SourceKind,
    SourceState,
    Status,
    Validators,
)
from aggregator.parse import decode_body, feed_kind, parse_feed
from aggregator.parse.feeds import item_events, read_feed
from aggregator.parse.pages import event_from_ics, read_page
from aggregator.reconcile import (
    carry_over,
    collapse_duplicates,
    confirm_removals,
    reconcile,
    stable_identities,
    suspicious_drop,
    uids_unstable,
)
from aggregator.render import render_key
from aggregator.render.ics import render_event
from aggregator.store import Store

log = logging.getLogger(__name__)

#: how member content is read: worker.parse, or worker.parse_check for a check
Parse = Callable[..., Awaitable]


@dataclass(frozen=True)
class SourceReport:
    source_id: str
    #: 'updated', 'unchanged', 'not modified', 'held' or 'failed'
    outcome: str
    occurrences: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    error: str | None = None
    duration: float = 0.0

    def line(self) -> str:
        if self.outcome == "failed":
            return f"{self.source_id}: FAILED - {self.error} (last good events kept)"
        if self.outcome == "held":
            return f"{self.source_id}: DROP HELD - {self.error}"
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(self.changes.items()))
        text = f"{self.source_id}: {self.outcome}, {self.occurrences} occurrences"
        if detail:
            text += f" ({detail})"
        if self.warnings:
            text += f", {len(self.warnings)} warnings"
        return f"{text} in {self.duration:.2f} s"


def content_hash(body: bytes, now: datetime, source: Source, settings: Settings) -> str:
    """What decides the occurrences read from a body: the body, the settings that read it,
    and the day (the horizon moves daily, so every feed is read in full once a day)."""
    limits = settings.limits
    reading = "\x1f".join(
        str(v)
        for v in (
            source.kind,
            source.timezone,
            source.language,
            settings.network.timezone,
            limits.past_days,
            limits.future_days,
            limits.max_occurrences,
        )
    )
    digest = hashlib.sha256(body + reading.encode()).hexdigest()
    return f"{now.date().isoformat()}:{digest[:53]}"


def read_today(state: SourceState, now: datetime) -> bool:
    return (state.content_hash or "").startswith(now.date().isoformat() + ":")


def next_check(
    source: Source, settings: Settings, now: datetime, failures: int, retry_after: float | None
) -> datetime:
    """When to fetch again: the interval, doubled per failure in a row (capped), and never
    sooner than the server's Retry-After."""
    interval = (source.refresh_interval or settings.network.refresh_interval).total_seconds()
    wait = min(interval * 2 ** max(failures - 1, 0), max(settings.limits.max_backoff, interval))
    if retry_after is not None:
        # honoured, but a server cannot park a source for years
        wait = max(wait, min(retry_after, settings.limits.max_backoff))
    return now + timedelta(seconds=wait)


async def refresh_source(
    store: Store,
    fetcher: Fetcher,
    source: Source,
    settings: Settings,
    now: datetime,
    state: SourceState | None = None,
) -> SourceReport:
    """Fetch, read and store one source; every attempt is recorded, whatever its outcome,
    an unexpected error included (in refresh and under the scheduler alike).

    `state` is the source's stored state when the caller has it already.
    """
    try:
        report = await _refresh_source(store, fetcher, source, settings, now, state)
    except Exception as e:  # a bug: logged in full, recorded in words, it stops only this source
        log.exception("refreshing %s failed unexpectedly", source.id)
        state = state or await store.source_state(source.id)
        report = await _record_bug(store, source, settings, now, state, e)
    metrics.FETCHES.labels(source.id, report.outcome).inc()
    metrics.FETCH_SECONDS.labels(source.id).observe(report.duration)
    return report


async def _refresh_source(
    store: Store,
    fetcher: Fetcher,
    source: Source,
    settings: Settings,
    now: datetime,
    state: SourceState | None,
) -> SourceReport:
    state = state or await store.source_state(source.id)
    same_url = state.url == source.url
    # validators only for what was read today: a new day moves the horizon, so read in full
    validators = state.validators if same_url and read_today(state, now) else Validators()
    moved = same_url and state.moved_to
    # a permanent move was a redirect: the member's server said it, so it is content and
    # goes through the guard unless it stays on the configured host
    result = await fetcher.fetch(
        moved or source.url, validators, content=bool(moved), trusted_host=source.url
    )
    forget_move = False
    if moved and result.status is not None and 400 <= result.status < 500:
        # the new address went away: the configured one is the member's word again
        result = await fetcher.fetch(source.url, validators, trusted_host=source.url)
        forget_move = True
    count = state.occurrence_count

    def attempt(outcome: str, message: str, **kwargs) -> Attempt:
        failures = state.failures_in_row + 1 if outcome == "failed" else 0
        if result.gone:  # asked again rarely, in case the member brings it back
            failures = 64
        return Attempt(
            at=now,
            outcome=outcome,
            message=message,
            next_check_at=next_check(source, settings, now, failures, result.retry_after),
            status=result.status,
            duration=result.duration,
            bytes=len(result.body),
            moved_to=result.moved_to,
            forget_move=forget_move,
            gone=result.gone,
            **kwargs,
        )

    async def failed(error: str) -> SourceReport:
        await store.record_attempt(source.id, attempt("failed", error, error=error))
        return SourceReport(source.id, "failed", count, error=error, duration=result.duration)

    async def unchanged(outcome: str, message: str) -> SourceReport:
        if state.pending_removals:
            # the same feed, fetched fine a second time: the vanished are confirmed gone
            snapshot = confirm_removals(await store.load_occurrences(source.id), now)
            message += f"; {state.pending_removals} vanished events confirmed removed"
            await store.record_attempt(
                source.id,
                attempt("updated", message, validators=result.validators),
                snapshot,
            )
            return SourceReport(
                source.id,
                "updated",
                count,
                changes={"removed": state.pending_removals},
                warnings=state.warnings,
                duration=result.duration,
            )
        await store.record_attempt(
            source.id, attempt(outcome, message, validators=result.validators)
        )
        return SourceReport(
            source.id, outcome, count, warnings=state.warnings, duration=result.duration
        )

    if result.outcome is FetchOutcome.FAILED:
        return await failed(result.error or "the fetch failed")
    if result.outcome is FetchOutcome.NOT_MODIFIED:
        return await unchanged("not modified", "not modified (HTTP 304)")
    digest = content_hash(result.body, now, source, settings)
    if digest == state.content_hash:
        return await unchanged("unchanged", "the same feed as last time; not read again")
    try:
        if feed_kind(result, source) is SourceKind.RSS:
            parsed = await read_rss(store, fetcher, source, result, settings, now)
        else:
            read = partial(
                parse_feed,
                result,
                source,
                network_zone=settings.network.timezone,
                now=now,
                limits=settings.limits,
            )
            # member content: read in a worker process, on a budget (rule 10)
            parsed = await worker.parse(read, url=source.url, limits=settings.limits)
    except ParseError as e:
        return await failed(f"could not read the feed: {e.message}")
    stored = await store.load_occurrences(source.id)
    # pure, but long for a feed of thousands: in a thread, so the server keeps answering
    parsed, unstable, drop, snapshot, changes = await asyncio.to_thread(
        _read_against_stored, parsed, stored, state, source.id, now, settings.limits
    )
    if snapshot is None:  # a new drop, or a different one: hold it
        # not applied, validators and hash not kept: the next fetch reads it again
        await store.record_attempt(source.id, attempt("held", drop, held_drop=drop))
        return SourceReport(
            source.id, "held", count, warnings=parsed.warnings, error=drop, duration=result.duration
        )
    counts = dict(Counter(c.kind.value for c in changes))
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    message = f"read {len(parsed.occurrences)} occurrences" + (f" ({summary})" if summary else "")
    if drop:
        message += "; the drop held back last time is confirmed and applied"
    await store.record_attempt(
        source.id,
        attempt(
            "updated" if changes else "unchanged",
            message,
            validators=result.validators,
            unstable_uids=unstable,
        ),
        snapshot,
        content_hash=digest,
        warnings=parsed.warnings,
    )
    return SourceReport(
        source.id,
        "updated" if changes else "unchanged",
        len(snapshot),
        changes=counts,
        warnings=parsed.warnings,
        duration=result.duration,
    )


def _read_against_stored(
    parsed: ParsedFeed,
    stored: list[Occurrence],
    state: SourceState,
    source_id: str,
    now: datetime,
    limits: Limits,
) -> tuple[ParsedFeed, bool, str | None, list[Occurrence] | None, list]:
    """What a good read means against the stored snapshot (pure): the read with its
    duplicates collapsed and identities made stable, whether UIDs are unstable, a suspicious
    drop, the new snapshot (None while a new drop is held) and the changes."""
    unique, duplicates = collapse_duplicates(parsed.occurrences)
    if duplicates:
        parsed = replace(
            parsed, occurrences=tuple(unique), warnings=(*parsed.warnings, *duplicates)
        )
    unstable = state.unstable_uids or uids_unstable(stored, parsed.occurrences)
    if unstable:
        occurrences = stable_identities(parsed.occurrences, source_id)
        warning = "UIDs change on every fetch; events are identified by their start and title"
        parsed = replace(
            parsed, occurrences=tuple(occurrences), warnings=(warning, *parsed.warnings)
        )
    drop = suspicious_drop(stored, parsed.occurrences, now, limits.drop_threshold)
    if drop and drop != state.held_drop:
        return parsed, unstable, drop, None, []
    snapshot = carry_over(
        stored,
        parsed.occurrences,
        now,
        oldest=now - timedelta(days=limits.past_days),
        retention=timedelta(days=limits.retention_days),
        recreate_window=timedelta(days=limits.recreate_window_days),
        confirmed=bool(drop),
    )
    return parsed, unstable, drop, snapshot, reconcile(stored, snapshot)


async def read_rss(
    store: Store | None,
    fetcher: Fetcher,
    source: Source,
    result: FetchResult,
    settings: Settings,
    now: datetime,
    parse: Parse = worker.parse,
) -> ParsedFeed:
    """An RSS/Atom feed's items, with the pages they link, read through the fetch stage.

    A page is read again only when its item changed (new title, text or link), at most
    `limits.max_pages` per cycle; the rest use what was kept, or wait for the next cycle.
    Without a store (`aggregator check`) nothing is kept.
    """
    zone_name = source.timezone or settings.network.timezone
    languages = ((source.language,) if source.language else ()) + settings.network.languages
    limits = settings.limits
    items, warnings = await parse(
        partial(read_feed, result.body, result.content_type, url=source.url, zone_name=zone_name),
        url=source.url,
        limits=limits,
    )
    kept = await store.load_pages(source.id) if store else {}
    pages: dict[str, PageData] = {}
    fresh: list[CachedPage] = []
    budget = settings.limits.max_pages
    for item in items:
        if item.structured is not None or not item.link or is_local(item.link):
            continue
        if settings.limits.max_pages == 0:  # pages switched off
            continue
        cached = kept.get(item.link)
        if cached is not None and cached.item_fingerprint == item.fingerprint:
            pages[item.link] = cached.page
            continue
        if budget <= 0:
            if cached is not None:
                pages[item.link] = cached.page
            warnings.append(f"'{item.title}': its page waits for the next cycle (page limit)")
            continue
        budget -= 1
        page = await _read_page(fetcher, item.link, cached, source, zone_name, now, limits, parse)
        if isinstance(page, str):
            warnings.append(f"'{item.title}': {page}")
            if cached is not None:
                pages[item.link] = cached.page
            continue
        validators, data = page
        pages[item.link] = data
        fresh.append(CachedPage(data, item.fingerprint, now, validators))
    if store:
        await store.save_pages(source.id, fresh)
    parsed = await parse(
        partial(
            item_events,
            items,
            pages,
            source=source,
            zone_name=zone_name,
            languages=languages,
            now=now,
            limits=limits,
        ),
        url=source.url,
        limits=limits,
    )
    return ParsedFeed(parsed.occurrences, tuple(warnings) + parsed.warnings, parsed.series)


async def _read_page(
    fetcher: Fetcher,
    url: str,
    cached: CachedPage | None,
    source: Source,
    zone_name: str,
    now: datetime,
    limits: Limits,
    parse: Parse,
) -> tuple[Validators, PageData] | str:
    """A linked page (and the .ics it links, when it has no event data), or what went wrong.

    Both addresses come from member content: fetched only when public or on the source's
    own host (the fetcher's guard), and read in a worker process on a budget.
    """
    validators = cached.validators if cached else None
    try:
        result = await fetcher.fetch(url, validators, content=True, trusted_host=source.url)
    except Refused as refused:  # /check: a page inside our network is skipped, not fetched
        return f"its page was not read ({refused.message})"
    if result.outcome is FetchOutcome.NOT_MODIFIED and cached is not None:
        return cached.validators, cached.page
    if result.outcome is not FetchOutcome.OK:
        return f"its page could not be read ({result.error or 'not modified'})"
    where = str(result.final_url or url)
    try:
        page = await parse(
            partial(_read_page_body, result.body, result.charset, where, zone_name),
            url=url,
            limits=limits,
            what="its page",
        )
    except ParseError as e:
        return f"its page could not be read ({e.message})"
    if not page.events and page.ics_links:
        link = page.ics_links[0]
        try:
            ics = await fetcher.fetch(link, content=True, trusted_host=source.url)
        except Refused:
            return result.validators, page
        if ics.outcome is FetchOutcome.OK:
            try:
                found = await parse(
                    partial(_read_ics_body, ics.body, ics.charset, link, zone_name, now),
                    url=link,
                    limits=limits,
                    what="the .ics file its page links",
                )
            except ParseError:
                found = None
            if found is not None:
                page = replace(page, events=(found,))
    return result.validators, page


def _read_page_body(body: bytes, charset: str | None, url: str, zone_name: str) -> PageData:
    """In a worker: a fetched event page's bytes -> PageData."""
    html, _ = decode_body(body, charset)
    return read_page(html, url, zone_name)


def _read_ics_body(
    body: bytes, charset: str | None, url: str, zone_name: str, now: datetime
) -> FoundEvent | None:
    """In a worker: the first event of a page's linked .ics file."""
    text, _ = decode_body(body, charset)
    return event_from_ics(text, url, zone_name, now)


async def publish(store: Store, settings: Settings, now: datetime) -> bool:
    """Merge every source's occurrences and publish the network events that changed.

    Cancelled and postponed events stay until their date has passed by the retention time
    (rule 7); then they leave every output.
    """
    retention = timedelta(days=settings.limits.retention_days)
    occurrences, known = await store.load_occurrences(), await store.known_ids()
    # seconds for a large network: in a thread, so the server keeps answering meanwhile
    events = await asyncio.to_thread(merge, occurrences, settings.sources, settings.merging, known)
    merged = [
        event
        for event in events
        if not (
            event.status in (Status.CANCELLED, Status.POSTPONED) and _ends(event) + retention < now
        )
    ]
    unrenderable: dict[str, list[str]] = {}

    def render(event: MergedEvent, sequence: int, created: datetime, modified: datetime):
        # member text that icalendar cannot write costs that event, never the publish
        try:
            return render_event(event, sequence, created, modified, network=settings.network)
        except Exception as e:  # noqa: BLE001  (whatever the library raises on a value)
            log.warning("event %s could not be rendered: %r", event.id, e)
            for source_id in event.source_ids:
                unrenderable.setdefault(source_id, []).append(
                    f"event '{event.title}' could not be written to the calendar and was "
                    f"left out ({type(e).__name__}: {str(e)[:120]}); check its text and links"
                )
            return None

    changed = await store.publish(merged, render, render_key(settings.network), now)
    for source_id, warnings in unrenderable.items():
        await store.add_source_warnings(source_id, warnings)
    return changed


def _ends(event) -> datetime:
    end = event.end
    return end if isinstance(end, datetime) else datetime.combine(end, datetime.min.time(), UTC)


async def _record_bug(
    store: Store,
    source: Source,
    settings: Settings,
    now: datetime,
    state: SourceState,
    error: Exception,
) -> SourceReport:
    words = f"an unexpected error in the aggregator ({type(error).__name__}: {error}); reported"
    failures = state.failures_in_row + 1
    attempt = Attempt(
        at=now,
        outcome="failed",
        message=words,
        error=words,
        next_check_at=next_check(source, settings, now, failures, None),
    )
    await store.record_attempt(source.id, attempt)
    return SourceReport(source.id, "failed", state.occurrence_count, error=words)


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
    states = await store.source_states()
    limit = asyncio.Semaphore(settings.limits.concurrency)
    stop = stop or asyncio.Event()

    async def one(source: Source) -> SourceReport | None:
        async with limit:
            if stop.is_set():
                return None
            if on_start:
                on_start(source)
            try:
                report = await refresh_source(
                    store, fetcher, source, settings, now, states[source.id]
                )
            except Exception as e:  # a bug: logged in full, and it stops only this source
                log.exception("refreshing %s failed unexpectedly", source.id)
                report = await _record_bug(store, source, settings, now, states[source.id], e)
        if on_report:
            on_report(report)
        return report

    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(one(s)) for s in (sources or settings.sources)]
    every = asyncio.gather(*tasks, return_exceptions=True)
    stopping = asyncio.create_task(stop.wait())
    deadline = None
    try:
        await asyncio.wait({every, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not every.done():  # stopped: those being read get stop_seconds to finish
            deadline = loop.time() + settings.limits.stop_seconds
            await asyncio.wait({every}, timeout=settings.limits.stop_seconds)
    finally:
        stopping.cancel()
        for task in tasks:
            task.cancel()
        await every
    for task in tasks:  # an error outside refresh_source's own handling is a bug: raised
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()
    reports = [t.result() for t in tasks if not t.cancelled() and t.result() is not None]
    # nothing read anew and no publish owed by an earlier run that was stopped or killed
    # between a source's write and its publish: the published events cannot have changed
    owed = any(r.outcome == "updated" for r in reports) or await store.publish_owed()
    in_time = deadline is None or loop.time() < deadline
    changed = owed and in_time and await publish(store, settings, now)
    return reports, changed
