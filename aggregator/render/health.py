"""What a member organisation reads about its feed: each problem with a hint to fix it (by
its code), the state of its fetches with one, and a timeline of the last 30 days as an
inline SVG. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape

from aggregator.model import FetchRecord, Problem, SourceState

#: what to do, in each language, by what is wrong
_WINDOWS_ZONE = {
    "en": "Nothing to do: we map it. Calendars that publish IANA zone names "
    "(Europe/Copenhagen) are read the same by every program.",
    "da": "Intet at gøre: vi oversætter den. Kalendere med IANA-zonenavne "
    "(Europe/Copenhagen) læses ens af alle programmer.",
}
_NO_END = {
    "en": "Give the event an end time in your calendar program.",
    "da": "Giv begivenheden et sluttidspunkt i jeres kalenderprogram.",
}
_NO_UID = {
    "en": "Your calendar program should give every event a UID; without one, a "
    "changed title looks like a new event.",
    "da": "Jeres kalenderprogram bør give hver begivenhed et UID; uden det ligner "
    "en ændret titel en ny begivenhed.",
}
_BROKEN_EVENT = {
    "en": "This event is broken in the feed: open it in your calendar program, "
    "check its date and time, and save it again.",
    "da": "Begivenheden er i stykker i feedet: åbn den i jeres kalenderprogram, "
    "tjek dato og tid, og gem den igen.",
}
_SHARED_UID = {
    "en": "Two or more events share one UID; each event needs its own.",
    "da": "Flere begivenheder deler ét UID; hver begivenhed skal have sit eget.",
}
_ENDLESS_RULE = {
    "en": "A repeating event has no end: give its rule an end date or a count.",
    "da": "En gentagen begivenhed har ingen slutning: giv reglen en slutdato.",
}
_FLOATING = {
    "en": "Set the calendar's time zone in your calendar program.",
    "da": "Sæt kalenderens tidszone i jeres kalenderprogram.",
}
_ZONE_NAME = {
    "en": "Use a standard time zone name such as Europe/Copenhagen.",
    "da": "Brug et standard-tidszonenavn som Europe/Copenhagen.",
}
_SYNTAX = {
    "en": "The file has a syntax error; we read it event by event. Export it "
    "again, or tell us which program makes it.",
    "da": "Filen har en syntaksfejl; vi læser den begivenhed for begivenhed. "
    "Eksportér igen, eller fortæl os hvilket program der laver den.",
}
_NO_NAME = {
    "en": "The feed's host name is not known on the internet: check the address for a "
    "typing error, or ask whoever runs the website.",
    "da": "Feedets værtsnavn findes ikke på internettet: tjek adressen for en tastefejl, "
    "eller spørg dem, der driver hjemmesiden.",
}
_REFUSED = {
    "en": "The server does not take connections on that address and port: check the "
    "address, or ask whoever runs the website whether the server is up.",
    "da": "Serveren tager ikke imod forbindelser på den adresse og port: tjek adressen, "
    "eller spørg dem, der driver hjemmesiden, om serveren kører.",
}
_SLOW = {
    "en": "The server answers too slowly. If it happens again, ask whoever runs the "
    "website to look at it.",
    "da": "Serveren svarer for langsomt. Sker det igen, så bed dem, der driver "
    "hjemmesiden, om at se på det.",
}
_TOO_BIG = {
    "en": "The feed is too large: publish only the coming months, or split it in two.",
    "da": "Feedet er for stort: udgiv kun de kommende måneder, eller del det i to.",
}
_WRONG_ADDRESS = {
    "en": "The server does not give the feed at this address: open it in a browser, and "
    "send us the right one.",
    "da": "Serveren giver ikke feedet på denne adresse: åbn den i en browser, og send os "
    "den rigtige.",
}

#: problem code -> what to do about it; the same hints as the words always gave (a page
#: whose linked page could not be read, a time zone that could not be read and a calendar
#: that could not be read get the broken-event hint, as they always did)
HINTS: dict[str, dict[str, str]] = {
    "windows-zone": _WINDOWS_ZONE,
    "no-end": _NO_END,
    "no-uid": _NO_UID,
    "unreadable-event": _BROKEN_EVENT,
    "unreadable-untitled-event": _BROKEN_EVENT,
    "unreadable-series": _BROKEN_EVENT,
    "unreadable-property": _BROKEN_EVENT,
    "unreadable-line": _BROKEN_EVENT,
    "unreadable-calendar-properties": _BROKEN_EVENT,
    "unreadable-timezone": _BROKEN_EVENT,
    "unreadable-calendar": _BROKEN_EVENT,
    "unreadable-feed": _BROKEN_EVENT,
    "page-unreadable": _BROKEN_EVENT,
    "no-start": _BROKEN_EVENT,
    "shared-uid": _SHARED_UID,
    "shared-uid-copies": _SHARED_UID,
    "too-many-occurrences": _ENDLESS_RULE,
    "floating-time": _FLOATING,
    "unknown-xwr-timezone": _ZONE_NAME,
    "read-event-by-event": _SYNTAX,
    # fetch failures (a source's last error)
    "dns-failed": _NO_NAME,
    "connect-refused": _REFUSED,
    "timeout": _SLOW,
    "too-big": _TOO_BIG,
    "too-big-decompressed": _TOO_BIG,
    "file-too-big": _TOO_BIG,
    "http-check-address": _WRONG_ADDRESS,
}

#: for words stored without a code (older versions): what they say -> the hint; first match
_HINTS_BY_WORDS: tuple[tuple[re.Pattern, dict[str, str]], ...] = tuple(
    (re.compile(pattern), hint)
    for pattern, hint in (
        (r"Windows zone name", _WINDOWS_ZONE),
        (r"has no end time", _NO_END),
        (r"has no UID", _NO_UID),
        (
            r"could not be read and was skipped|has no readable start|could not be read \(",
            _BROKEN_EVENT,
        ),
        (r"is used by \d+ events", _SHARED_UID),
        (r"occurrences in the horizon", _ENDLESS_RULE),
        (r"floating", _FLOATING),
        (r"not a time zone we know|time zone definition could not be read", _ZONE_NAME),
        (r"could not be read as a whole", _SYNTAX),
    )
)

#: hints for a source's state
_STATE_HINTS = {
    "failing": {
        "en": "Open the feed's address in a browser: if it does not load there either, the "
        "server or the address has changed. Your last good events stay in the calendar.",
        "da": "Åbn feedets adresse i en browser: virker den heller ikke der, er serveren "
        "eller adressen ændret. Jeres sidste gode begivenheder bliver i kalenderen.",
    },
    "gone": {
        "en": "Your server says the feed is gone (HTTP 410): send us its new address.",
        "da": "Jeres server siger, at feedet er væk (HTTP 410): send os den nye adresse.",
    },
    "drop held": {
        "en": "Your feed suddenly lists far fewer events; we keep the old ones until the "
        "next fetch shows the same. If you removed them on purpose, nothing to do.",
        "da": "Jeres feed viser pludselig langt færre begivenheder; vi beholder de gamle, "
        "til næste hentning viser det samme. Fjernede I dem med vilje, er der intet at gøre.",
    },
    "unstable": {
        "en": "Your feed gives the events new UIDs every time it is exported, so other "
        "calendars see them as new. Publish the calendar with a subscription link instead "
        "of exporting a file.",
        "da": "Jeres feed giver begivenhederne nye UID'er ved hver eksport, så andre "
        "kalendere ser dem som nye. Del kalenderen med et abonnementslink i stedet for at "
        "eksportere en fil.",
    },
}


def hint(warning: Problem | str, lang: str = "en") -> str | None:
    """What to do about a problem, by its code, or None when we have no advice.

    Words without a code (a "text" problem, or a str: what older versions stored) are
    matched by what they say.
    """
    if isinstance(warning, Problem) and warning.code != "text":
        text = HINTS.get(warning.code)
    else:
        words = str(warning)
        text = next((t for pattern, t in _HINTS_BY_WORDS if pattern.search(words)), None)
    return None if text is None else text.get(lang, text["en"])


def state_hints(state: SourceState | None, lang: str = "en") -> list[tuple[str, str]]:
    """The source's problems in words, each with what to do."""
    if state is None:
        return []
    found = []
    if state.health in _STATE_HINTS:
        found.append((state.describe(), _STATE_HINTS[state.health]))
    if state.unstable_uids:
        found.append(("UIDs change on every fetch", _STATE_HINTS["unstable"]))
    return [(what, text.get(lang, text["en"])) for what, text in found]


