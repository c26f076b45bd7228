"""The embeddable page (GET /) and an event's page (GET /events/{id}): network events -> HTML.

Pure: no I/O, no clock read (pass `now`), no request object; web.py picks the language
(choose_language), reads the filters (page_filters) and keeps the text it gets back as bytes.

Everything a member feed wrote reaches the templates as plain text and is escaped by Jinja2's
autoescape; no template marks feed text safe. A feed's URL becomes a link only when its scheme
is http or https, so a hostile feed's `javascript:` URL is never clickable.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_interval, format_skeleton, format_time
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from aggregator.model import ChangeKind, ChangeRecord, MergedEvent, NetworkEvent, Settings, Status
from aggregator.normalise import from_iso, iso, zone
from aggregator.render.health import hint
from aggregator.render.text import WORDS
from aggregator.selection import Selection, UnknownChoice

#: the page's own words; the status words come from render.text.WORDS, so the page, the
#: calendar and the feed say the same thing
PAGE_WORDS = {
    "sources_heading": {"da": "Medlemmernes kilder", "en": "Member sources"},
    "source": {"da": "Kilde", "en": "Source"},
    "state": {"da": "Tilstand", "en": "State"},
    "last_success": {"da": "Sidst hentet", "en": "Last read"},
    "next_fetch": {"da": "Næste hentning", "en": "Next fetch"},
    "read": {"da": "Læst", "en": "Read"},
    "occurrences_n": {"da": "forekomster", "en": "occurrences"},
    "series_n": {"da": "gentagne serier", "en": "repeating series"},
    "cancelled_n": {"da": "aflyste", "en": "cancelled"},
    "skipped": {"da": "Sprunget over eller gættet", "en": "Skipped or guessed"},
    "nothing_skipped": {"da": "Intet sprunget over.", "en": "Nothing skipped."},
    "fix": {"da": "Sådan retter I det", "en": "How to fix it"},
    "problems": {"da": "Problemer", "en": "Problems"},
    "merged_with": {"da": "Slået sammen med", "en": "Merged with"},
    "nothing_merged": {
        "da": "Ingen af kildens arrangementer findes hos andre medlemmer.",
        "en": "None of its events are published by other members.",
    },
    "timeline": {"da": "De sidste 30 dage", "en": "The last 30 days"},
    "timeline_help": {
        "da": "Streger: hentninger (grøn: opdateret, grå: uændret, gul: holdt tilbage, "
        "rød: fejlede). Linje: antal forekomster.",
        "en": "Ticks: fetches (green: updated, grey: unchanged, yellow: held, red: failed). "
        "Line: number of occurrences.",
    },
    "fetches": {"da": "Hentninger", "en": "Fetches"},
    "outcome": {"da": "Resultat", "en": "Outcome"},
    "never": {"da": "aldrig", "en": "never"},
    "check_heading": {"da": "Tjek et feed", "en": "Check a feed"},
    "check_intro": {
        "da": "Indsæt adressen på jeres kalender- eller RSS-feed, eller vælg en fil, og se "
        "hvad vi læser i den: arrangementerne, hvordan hver dato blev fundet, og hvad vi "
        "sprang over. Intet gemmes.",
        "en": "Paste the address of your calendar or RSS feed, or choose a file, and see what "
        "we read in it: the events, how each date was found, and what we skipped. Nothing "
        "is stored.",
    },
    "feed_address": {"da": "Feedets adresse", "en": "The feed's address"},
    "or_file": {"da": "eller en fil", "en": "or a file"},
    "check": {"da": "Tjek", "en": "Check"},
    "refused": {"da": "Afvist", "en": "Refused"},
    "found_by": {"da": "fundet ved", "en": "found by"},
    "all_events": {"da": "Alle arrangementer", "en": "All events"},
    "upcoming": {"da": "Kommende arrangementer", "en": "Upcoming events"},
    "none": {"da": "Ingen kommende arrangementer.", "en": "No upcoming events."},
    "none_filtered": {
        "da": "Ingen kommende arrangementer passer til filteret.",
        "en": "No upcoming events match the filter.",
    },
    "skip": {"da": "Gå til indholdet", "en": "Skip to the content"},
    "language": {"da": "Sprog", "en": "Language"},
    "filter": {"da": "Filtrér", "en": "Filter"},
    "member": {"da": "Medlem", "en": "Member"},
    "all_members": {"da": "Alle medlemmer", "en": "All members"},
    "category": {"da": "Kategori", "en": "Category"},
    "all_categories": {"da": "Alle kategorier", "en": "All categories"},
    "show": {"da": "Vis", "en": "Show"},
    "clear": {"da": "Nulstil filter", "en": "Clear filter"},
    "when": {"da": "Tidspunkt", "en": "When"},
    "place": {"da": "Sted", "en": "Place"},
    "organised_by": {"da": "Arrangeret af", "en": "Organised by"},
    "categories": {"da": "Kategorier", "en": "Categories"},
    "more_info": {"da": "Mere information", "en": "More information"},
    "download": {"da": "Hent .ics", "en": "Download .ics"},
    "tentative": {"da": "Foreløbig", "en": "Tentative"},
    "at_time": {"da": "kl.", "en": ""},
    "subscribe_heading": {"da": "Abonnér på kalenderen", "en": "Subscribe to the calendar"},
    "subscribe": {"da": "Abonnér", "en": "Subscribe"},
    "subscribe_filtered": {
        "da": "Abonnementet følger dit filter.",
        "en": "The subscription follows your filter.",
    },
    "address": {"da": "Kalenderens adresse", "en": "The calendar's address"},
    "google_address": {
        "da": "Adresse til Google Kalender",
        "en": "Address for Google Calendar",
    },
    "atom": {"da": "Nyheder om ændringer (Atom)", "en": "News of changes (Atom)"},
    "google": {
        "da": (
            "Åbn Google Kalender på en computer, klik på + ud for »Andre kalendere«, vælg "
            "»Fra webadresse«, indsæt adressen nedenfor og klik »Tilføj kalender«. Google sletter "
            "aflyste arrangementer fra abonnerede kalendere; med denne adresse står de i stedet "
            "som »Aflyst«. Google henter ændringer med nogle timers mellemrum."
        ),
        "en": (
            "Open Google Calendar on a computer, click + next to “Other calendars”, choose "
            "“From URL”, paste the address below and click “Add calendar”. Google deletes "
            "cancelled events from subscribed calendars; with this address they stay, marked "
            "“Cancelled”. Google fetches changes only every few hours."
        ),
    },
    "apple": {
        "da": (
            "På iPhone, iPad eller Mac: tryk på »Abonnér« ovenfor og bekræft. Eller vælg i "
            "Kalender på en Mac Arkiv > Nyt kalenderabonnement, indsæt adressen og klik »Abonner«."
        ),
        "en": (
            "On an iPhone, iPad or Mac: tap “Subscribe” above and confirm. Or, in Calendar on a "
            "Mac, choose File > New Calendar Subscription, paste the address and click "
            "“Subscribe”."
        ),
    },
    "outlook": {
        "da": (
            "I Outlook på nettet eller nye Outlook: gå til Kalender, vælg »Tilføj kalender« > "
            "»Abonner fra internettet«, indsæt adressen, giv kalenderen et navn og klik "
            "»Importér«."
        ),
        "en": (
            "In Outlook on the web or the new Outlook: open Calendar, choose “Add calendar” > "
            "“Subscribe from web”, paste the address, name the calendar and click “Import”."
        ),
    },
    "formats": {"da": "Andre formater", "en": "Other formats"},
    "sources": {"da": "Medlemmernes kilder", "en": "Member sources"},
    "copies": {"da": "Hos medlemmerne", "en": "At the members"},
    "history": {"da": "Historik", "en": "History"},
    "no_history": {"da": "Ingen ændringer endnu.", "en": "No changes yet."},
    "fields": {"da": "ændret", "en": "changed"},
    "field_title": {"da": "titel", "en": "title"},
    "field_start": {"da": "start", "en": "start"},
    "field_end": {"da": "slut", "en": "end"},
    "field_all_day": {"da": "heldags", "en": "all day"},
    "field_location": {"da": "sted", "en": "place"},
    "field_status": {"da": "status", "en": "status"},
    "field_description": {"da": "beskrivelse", "en": "description"},
    "field_url": {"da": "link", "en": "link"},
    "no_member": {"da": "intet medlem med det id", "en": "no member with that id"},
    "no_status": {"da": "ingen status med det navn", "en": "no status by that name"},
    "use_one_of": {"da": "brug en af", "en": "use one of"},
}

#: Babel locales for the network's languages: British English writes dates the European way
#: ("Thu 4 Feb 13:00"), which members in Denmark read without a second thought
_LOCALES = {"da": "da_DK", "en": "en_GB"}
FILTER_KEYS = ("source", "category")
#: what a link that keeps the page's selection carries (the page's form offers no status,
#: but /?status=cancelled works as on the feeds, and its subscription follows it)
_LINK_KEYS = ("source", "category", "status")
#: links on the embedded page open in the embedding page's window, not inside the iframe
#: (the event page is a full page) and not in a new tab (which surprises keyboard and screen
#: reader users and needs allow-popups in a sandboxed iframe; _top keeps the back button)
EMBED_TARGET = "_top"

_ENV = Environment(
    loader=PackageLoader("aggregator", "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _style_hash() -> str:
    """The CSP source of base.html's one <style> element: 'sha256-<base64>' of its text, so the
    Content-Security-Policy allows that style and no other inline one (CSP3 section 8.4).
    The element holds no Jinja, so its source is what the browser hashes."""
    source = _ENV.loader.get_source(_ENV, "base.html")[0]  # type: ignore[union-attr]
    (style,) = re.findall(r"<style>(.*?)</style>", source, flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode("ascii")
    return f"'sha256-{digest}'"


#: for the pages' style-src
STYLE_HASH = _style_hash()


def choose_language(
    query_lang: str | None, accept_language: str | None, languages: Sequence[str]
) -> str:
    """The page's language: ?lang= when the network has it, else the best of Accept-Language
    (q values honoured, 'da-DK' matches 'da'), else the network's first language."""
    if not languages:
        return "en"
    by_tag = {lang.lower(): lang for lang in languages}
    if query_lang and query_lang.strip().lower() in by_tag:
        return by_tag[query_lang.strip().lower()]
    ranked: list[tuple[float, int, str]] = []
    refused: set[str] = set()
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.partition(";")
        tag = tag.strip().lower()
        if not tag:
            continue
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if not 0.0 < weight <= 1.0:  # q=0 is "not acceptable" (RFC 9110 section 12.4.2)
            refused.add(tag)
            continue
        ranked.append((-weight, position, tag))
    for _, _, tag in sorted(ranked):
        if tag == "*":
            rest = [lang for lang in languages if lang.lower() not in refused]
            if rest:
                return rest[0]
            continue
        if tag in by_tag:
            return by_tag[tag]
        primary = tag.split("-")[0]
        for lang in languages:
            if lang.lower().split("-")[0] == primary:
                return lang
    return languages[0]


