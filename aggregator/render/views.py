"""One view model per page: what its template shows, made from the data. Pure: no I/O, no
clock read (pass `now`), no request object.

Everything a member feed wrote stays plain text here and is escaped by the templates'
autoescape; no view marks feed text safe. A feed's URL becomes a link only through
`http_link`, so a hostile feed's `javascript:` URL is never clickable. Words come from the
pages catalogue in the page's language; dates from render.dates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from aggregator.i18n import N_, gettext_in, translations
from aggregator.model import (
    ChangeKind,
    ChangeRecord,
    MergedEvent,
    Network,
    Problem,
    Settings,
    Status,
)
from aggregator.normalise import from_iso, iso, zone
from aggregator.problems import say
from aggregator.render.dates import language_name, moment, span
from aggregator.render.health import hint
from aggregator.render.text import LABELS
from aggregator.selection import UnknownChoice

#: the word beside a title for each status but scheduled (msgids of the pages catalogue)
STATUS_MARKS = {
    Status.CANCELLED: LABELS["cancelled"],
    Status.POSTPONED: LABELS["postponed"],
    Status.TENTATIVE: N_("Tentative"),
    Status.RESCHEDULED: LABELS["rescheduled"],
}
#: schema.org's eventStatus for each status; a tentative event is still scheduled
#: (schema.org has no tentative), a moved one says so with previousStartDate as well
EVENT_STATUS = {
    Status.SCHEDULED: "https://schema.org/EventScheduled",
    Status.TENTATIVE: "https://schema.org/EventScheduled",
    Status.CANCELLED: "https://schema.org/EventCancelled",
    Status.POSTPONED: "https://schema.org/EventPostponed",
    Status.RESCHEDULED: "https://schema.org/EventRescheduled",
}
#: the JSON-LD description is a summary: search engines show a line or two
DESCRIPTION_CHARS = 300
#: what a link that keeps the page's selection carries (the page's form offers no status,
#: but /?status=cancelled works as on the feeds, and its subscription follows it)
LINK_KEYS = ("source", "category", "status")


@dataclass(frozen=True)
class LanguageLink:
    """A link to the same page in another of the network's languages, named in it."""

    lang: str
    name: str
    href: str


@dataclass(frozen=True, kw_only=True)
class Page:
    """What every page shows around its content (base.html)."""

    lang: str
    network: Network
    #: the page in the network's other languages
    switch: tuple[LanguageLink, ...]
    #: the events page, in this page's language
    home_href: str
    #: ?embed=1: no header, language switch or footer (only the events page embeds)
    embed: bool = False


@dataclass(frozen=True)
class EventView:
    """What the templates show of one event: plain text (escaped there) and safe links."""

    id: str
    href: str
    ics_href: str
    title: str
    #: cancelled or postponed: the title is struck through and a mark says why in words
    struck: bool
    #: status words shown as text beside the title ("Aflyst", "Udsat", "Foreløbig")
    marks: tuple[str, ...]
    when: str
    #: the start for <time datetime>: ISO 8601
    datetime: str
    place: str
    organisers: str
    #: "Flyttet fra tors. 28. jan. kl. 13.00", "Aflyst hos: Beta", "fjernet af arrangøren"
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Copy:
    """One member's copy of a network event: its name for it, and its link when safe."""

    source: str
    title: str
    url: str | None


@dataclass(frozen=True)
class HistoryRow:
    """One change of an event in words: 'Flyttet: fra ... til ...', 'Ændret: sted, titel'."""

    datetime: str
    at: str
    text: str
    #: the title it had then, when that differs from today's
    title: str


@dataclass(frozen=True, kw_only=True)
class EventPage(Page):
    """/events/{id}: the details, each member's copy, the history (newest first)."""

    event: EventView
    description: str
    url: str | None
    categories: str
    copies: tuple[Copy, ...]
    history: tuple[HistoryRow, ...]
    json_href: str
    #: schema.org Event for search engines; the template writes it with Jinja's `tojson`,
    #: which escapes < > & ' as \u003c..., so member text cannot close the <script> element
    json_ld: dict[str, Any]


@dataclass(frozen=True)
class Hinted:
    """Something skipped or wrong, in the page's language, with what to do about it."""

    what: str
    hint: str | None = None


@dataclass(frozen=True)
class CheckedOccurrence:
    when: str
    title: str
    #: the status word ('' when scheduled)
    status: str
    #: how its date was found (RSS)
    origin: str


@dataclass(frozen=True)
class CheckReport:
    """What /check read in a feed."""

    target: str
    error: str | None
    warnings: tuple[Hinted, ...]
    occurrences: tuple[CheckedOccurrence, ...]


@dataclass(frozen=True, kw_only=True)
class CheckPage(Page):
    """/check: the form, and the report of a check or why it was refused."""

    report: CheckReport | None = None
    refused: str = ""