#: colours of fetch outcomes, with a word each (the picture has a legend: not colour alone)
OUTCOME_COLOURS = {
    "updated": "#1a7f37",
    "unchanged": "#57606a",
    "not modified": "#57606a",
    "held": "#9a6700",
    "failed": "#cf222e",
}


def timeline_svg(
    fetches: Sequence[FetchRecord],
    now: datetime,
    days: int = 30,
    width: int = 600,
    height: int = 120,
) -> str:
    """Fetch outcomes (a tick each, coloured and titled by outcome) and the source's
    occurrences after each fetch (a line), over the last `days` days."""
    start = now - timedelta(days=days)
    shown = sorted((f for f in fetches if start <= f.at <= now), key=lambda f: f.at)
    top, line_height = 10, height - 40

    def x(at: datetime) -> float:
        return round(40 + (width - 50) * (at - start) / (now - start), 1)

    counts = [f for f in shown if f.occurrences is not None]
    most = max((f.occurrences for f in counts), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="timeline-title">',
        f'<title id="timeline-title">Fetches and events, last {days} days</title>',
        f'<line x1="40" y1="{top + line_height}" x2="{width - 10}" y2="{top + line_height}" '
        'stroke="#8c959f"/>',
        f'<text x="2" y="{top + 8}" font-size="10" fill="#24292f">{most}</text>',
        f'<text x="2" y="{top + line_height}" font-size="10" fill="#24292f">0</text>',
    ]
    if counts:
        points = " ".join(
            f"{x(f.at)},{round(top + line_height * (1 - f.occurrences / most), 1)}" for f in counts
        )
        parts.append(f'<polyline points="{points}" fill="none" stroke="#0969da" stroke-width="2"/>')
    for f in shown:
        colour = OUTCOME_COLOURS.get(f.outcome, "#57606a")
        label = f"{f.at:%Y-%m-%d %H:%M} UTC: {f.outcome.value}"
        if f.message:
            label += f" - {f.message}"
        parts.append(
            f'<rect x="{x(f.at) - 1}" y="{height - 24}" width="3" height="12" '
            f'fill="{colour}"><title>{escape(label)}</title></rect>'
        )
    parts.append(
        f'<text x="40" y="{height - 2}" font-size="10" fill="#24292f">'
        f"{start:%Y-%m-%d}</text>"
        f'<text x="{width - 10}" y="{height - 2}" font-size="10" fill="#24292f" '
        f'text-anchor="end">{now:%Y-%m-%d}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