def page_filters(
    query: Iterable[tuple[str, str]] | Mapping[str, Sequence[str]] | None,
) -> dict[str, tuple[str, ...]]:
    """The page's filters from query pairs (aiohttp: `request.query.items()`) or a mapping:
    only 'source' and 'category', each value once, sorted, empty ones ("all") dropped.
    The same filter always gives the same dict, so it can key a cache."""
    pairs: Iterable[tuple[str, str]]
    if query is None:
        pairs = ()
    elif isinstance(query, Mapping):
        pairs = [
            (key, value)
            for key, values in query.items()
            for value in ([values] if isinstance(values, str) else values)
        ]
    else:
        pairs = query
    chosen: dict[str, set[str]] = {key: set() for key in FILTER_KEYS}
    for key, value in pairs:
        if key in chosen and value.strip():
            chosen[key].add(value.strip())
    return {key: tuple(sorted(values)) for key, values in chosen.items()}


def refused_filter(error: UnknownChoice, lang: str) -> str:
    """Why the page's filter was refused, in the page's language: 'source=nope: no member
    with that id; use one of alpha, beta'."""
    reason = _word("no_member" if error.parameter == "source" else "no_status", lang)
    return (
        f"{error.parameter}={','.join(error.values)}: {reason}; "
        f"{_word('use_one_of', lang)}: {', '.join(error.choices)}"
    )


