"""What a member organisation reads about its feed: each warning with a hint to fix it, the
state of its fetches with one, and a timeline of the last 30 days as an inline SVG. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape

from aggregator.model import FetchRecord, SourceState

#: (what a warning says, the hint in each language); the first match wins
_HINTS: tuple[tuple[re.Pattern, dict[str, str]], ...] = tuple(
    (re.compile(pattern), hint)
    for pattern, hint in (
        (
            r"Windows zone name",
            {
                "en": "Nothing to do: we map it. Calendars that publish IANA zone names "
                "(Europe/Copenhagen) are read the same by every program.",
                "da": "Intet at gøre: vi oversætter den. Kalendere med IANA-zonenavne "
                "(Europe/Copenhagen) læses ens af alle programmer.",
            },
        ),
        (
            r"has no end time",
            {
                "en": "Give the event an end time in your calendar program.",
                "da": "Giv begivenheden et sluttidspunkt i jeres kalenderprogram.",
            },
        ),
        (
            r"has no UID",
            {
                "en": "Your calendar program should give every event a UID; without one, a "
                "changed title looks like a new event.",
                "da": "Jeres kalenderprogram bør give hver begivenhed et UID; uden det ligner "
                "en ændret titel en ny begivenhed.",
            },
        ),
        (
            r"could not be read and was skipped|has no readable start|could not be read \(",
            {
                "en": "This event is broken in the feed: open it in your calendar program, "
                "check its date and time, and save it again.",
                "da": "Begivenheden er i stykker i feedet: åbn den i jeres kalenderprogram, "
                "tjek dato og tid, og gem den igen.",
            },
        ),
        (
            r"is used by \d+ events",
            {
                "en": "Two or more events share one UID; each event needs its own.",
                "da": "Flere begivenheder deler ét UID; hver begivenhed skal have sit eget.",
            },
        ),
        (
            r"occurrences in the horizon",
            {
                "en": "A repeating event has no end: give its rule an end date or a count.",
                "da": "En gentagen begivenhed har ingen slutning: giv reglen en slutdato.",
            },
        ),
        (
            r"floating",
            {
                "en": "Set the calendar's time zone in your calendar program.",
                "da": "Sæt kalenderens tidszone i jeres kalenderprogram.",
            },
        ),
        (
            r"not a time zone we know|time zone definition could not be read",
            {
                "en": "Use a standard time zone name such as Europe/Copenhagen.",
                "da": "Brug et standard-tidszonenavn som Europe/Copenhagen.",
            },
        ),
        (
            r"could not be read as a whole",
            {
                "en": "The file has a syntax error; we read it event by event. Export it "
                "again, or tell us which program makes it.",
                "da": "Filen har en syntaksfejl; vi læser den begivenhed for begivenhed. "
                "Eksportér igen, eller fortæl os hvilket program der laver den.",
            },
        ),
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


def hint(warning: str, lang: str = "en") -> str | None:
    """What to do about a parse warning, or None when we have no advice."""
    for pattern, text in _HINTS:
        if pattern.search(warning):
            return text.get(lang, text["en"])
    return None


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
