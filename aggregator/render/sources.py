"""What a member organisation reads about its sources: /sources and /sources/{id}, as JSON
and as the view models of their pages. Pure: no I/O, no clock read (pass `now`).

The JSON keeps the stored words (English); a page says the warnings, the problems and the
fetches in its own language (problems.say, render.health's hints, the pages catalogue).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from urllib.parse import quote

from markupsafe import Markup

from aggregator.i18n import gettext_in, translations
from aggregator.model import (
    FetchOutcome,
    FetchRecord,
    NetworkEvent,
    Occurrence,
    Settings,
    Source,
    SourceState,
    Status,
)
from aggregator.normalise import iso
from aggregator.problems import say
from aggregator.render.dates import moment
from aggregator.render.health import hint, state_hints, timeline_svg
from aggregator.render.views import (
    Hinted,
    Page,
    hinted,
    http_link,
    language_links,
    link_query,
    network_zone,
)

#: fetches listed on a source's page (its timeline shows the last 30 days)
LISTED_FETCHES = 50


@dataclass(frozen=True)
class Merged:
    """A network event the source shares with other members."""

    event: str
    title: str
    start: str | None
    #: the other members' ids, and their names
    with_ids: tuple[str, ...]
    with_names: tuple[str, ...]


@dataclass(frozen=True)
class SourceHealth:
    """One member source's health, for /sources/{id} (its page and its JSON): its state, what
    it read, what was merged with whom, and its fetches."""

    source: Source
    state: SourceState | None
    #: repeating series, and cancelled or postponed occurrences, in what it read
    series: int
    cancelled: int
    merged: tuple[Merged, ...]
    #: its recorded fetches, newest first
    fetches: tuple[FetchRecord, ...]


def source_health(
    source: Source,
    state: SourceState | None,
    settings: Settings,
    *,
    occurrences: Sequence[Occurrence],
    events: Sequence[NetworkEvent],
    fetches: Sequence[FetchRecord],
) -> SourceHealth:
    """The health of `source` from its state, occurrences and fetches and the published
    `events`."""
    names = {s.id: s.name for s in settings.sources}
    merged = tuple(
        Merged(
            event=item.event.id,
            title=item.event.title,
            start=iso(item.event.start),
            with_ids=tuple(s for s in item.event.source_ids if s != source.id),
            with_names=tuple(names[s] for s in item.event.source_ids if s != source.id),
        )
        for item in events
        if source.id in item.event.source_ids and len(item.event.source_ids) > 1
    )
    return SourceHealth(
        source=source,
        state=state,
        series=len({o.uid for o in occurrences if o.recurrence_id}),
        cancelled=sum(o.status in (Status.CANCELLED, Status.POSTPONED) for o in occurrences),
        merged=merged,
        fetches=tuple(fetches),
    )


def source_json(source: Source, state: SourceState | None) -> dict:
    """One source's state as /sources lists it."""
    return {
        "id": source.id,
        "name": source.name,
        "url": source.url,
        "kind": source.kind.value,
        "homepage": source.homepage,
        "state": state.health if state else "never fetched",
        "status": state.describe() if state else "never fetched",
        "last_fetch_at": iso(state.last_fetch_at) if state else None,
        "last_success_at": iso(state.last_success_at) if state else None,
        "last_error": state.last_error if state else None,
        "failures_in_row": state.failures_in_row if state else 0,
        "failing_since": iso(state.failing_since) if state else None,
        "held_drop": state.held_drop if state else None,
        "gone_at": iso(state.gone_at) if state else None,
        "moved_to": state.moved_to if state else None,
        "next_check_at": iso(state.next_check_at) if state else None,
        "occurrences": state.occurrence_count if state else 0,
        "warnings": [str(w) for w in state.warnings] if state else [],
    }


def health_json(report: SourceHealth, lang: str) -> dict:
    """/sources/{id}.json: the state, what it read, its hints (in `lang`), merges, fetches."""
    return {
        **source_json(report.source, report.state),
        "series": report.series,
        "cancelled": report.cancelled,
        "problems": [{"what": w, "hint": h} for w, h in state_hints(report.state, lang)],
        # the stored words, as "warnings" has them; the hint in `lang`
        "hints": [{"what": str(w), "hint": hint(w, lang)} for w in _warnings(report.state)],
        "merged": [
            {
                "event": m.event,
                "title": m.title,
                "start": m.start,
                "with": list(m.with_ids),
                "with_names": list(m.with_names),
            }
            for m in report.merged
        ],
        "fetches": [
            {
                "at": iso(fetch.at),
                "outcome": fetch.outcome.value,
                "message": fetch.message or fetch.error,
                "status": fetch.status,
                "duration": round(fetch.duration, 3),
                "bytes": fetch.bytes,
                "occurrences": fetch.occurrences,
            }
            for fetch in report.fetches
        ],
    }


@dataclass(frozen=True)
class SourceRow:
    """A source as /sources lists it."""

    id: str
    name: str
    href: str
    #: 'ok', 'failing', ...: a word, and the state in words when it says more
    state: str
    status: str
    last_success: str
    occurrences: int
    #: how many things its last read skipped or guessed
    warnings: int


