"""Small text helpers shared by the renderers."""

from __future__ import annotations

from datetime import datetime, timedelta

from aggregator.model import MergedEvent, Network, Status
from aggregator.normalise import zone

#: words in the network's languages; one place, so every output says the same
WORDS = {
    "cancelled": {"da": "Aflyst", "en": "Cancelled"},
    "postponed": {"da": "Udsat", "en": "Postponed"},
    "removed": {"da": "fjernet af arrangøren", "en": "removed by the organiser"},
    "moved_from": {"da": "Flyttet fra", "en": "Moved from"},
    "cancelled_by": {"da": "Aflyst hos", "en": "Cancelled by"},
    "added": {"da": "Ny", "en": "New"},
    "updated": {"da": "Ændret", "en": "Updated"},
    "rescheduled": {"da": "Flyttet", "en": "Moved"},
    "restored": {"da": "Genoptaget", "en": "Restored"},
    "from": {"da": "fra", "en": "from"},
    "to": {"da": "til", "en": "to"},
}
_WEEKDAYS = {
    "da": ("man", "tir", "ons", "tor", "fre", "lør", "søn"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
_MONTHS = {
    "da": ("jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec"),
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
}


def label(network: Network, key: str, sep: str = " / ") -> str:
    """'Aflyst / Cancelled': the word in each of the network's languages."""
    words = WORDS[key]
    chosen = [words[lang] for lang in network.languages if lang in words] or [words["en"]]
    return sep.join(dict.fromkeys(chosen))


def status_prefix(event: MergedEvent, network: Network) -> str:
    """'Aflyst / Cancelled: ' for a cancelled event, 'Udsat / Postponed: ' for a postponed one."""
    if event.status is Status.POSTPONED:
        return label(network, "postponed") + ": "
    if event.status is Status.CANCELLED:
        return label(network, "cancelled") + ": "
    return ""


def short_when(value, network: Network) -> str:
    """'Thu 26 Jan 13:00' in the network's zone (and first language's words)."""
    # English abbreviations read in both languages ("Flyttet fra / Moved from Thu 26 Jan")
    lang = (
        "en"
        if "en" in network.languages
        else next((lang for lang in network.languages if lang in _WEEKDAYS), "en")
    )
    if isinstance(value, datetime):
        local = value.astimezone(zone(network.timezone))
        return (
            f"{_WEEKDAYS[lang][local.weekday()]} {local.day} {_MONTHS[lang][local.month - 1]} "
            f"{local:%H:%M}"
        )
    return f"{_WEEKDAYS[lang][value.weekday()]} {value.day} {_MONTHS[lang][value.month - 1]}"


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