def hinted(warning: Problem | str, lang: str) -> Hinted:
    """A warning in `lang`, with its hint when we have one."""
    return Hinted(say(warning, lang), hint(warning, lang))


def http_link(url: str | None) -> str | None:
    """The URL when it is http(s) with a host; None for anything else (javascript:, data:,
    relative), so a feed's URL is a link only when it cannot run code on our page."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    # urlsplit dropped tabs and newlines as browsers do; emit what was checked
    return parts.geturl()


def network_zone(network: Network) -> tzinfo:
    return zone(network.timezone) or UTC


def event_view(event: MergedEvent, lang: str, tz: tzinfo, *, year: bool) -> EventView:
    """One event as a list or its page shows it; `year` in its dates or not."""
    word = gettext_in(lang, "pages")  # of msgids marked where they are defined
    marks: list[str] = []
    notes: list[str] = []
    mark = STATUS_MARKS.get(event.status)
    if mark is None and event.previous_start is not None:
        mark = LABELS["rescheduled"]  # "Flyttet" / "Moved"
    if mark is not None:
        marks.append(word(mark))
    if event.removed:
        notes.append(word(LABELS["removed"]))
    if event.previous_start is not None:
        old = moment(event.previous_start, tz, lang, year=year)
        notes.append(f"{word(LABELS['moved_from'])} {old}")
    if event.cancelled_by:
        notes.append(f"{word(LABELS['cancelled_by'])}: {', '.join(event.cancelled_by)}")
    event_path = f"/events/{quote(event.id, safe='')}"
    return EventView(
        id=event.id,
        href=event_path + link_query({}, lang=lang),
        ics_href=f"{event_path}.ics",
        title=event.title,
        struck=event.status in (Status.CANCELLED, Status.POSTPONED),
        marks=tuple(marks),
        when=span(event, tz, lang, year=year),
        datetime=iso(event.start) or "",
        place=event.location,
        organisers=", ".join(event.organisers),
        notes=tuple(notes),
    )


def event_page(
    event: MergedEvent, settings: Settings, history: Sequence[ChangeRecord], *, lang: str
) -> EventPage:
    """/events/{id}; `history`: the event's changes, oldest first (Store.event_history())."""
    network = settings.network
    tz = network_zone(network)
    names = {source.id: source.name for source in settings.sources}
    path = f"/events/{quote(event.id, safe='')}"
    return EventPage(
        lang=lang,
        network=network,
        switch=language_links(network, lang, lambda other: path + link_query({}, lang=other)),
        home_href="/" + link_query({}, lang=lang),
        event=event_view(event, lang, tz, year=True),
        description=event.description,
        url=http_link(event.url),
        categories=", ".join(event.categories),
        copies=tuple(
            Copy(names.get(source_id, source_id), title, http_link(url))
            for source_id, title, url in event.copies
        ),
        history=tuple(history_row(c, event, lang, tz) for c in reversed(history)),
        json_href=f"{path}.json",
        json_ld=event_json_ld(event, settings),
    )


def event_json_ld(event: MergedEvent, settings: Settings) -> dict[str, Any]:
    """The event as a schema.org Event (JSON-LD): what search engines list it by.

    Times with the network's offset, dates alone for an all-day event; a Place whose address
    is the location's text (all a feed gives us); an Organization per organiser, linked to
    its member's copy when that is an http(s) link."""
    tz = network_zone(settings.network)
    names = {source.id: source.name for source in settings.sources}
    links: dict[str, str] = {}
    for source_id, _title, url in event.copies:
        link = http_link(url)
        if link:
            links.setdefault(names.get(source_id, source_id), link)
    base = settings.network.base_url.rstrip("/")
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Event",
        "name": event.title,
        "startDate": _schema_time(event.start, tz),
        "endDate": _schema_time(event.end, tz),
        "eventStatus": EVENT_STATUS.get(event.status, EVENT_STATUS[Status.SCHEDULED]),
        "url": f"{base}/events/{quote(event.id, safe='')}",
    }
    if event.previous_start is not None:
        data["previousStartDate"] = _schema_time(event.previous_start, tz)
    if event.location:
        data["location"] = {"@type": "Place", "name": event.location, "address": event.location}
    if event.organisers:
        organizers = [{"@type": "Organization", "name": name} for name in event.organisers]
        for organizer in organizers:
            if organizer["name"] in links:
                organizer["url"] = links[organizer["name"]]
        data["organizer"] = organizers
    description = shorten(event.description, DESCRIPTION_CHARS)
    if description:
        data["description"] = description
    return data