def http_url(url: str | None) -> str | None:
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


def render_index(
    events: Sequence[NetworkEvent],
    settings: Settings,
    *,
    lang: str,
    now: datetime,
    filters: Mapping[str, Sequence[str]] | Selection | None = None,
    embed: bool = False,
) -> str:
    """The page at /: upcoming events (end >= now) by month, filters, subscribe block.

    `filters` is the Selection the feeds use (web.py reads it from the query), or plain
    source and category values. `embed` (?embed=1) leaves out the header, language switch and
    footer, for an iframe; its links open in the embedding window (EMBED_TARGET).
    """
    network = settings.network
    tz = zone(network.timezone) or UTC
    locale = _locale(lang)
    # the same rule as the filtered feeds, so the list and its subscription agree
    if isinstance(filters, Selection):
        selection = filters
        chosen = selection.parameters()
    else:
        chosen = page_filters(filters)
        selection = Selection(
            sources=frozenset(chosen.get("source", ())),
            categories=frozenset(c.casefold() for c in chosen.get("category", ())),
        )
    upcoming = sorted(
        (item.event for item in events if _end(item.event, tz) >= now),
        key=lambda event: (_start(event, tz), event.id),
    )
    shown = [event for event in upcoming if selection.admits(event)]
    months: list[dict[str, Any]] = []
    for event in shown:
        local = _start(event, tz)
        anchor = f"m-{local:%Y-%m}"
        if not months or months[-1]["id"] != anchor:
            heading = format_date(local.date(), "LLLL y", locale=locale)
            months.append({"id": anchor, "heading": heading, "events": []})
        months[-1]["events"].append(_event_view(event, settings, lang, tz, locale, year=False))

    base = network.base_url.rstrip("/")
    feed_query = _query(chosen)
    calendar = f"{base}/calendar.ics{feed_query}"
    filtered = any(chosen.values())
    context = {
        "lang": lang,
        "t": _words(lang),
        "network": network,
        "embed": embed,
        "target": EMBED_TARGET if embed else None,
        "months": months,
        "filtered": filtered,
        "source_options": _options(
            [(s.id, s.name) for s in settings.sources], chosen["source"], casefold=False
        ),
        "category_options": _options(
            [(c, c) for event in upcoming for c in event.categories],
            chosen["category"],
            casefold=True,
        ),
        "multiple_sources": len(chosen["source"]) > 1,
        "multiple_categories": len(chosen["category"]) > 1,
        "clear_href": "/" + _query({}, lang=lang, embed=embed),
        "calendar_url": calendar,
        "webcal_url": _webcal(calendar),
        "google_url": f"{base}/calendar.ics{_query(chosen, cancelled='prefix')}",
        "atom_href": f"/feed.atom{feed_query}",
        "ics_href": f"/calendar.ics{feed_query}",
        "switch": _switch(network.languages, lang, lambda other: "/" + _query(chosen, lang=other)),
    }
    return _ENV.get_template("index.html").render(context)