@dataclass(frozen=True, kw_only=True)
class SourcesPage(Page):
    """/sources: each member source's state, for the member organisations."""

    sources: tuple[SourceRow, ...]


@dataclass(frozen=True)
class FetchRow:
    """One fetch in words: when, how it went, what it read or why it failed."""

    datetime: str
    at: str
    outcome: str
    message: str | None
    status: int | None


@dataclass(frozen=True)
class SourceView:
    """One source's state, what was read and skipped, merges and fetches, in words."""

    id: str
    name: str
    url: str
    homepage: str | None
    state: str
    status: str
    last_success: str
    next_fetch: str
    occurrences: int
    series: int
    cancelled: int
    problems: tuple[Hinted, ...]
    hints: tuple[Hinted, ...]
    merged: tuple[Merged, ...]
    fetches: tuple[FetchRow, ...]


@dataclass(frozen=True, kw_only=True)
class SourcePage(Page):
    """/sources/{id}: one source, with a timeline of its last 30 days' fetches."""

    source: SourceView
    #: an SVG made by render.health.timeline_svg from our own numbers, its text escaped there
    timeline: Markup
    sources_href: str


def sources_page(
    settings: Settings, states: Mapping[str, SourceState], *, lang: str
) -> SourcesPage:
    """/sources as a page."""
    network = settings.network
    tz = network_zone(network)
    rows = []
    for source in settings.sources:
        state = states.get(source.id)
        rows.append(
            SourceRow(
                id=source.id,
                name=source.name,
                href=f"/sources/{quote(source.id, safe='')}" + link_query({}, lang=lang),
                state=state.health if state else "never fetched",
                status=state.describe() if state else "never fetched",
                last_success=_when(state and state.last_success_at, tz, lang),
                occurrences=state.occurrence_count if state else 0,
                warnings=len(state.warnings) if state else 0,
            )
        )
    return SourcesPage(
        lang=lang,
        network=network,
        switch=language_links(network, lang, lambda other: "/sources" + link_query({}, lang=other)),
        home_href="/" + link_query({}, lang=lang),
        sources=tuple(rows),
    )


def source_page(
    report: SourceHealth, settings: Settings, *, lang: str, now: datetime
) -> SourcePage:
    """/sources/{id} as a page, in `lang`."""
    network = settings.network
    tz = network_zone(network)
    source, state = report.source, report.state
    path = f"/sources/{quote(source.id, safe='')}"
    view = SourceView(
        id=source.id,
        name=source.name,
        url=source.url,
        homepage=http_link(source.homepage),
        state=state.health if state else "never fetched",
        status=state.describe() if state else "never fetched",
        last_success=_when(state and state.last_success_at, tz, lang),
        next_fetch=_when(state and state.next_check_at, tz, lang),
        occurrences=state.occurrence_count if state else 0,
        series=report.series,
        cancelled=report.cancelled,
        problems=tuple(Hinted(w, h) for w, h in state_hints(state, lang)),
        hints=tuple(hinted(w, lang) for w in _warnings(state)),
        merged=report.merged,
        fetches=tuple(fetch_row(f, tz, lang) for f in report.fetches[:LISTED_FETCHES]),
    )
    return SourcePage(
        lang=lang,
        network=network,
        switch=language_links(network, lang, lambda other: path + link_query({}, lang=other)),
        home_href="/" + link_query({}, lang=lang),
        source=view,
        # ours, its text escaped where it is made
        timeline=Markup(timeline_svg(report.fetches, now)),  # noqa: S704
        sources_href="/sources" + link_query({}, lang=lang),
    )


def fetch_row(fetch: FetchRecord, tz: tzinfo, lang: str) -> FetchRow:
    """A fetch in `lang`: its problem said in it when it has one, else its message."""
    return FetchRow(
        datetime=iso(fetch.at) or "",
        at=moment(fetch.at, tz, lang),
        outcome=outcome_word(fetch.outcome, lang),
        message=say(fetch.problem, lang) if fetch.problem else fetch.message or fetch.error,
        status=fetch.status,
    )


def outcome_word(outcome: FetchOutcome, lang: str) -> str:
    """'updated' / 'opdateret': how a fetch went, in `lang`."""
    pgettext = translations(lang, "pages").pgettext
    words = {
        FetchOutcome.OK: pgettext("fetch outcome", "ok"),
        FetchOutcome.NOT_MODIFIED: pgettext("fetch outcome", "not modified"),
        FetchOutcome.FAILED: pgettext("fetch outcome", "failed"),
        FetchOutcome.UPDATED: pgettext("fetch outcome", "updated"),
        FetchOutcome.UNCHANGED: pgettext("fetch outcome", "unchanged"),
        FetchOutcome.HELD: pgettext("fetch outcome", "held"),
    }
    return words.get(outcome, str(outcome))


def _warnings(state: SourceState | None) -> tuple:
    return tuple(state.warnings) if state else ()


def _when(value: date | datetime | None, tz: tzinfo, lang: str) -> str:
    """When it was (or will be), or 'never'."""
    if value:
        return moment(value, tz, lang)
    _ = gettext_in(lang, "pages")
    return _("never")
