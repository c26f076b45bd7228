"""Dates and times in words, through Babel (CLDR): the pages' and the feeds' ('tors. 14. jan.
kl. 13.00', 'Thu 14 Jan 13:00', 'januar 2027'). Pure: no clock read.

The one word that is ours, not CLDR's, is the Danish 'kl.' before a time of day: it comes
from the pages catalogue (msgctxt "time of day").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_interval, format_skeleton, format_time

from aggregator.i18n import translations
from aggregator.model import MergedEvent
from aggregator.normalise import instant

#: Babel locales for the network's languages: British English writes dates the European way
#: ("Thu 4 Feb 13:00"), which members in Denmark read without a second thought
LOCALES = {"da": "da_DK", "en": "en_GB"}


@cache
def locale_of(lang: str) -> Locale:
    """The Babel locale a page in `lang` writes its dates in (British English if unknown)."""
    try:
        return Locale.parse(LOCALES.get(lang, lang).replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(LOCALES["en"])


def language_name(lang: str) -> str:
    """'Dansk', 'English': the language named in itself, for a language switch."""
    name = locale_of(lang).get_language_name() or lang
    return name[:1].upper() + name[1:]


def month_heading(value: date, lang: str) -> str:
    """'januar 2027' / 'January 2027'."""
    return format_date(value, "LLLL y", locale=locale_of(lang))


def day(value: date, lang: str, *, year: bool) -> str:
    """'tors. 14. jan. 2027' / 'Thu 14 Jan 2027'; without the year when it goes without saying."""
    return format_skeleton("yMMMEd" if year else "MMMEd", value, locale=locale_of(lang))


def clock(value: datetime, lang: str) -> str:
    """'kl. 13.00' / '13:00': a time of day as a sentence in `lang` writes it."""
    text = format_time(value, "short", locale=locale_of(lang))
    pgettext = translations(lang, "pages").pgettext
    # Translators: a time of day ('13:00') as a sentence writes it; Danish: 'kl. {time}'
    return pgettext("time of day", "{time}").format(time=text)


def moment(value: date | datetime, tz: tzinfo, lang: str, *, year: bool = True) -> str:
    """'tors. 28. jan. 2027 kl. 13.00' / 'Thu 28 Jan 2027 13:00'; a date without a time."""
    if isinstance(value, datetime):
        local = value.astimezone(tz)
        return f"{day(local.date(), lang, year=year)} {clock(local, lang)}"
    return day(value, lang, year=year)


def span(event: MergedEvent, tz: tzinfo, lang: str, *, year: bool) -> str:
    """When it is, in the network's zone: an all-day event shows its days and no time."""
    locale = locale_of(lang)
    if event.all_day or not isinstance(event.start, datetime):
        first = event.start if not isinstance(event.start, datetime) else event.start.date()
        end = event.end if not isinstance(event.end, datetime) else event.end.date()
        last = end - timedelta(days=1)
        if last <= first:
            return day(first, lang, year=year)
        return format_interval(first, last, "yMMMEd" if year else "MMMEd", locale=locale)
    start = event.start.astimezone(tz)
    end = event.end.astimezone(tz) if isinstance(event.end, datetime) else start
    first_day = day(start.date(), lang, year=year)
    if end <= start:
        return f"{first_day} {clock(start, lang)}"
    if end.date() == start.date():
        return f"{first_day} {clock(start, lang)}–{format_time(end, 'short', locale=locale)}"
    last_day = day(end.date(), lang, year=year)
    return f"{first_day} {clock(start, lang)} – {last_day} {clock(end, lang)}"


def local_start(event: MergedEvent, tz: tzinfo = UTC) -> datetime:
    """The start in `tz`; an all-day event starts at local midnight (normalise.instant)."""
    return instant(event.start, tz).astimezone(tz)


def local_end(event: MergedEvent, tz: tzinfo = UTC) -> datetime:
    """The end in `tz`, never before the start; an all-day event's (exclusive) end date at
    local midnight: the page's "upcoming" ends where the network's day does."""
    return max(instant(event.end, tz).astimezone(tz), local_start(event, tz))