def render_event(
    item: NetworkEvent,
    settings: Settings,
    history: Sequence[Mapping[str, Any]] = (),
    *,
    lang: str,
) -> str:
    """One event's page (/events/{id}): details, member copies, history (the store's change
    rows for this event, oldest first, as Store.event_history() gives them)."""
    network = settings.network
    tz = zone(network.timezone) or UTC
    locale = _locale(lang)
    event = item.event
    view = _event_view(event, settings, lang, tz, locale, year=True)
    names = {source.id: source.name for source in settings.sources}
    copies = [
        {"source": names.get(source_id, source_id), "title": title, "url": http_url(url)}
        for source_id, title, url in event.copies
    ]
    path = f"/events/{quote(event.id, safe='')}"
    context = {
        "lang": lang,
        "t": _words(lang),
        "network": network,
        "embed": False,
        "target": None,
        "event": view,
        "description": event.description,
        "url": http_url(event.url),
        "categories": ", ".join(event.categories),
        "copies": copies,
        "history": [_change_view(change, event, lang, tz, locale) for change in reversed(history)],
        "home_href": "/" + _query({}, lang=lang),
        "json_href": f"{path}.json",
        "switch": _switch(network.languages, lang, lambda other: path + _query({}, lang=other)),
    }
    return _ENV.get_template("event.html").render(context)