def _schema_time(value: date | datetime, tz: tzinfo) -> str:
    """ISO 8601 as schema.org reads it: a date alone, or a time with its offset (the
    network's, so the listing shows the time as the page does)."""
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat()
    return value.isoformat()


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut at a word before `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    word = cut.rsplit(" ", 1)[0]
    return (word if len(word) > limit // 2 else cut).rstrip(" ,.;:") + "…"


def history_row(change: ChangeRecord, event: MergedEvent, lang: str, tz: tzinfo) -> HistoryRow:
    """One change in words, in the page's language."""
    word = gettext_in(lang, "pages")  # of msgids marked where they are defined
    before, after = change.before or {}, change.after or {}
    if change.kind is ChangeKind.REMOVED:
        text = f"{word(LABELS['cancelled'])} ({word(LABELS['removed'])})"
    elif change.kind is ChangeKind.MOVED and before.get("start") and after.get("start"):
        old = moment(from_iso(before["start"]), tz, lang)
        new = moment(from_iso(after["start"]), tz, lang)
        moved, since, until = (word(LABELS[key]) for key in ("rescheduled", "from", "to"))
        text = f"{moved}: {since} {old} {until} {new}"
    elif change.kind is ChangeKind.UPDATED and after.get("fields"):
        fields = ", ".join(field_word(name, lang) for name in after["fields"])
        text = f"{word(LABELS['updated'])}: {fields}"
    else:
        kind = change.kind.value
        text = word(LABELS[kind]) if kind in LABELS else kind
    title = change.title or ""
    return HistoryRow(
        datetime=iso(change.at) or "",
        at=moment(change.at, tz, lang),
        text=text,
        title=title if title and title != event.title else "",
    )


def field_word(name: str, lang: str) -> str:
    """A changed field's name in `lang` ('sted' for location); an unknown one as it is."""
    pgettext = translations(lang, "pages").pgettext
    words = {
        "title": pgettext("changed field", "title"),
        "start": pgettext("changed field", "start"),
        "end": pgettext("changed field", "end"),
        "all_day": pgettext("changed field", "all day"),
        "location": pgettext("changed field", "place"),
        "status": pgettext("changed field", "status"),
        "description": pgettext("changed field", "description"),
        "url": pgettext("changed field", "link"),
    }
    return words.get(name, name)


def check_page(
    settings: Settings,
    report: object | None,
    *,
    lang: str,
    refused: str = "",
) -> CheckPage:
    """/check: the form, and `report` (a check.CheckReport) or why it was `refused`."""
    network = settings.network
    tz = network_zone(network)
    word = gettext_in(lang, "pages")  # of msgids marked where they are defined
    found = None
    if report is not None:
        found = CheckReport(
            target=report.target,
            error=report.error,
            warnings=tuple(hinted(w, lang) for w in report.warnings),
            occurrences=tuple(
                CheckedOccurrence(
                    when=moment(o.start, tz, lang),
                    title=o.title,
                    status=word(STATUS_MARKS[o.status]) if o.status in STATUS_MARKS else "",
                    origin=o.origin,
                )
                for o in report.occurrences
            ),
        )
    return CheckPage(
        lang=lang,
        network=network,
        switch=language_links(network, lang, lambda other: "/check" + link_query({}, lang=other)),
        home_href="/" + link_query({}, lang=lang),
        report=found,
        refused=refused,
    )


def refused_filter(error: UnknownChoice, lang: str) -> str:
    """Why the page's filter was refused, in the page's language: 'source=nope: no member
    with that id; use one of: alpha, beta'."""
    _ = gettext_in(lang, "pages")
    if error.parameter == "source":
        reason = _("no member with that id")
    else:
        reason = _("no status by that name")
    use = _("use one of")
    values, choices = ",".join(error.values), ", ".join(error.choices)
    return f"{error.parameter}={values}: {reason}; {use}: {choices}"


def link_query(
    filters: Mapping[str, Sequence[str]],
    *,
    lang: str | None = None,
    embed: bool = False,
    cancelled: str | None = None,
    q: str = "",
    month: str | None = None,
    after: str | None = None,
) -> str:
    """'?source=a&category=b&q=kor&month=2027-03&lang=en', or '' when there is nothing to say."""
    pairs = [(key, value) for key in LINK_KEYS for value in filters.get(key, ())]
    if cancelled:
        pairs.append(("cancelled", cancelled))
    if q:
        pairs.append(("q", q))
    if month:
        pairs.append(("month", month))
    if after:
        pairs.append(("after", after))
    if lang:
        pairs.append(("lang", lang))
    if embed:
        pairs.append(("embed", "1"))
    return "?" + urlencode(pairs) if pairs else ""


def language_links(
    network: Network, current: str, href: Callable[[str], str]
) -> tuple[LanguageLink, ...]:
    """Links to the page in the network's other languages, each named in its own language."""
    return tuple(
        LanguageLink(lang, language_name(lang), href(lang))
        for lang in network.languages
        if lang != current
    )
