"""Small text helpers shared by the renderers: the network-wide labels ('Aflyst / Cancelled')
and dates in the calendar's and the feed's words. Pure.

The words are msgids of the ``pages`` gettext domain, so the pages, the calendar and the
feed say the same thing in each language.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache

from babel.dates import format_date, format_datetime

from aggregator.i18n import LOCALE, N_, gettext_in
from aggregator.model import MergedEvent, Network, Status
from aggregator.normalise import zone
from aggregator.render.dates import moment

#: what the renderers label, by key (a change kind's or status's value, or a word) -> the
#: English words, each a msgid of the pages catalogue
LABELS = {
    "cancelled": N_("Cancelled"),
    "postponed": N_("Postponed"),
    "removed": N_("removed by the organiser"),
    "moved_from": N_("Moved from"),
    "cancelled_by": N_("Cancelled by"),
    "added": N_("New"),
    "updated": N_("Updated"),
    "rescheduled": N_("Moved"),
    "restored": N_("Restored"),
    "from": N_("from"),
    "to": N_("to"),
    "organised_by": N_("Organised by"),
}


@cache
def spoken(languages: tuple[str, ...]) -> tuple[str, ...]:
    """The network's languages we have words for: English (the words as written) and each
    with a pages catalogue, in the network's order. Kept: asked for every label of every
    event a publish renders."""
    return tuple(lang for lang in languages if lang == "en" or _has_catalogue(lang))


def _has_catalogue(lang: str) -> bool:
    return (LOCALE / lang / "LC_MESSAGES" / "pages.po").is_file()


@cache
def label(network: Network, key: str, sep: str = " / ") -> str:
    """'Aflyst / Cancelled': the word in each of the network's languages (English when it
    speaks none we have words for), each once."""
    chosen = [gettext_in(lang, "pages")(LABELS[key]) for lang in spoken(network.languages)]
    return sep.join(dict.fromkeys(chosen or [LABELS[key]]))


def status_prefix(event: MergedEvent, network: Network) -> str:
    """'Aflyst / Cancelled: ' for a cancelled event, 'Udsat / Postponed: ' for a postponed one."""
    if event.status is Status.POSTPONED:
        return label(network, "postponed") + ": "
    if event.status is Status.CANCELLED:
        return label(network, "cancelled") + ": "
    return ""


def short_when(value: date | datetime, network: Network) -> str:
    """'Thu 26 Jan 13:00' in the network's zone; a date without a time.

    English when the network speaks it: its abbreviations read in both languages ("Flyttet
    fra / Moved from Thu 26 Jan"). Else in the first language we have words for, as its page
    writes it without the year ('tors. 26. jan. kl. 13.00')."""
    langs = spoken(network.languages)
    tz = zone(network.timezone)
    if "en" in network.languages or not langs:
        # Babel's plain English, not en_GB's, whose September is 'Sept'
        if isinstance(value, datetime):
            return format_datetime(value.astimezone(tz), "EEE d MMM HH:mm", locale="en")
        return format_date(value, "EEE d MMM", locale="en")
    return moment(value, tz, langs[0], year=False)


def when(event: MergedEvent, network_zone: str) -> str:
    """'2027-02-04 13:00–16:00 (Europe/Copenhagen)' or '2026-12-12 – 2026-12-13' for all-day."""
    if event.all_day:
        last = event.end - timedelta(days=1)
        return event.start.isoformat() if last <= event.start else f"{event.start} – {last}"
    tz = zone(event.tzid or "") or zone(network_zone)
    start: datetime = event.start.astimezone(tz)
    end: datetime = event.end.astimezone(tz)
    if end.date() == start.date():
        span = f"{start:%Y-%m-%d %H:%M}–{end:%H:%M}"
    else:
        span = f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M}"
    return f"{span} ({tz.key})"