def render_sources(
    settings: Settings, rows: Sequence[Mapping[str, Any]], *, lang: str, now: datetime
) -> str:
    """/sources: each member source's state in words, for the member organisations.

    `rows` are web.py's source reports (as /sources gives them in JSON)."""
    network = settings.network
    tz = zone(network.timezone) or UTC
    locale = _locale(lang)
    context = {
        "lang": lang,
        "t": _words(lang),
        "network": network,
        "embed": False,
        "sources": [_source_view(row, tz, locale, lang) for row in rows],
        "home_href": "/" + _query({}, lang=lang),
        "switch": _switch(
            network.languages, lang, lambda other: "/sources" + _query({}, lang=other)
        ),
    }
    return _ENV.get_template("sources.html").render(context)


def render_source(
    settings: Settings,
    row: Mapping[str, Any],
    *,
    lang: str,
    now: datetime,
    timeline: str,
) -> str:
    """/sources/{id}: one source's state, what was read and skipped (each with a hint to fix
    it), what was merged with whom, its fetches, and `timeline` (an SVG made by
    render.health.timeline_svg from our own numbers, inserted as markup)."""
    from markupsafe import Markup

    network = settings.network
    tz = zone(network.timezone) or UTC
    locale = _locale(lang)
    path = f"/sources/{quote(row['id'], safe='')}"
    context = {
        "lang": lang,
        "t": _words(lang),
        "network": network,
        "embed": False,
        "source": _source_view(row, tz, locale, lang),
        "timeline": Markup(timeline),  # noqa: S704 - ours, its text escaped where it is made
        "home_href": "/" + _query({}, lang=lang),
        "sources_href": "/sources" + _query({}, lang=lang),
        "switch": _switch(network.languages, lang, lambda other: path + _query({}, lang=other)),
    }
    return _ENV.get_template("source.html").render(context)


def render_check(settings: Settings, report: Any = None, *, lang: str, refused: str = "") -> str:
    """/check: the form, and the report of a check (a check.CheckReport) or why it was
    refused."""
    network = settings.network
    tz = zone(network.timezone) or UTC
    locale = _locale(lang)
    found = None
    if report is not None:
        found = {
            "target": report.target,
            "error": report.error,
            "warnings": [{"what": w, "hint": hint(w, lang)} for w in report.warnings],
            "occurrences": [
                {
                    "when": _moment(o.start, tz, locale, lang),
                    "title": o.title,
                    "status": "" if o.status is Status.SCHEDULED else _status_word(o.status, lang),
                    "origin": o.origin,
                }
                for o in report.occurrences
            ],
        }
    context = {
        "lang": lang,
        "t": _words(lang),
        "network": network,
        "embed": False,
        "report": found,
        "refused": refused,
        "home_href": "/" + _query({}, lang=lang),
        "switch": _switch(network.languages, lang, lambda other: "/check" + _query({}, lang=other)),
    }
    return _ENV.get_template("check.html").render(context)


def _status_word(status: Status, lang: str) -> str:
    return _word(status.value, lang, default=status.value)


def _source_view(row: Mapping[str, Any], tz: tzinfo, locale: Locale, lang: str) -> dict:
    def moment(value: str | None) -> str:
        return _moment(from_iso(value), tz, locale, lang) if value else _word("never", lang)

    fetches = [
        {**f, "at": moment(f["at"]), "datetime": f["at"]} for f in row.get("fetches", ())[:50]
    ]
    return {
        **row,
        "href": f"/sources/{quote(row['id'], safe='')}" + _query({}, lang=lang),
        "homepage": http_url(row.get("homepage")),
        "last_success": moment(row.get("last_success_at")),
        "next_fetch": moment(row.get("next_check_at")),
        "fetches": fetches,
    }


@dataclass(frozen=True)
class _EventView:
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


def _event_view(
    event: MergedEvent, settings: Settings, lang: str, tz: tzinfo, locale: Locale, *, year: bool
) -> _EventView:
    marks: list[str] = []
    notes: list[str] = []
    if event.status is Status.CANCELLED:
        marks.append(_word("cancelled", lang))
    elif event.status is Status.POSTPONED:
        marks.append(_word("postponed", lang))
    elif event.status is Status.TENTATIVE:
        marks.append(_word("tentative", lang))
    elif event.status is Status.RESCHEDULED or event.previous_start is not None:
        marks.append(_word("rescheduled", lang))  # "Flyttet" / "Moved"
    if event.removed:
        notes.append(_word("removed", lang))
    if event.previous_start is not None:
        old = _moment(event.previous_start, tz, locale, lang, year=year)
        notes.append(f"{_word('moved_from', lang)} {old}")
    if event.cancelled_by:
        notes.append(f"{_word('cancelled_by', lang)}: {', '.join(event.cancelled_by)}")
    event_path = f"/events/{quote(event.id, safe='')}"
    return _EventView(
        id=event.id,
        href=event_path + _query({}, lang=lang),
        ics_href=f"{event_path}.ics",
        title=event.title,
        struck=event.status in (Status.CANCELLED, Status.POSTPONED),
        marks=tuple(marks),
        when=_span(event, tz, locale, lang, year=year),
        datetime=iso(event.start) or "",
        place=event.location,
        organisers=", ".join(event.organisers),
        notes=tuple(notes),
    )


def _change_view(
    change: ChangeRecord, event: MergedEvent, lang: str, tz: tzinfo, locale: Locale
) -> dict[str, str]:
    """One history row in words: 'Flyttet: fra ... til ...', 'Ændret: sted, titel'."""
    at = change.at
    kind = change.kind.value
    before, after = change.before or {}, change.after or {}
    if change.kind is ChangeKind.REMOVED:
        text = f"{_word('cancelled', lang)} ({_word('removed', lang)})"
    elif change.kind is ChangeKind.MOVED and before.get("start") and after.get("start"):
        old = _moment(from_iso(before["start"]), tz, locale, lang)
        new = _moment(from_iso(after["start"]), tz, locale, lang)
        text = (
            f"{_word('rescheduled', lang)}: {_word('from', lang)} {old} {_word('to', lang)} {new}"
        )
    elif change.kind is ChangeKind.UPDATED and after.get("fields"):
        fields = ", ".join(_word(f"field_{f}", lang, default=f) for f in after["fields"])
        text = f"{_word('updated', lang)}: {fields}"
    else:
        text = _word(kind, lang, default=kind)
    title = change.title or ""
    return {
        "datetime": iso(at) or "",
        "at": _moment(at, tz, locale, lang),
        "text": text,
        # the title it had then, when that differs from today's
        "title": title if title and title != event.title else "",
    }


def _word(key: str, lang: str, default: str | None = None) -> str:
    words = PAGE_WORDS.get(key) or WORDS.get(key)
    if words is None:
        if default is None:
            raise KeyError(key)
        return default
    return words.get(lang) or words["en"]


def _words(lang: str) -> SimpleNamespace:
    # a namespace, not a dict: in Jinja2 `t.clear` on a dict is the dict's method
    return SimpleNamespace(**{key: _word(key, lang) for key in (*WORDS, *PAGE_WORDS)})


def _locale(lang: str) -> Locale:
    try:
        return Locale.parse(_LOCALES.get(lang, lang).replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(_LOCALES["en"])


def _start(event: MergedEvent, tz: tzinfo) -> datetime:
    """The start as a local datetime; an all-day event starts at local midnight."""
    if isinstance(event.start, datetime):
        return event.start.astimezone(tz)
    return datetime.combine(event.start, time(), tz)


def _end(event: MergedEvent, tz: tzinfo) -> datetime:
    """The end as an aware datetime; an all-day event's (exclusive) end date at local midnight."""
    end = event.end
    if isinstance(end, datetime):
        end = end.astimezone(tz)
    else:
        end = datetime.combine(end, time(), tz)
    return max(end, _start(event, tz))


def _day(value: date, locale: Locale, *, year: bool) -> str:
    return format_skeleton("yMMMEd" if year else "MMMEd", value, locale=locale)


def _clock(value: datetime, locale: Locale, lang: str) -> str:
    prefix = _word("at_time", lang)
    text = format_time(value, "short", locale=locale)
    return f"{prefix} {text}" if prefix else text


def _moment(
    value: date | datetime, tz: tzinfo, locale: Locale, lang: str, *, year: bool = True
) -> str:
    """'tors. 28. jan. 2027 kl. 13.00' / 'Thu, 28 Jan 2027 13:00'; a date without a time."""
    if isinstance(value, datetime):
        local = value.astimezone(tz)
        return f"{_day(local.date(), locale, year=year)} {_clock(local, locale, lang)}"
    return _day(value, locale, year=year)


def _span(event: MergedEvent, tz: tzinfo, locale: Locale, lang: str, *, year: bool) -> str:
    """When it is, in the network's zone: an all-day event shows its days and no time."""
    if event.all_day or not isinstance(event.start, datetime):
        first = event.start if not isinstance(event.start, datetime) else event.start.date()
        end = event.end if not isinstance(event.end, datetime) else event.end.date()
        last = end - timedelta(days=1)
        if last <= first:
            return _day(first, locale, year=year)
        return format_interval(first, last, "yMMMEd" if year else "MMMEd", locale=locale)
    start = event.start.astimezone(tz)
    end = event.end.astimezone(tz) if isinstance(event.end, datetime) else start
    day = _day(start.date(), locale, year=year)
    if end <= start:
        return f"{day} {_clock(start, locale, lang)}"
    if end.date() == start.date():
        return f"{day} {_clock(start, locale, lang)}–{format_time(end, 'short', locale=locale)}"
    return (
        f"{day} {_clock(start, locale, lang)} – "
        f"{_day(end.date(), locale, year=year)} {_clock(end, locale, lang)}"
    )


def _options(
    pairs: Iterable[tuple[str, str]], selected: Sequence[str], *, casefold: bool
) -> list[dict[str, Any]]:
    """<option>s: each value once (categories ignoring case), a selected value never lost."""
    fold = str.casefold if casefold else (lambda value: value)
    chosen = {fold(value) for value in selected}
    options: dict[str, tuple[str, str]] = {}
    for value, text in [*pairs, *((value, value) for value in selected)]:
        options.setdefault(fold(value), (value, text))
    values = list(options.values())
    if casefold:
        values.sort(key=lambda pair: pair[1].casefold())
    return [
        {"value": value, "label": text, "selected": fold(value) in chosen} for value, text in values
    ]


def _query(
    filters: Mapping[str, Sequence[str]],
    *,
    lang: str | None = None,
    embed: bool = False,
    cancelled: str | None = None,
) -> str:
    """'?source=a&category=b&lang=en', or '' when there is nothing to say."""
    pairs = [(key, value) for key in _LINK_KEYS for value in filters.get(key, ())]
    if cancelled:
        pairs.append(("cancelled", cancelled))
    if lang:
        pairs.append(("lang", lang))
    if embed:
        pairs.append(("embed", "1"))
    return "?" + urlencode(pairs) if pairs else ""


def _webcal(url: str) -> str:
    """The webcal:// form of an http(s) URL: calendar apps open it as a subscription."""
    scheme, sep, rest = url.partition("://")
    return f"webcal://{rest}" if sep and scheme in ("http", "https") else url


def _switch(languages: Sequence[str], current: str, href) -> list[dict[str, str]]:
    """Links to the page in the network's other languages, each named in its own language."""
    links = []
    for lang in languages:
        if lang == current:
            continue
        name = _locale(lang).get_language_name() or lang
        links.append({"lang": lang, "name": name[:1].upper() + name[1:], "href": href(lang)})
    return links
