"""HTML (an event page, or an item's content) -> PageData: structured events, text, place.

schema.org Event data comes from JSON-LD and microdata (extruct); text is sanitised with
nh3 and laid out as plain lines (html-text), with CMS noise taken out. lxml and extruct
objects never leave this module.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import extruct
import html_text
import lxml.html
import nh3

from aggregator.model import FoundEvent, PageData, Status
from aggregator.normalise import all_day_end, clean_line, clean_url, zone

MAX_TEXT = 4000

#: the element that holds the content, in the order CMSs use them
_MAIN = (
    "//*[@itemtype and contains(@itemtype, 'schema.org/Event')]",
    "//article",
    "//main",
    "//*[@role='main']",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' item-page ')]",  # Joomla
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' entry-content ')]",  # WordPress
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' node__content ')]",  # Drupal
    "//body",
)
_CHROME = ("nav", "header", "footer", "aside", "script", "style", "noscript", "form", "iframe")
#: CMS noise: removed where it stands, the rest of the line stays
_NOISE = re.compile(
    r"Denne e-mail ?adresse bliver beskyttet mod spambots\.?\s*Du skal have JavaScript "
    r"aktiveret for at vise den\.?"
    r"|This email address is being protected from spambots\.?\s*You need JavaScript "
    r"enabled to view it\.?",
    re.IGNORECASE,
)
#: whole lines that are page furniture, not the event
_NOISE_LINE = re.compile(
    r"^\W*(?:del(?: på)?|share(?: on)?|tweet|print|e-?mail|facebook|twitter|linkedin|"
    r"læs mere|read more|tilbage|back|vi bruger cookies.*|we use cookies.*|"
    r"accepter(?: alle)?(?: cookies)?|accept(?: all)?(?: cookies)?|cookie.*|"
    r"tilmeld dig vores nyhedsbrev|subscribe to our newsletter)\W*$",
    re.IGNORECASE,
)
_STREET = re.compile(
    r"\b[A-ZÆØÅ][\wæøåé.\-]*(?:vej|gade|allé|alle|plads|torv|stræde|vænge|boulevard|"
    r"road|street|square|avenue|lane)\s+\d+[A-Za-z]?\b"
)
_POSTCODE = re.compile(r"\b\d{4}\s+[A-ZÆØÅ][\wæøå.]*")
_ICS_WORDS = re.compile(r"ical|\.ics\b|tilføj til kalender|add to calendar|kalenderfil", re.I)
_STATUS = {
    "eventcancelled": Status.CANCELLED,
    "eventpostponed": Status.POSTPONED,
    "eventrescheduled": Status.RESCHEDULED,
    "eventscheduled": Status.SCHEDULED,
    "eventmovedonline": Status.SCHEDULED,
}


def read_page(html: str, url: str, zone_name: str) -> PageData:
    """What an event page says: its structured events, its main text and an address line."""
    try:
        tree = lxml.html.fromstring(html or "<html></html>")
    except (lxml.etree.ParserError, ValueError):
        return PageData(url=url)
    events = tuple(structured_events(html, url, zone_name))
    ics_links = tuple(_ics_links(tree, url))
    text = _main_text(tree)
    return PageData(url=url, events=events, ics_links=ics_links, text=text, location=address(text))


def html_to_text(html: str) -> str:
    """Plain text of a fragment of HTML (an item's content): sanitised, noise removed."""
    if not html or "<" not in html:
        return _tidy(html or "")
    return _tidy(html_text.extract_text(nh3.clean(html), guess_layout=True))


def structured_events(html: str, url: str, zone_name: str) -> list[FoundEvent]:
    """schema.org Events in JSON-LD or microdata, in the order the page gives them."""
    if "schema.org" not in html and "application/ld+json" not in html:
        return []
    try:
        data = extruct.extract(html, base_url=url, syntaxes=["json-ld", "microdata"], uniform=True)
    except Exception:  # noqa: BLE001 - broken JSON-LD is no event, not a broken feed
        return []
    found = []
    for syntax, how in (("json-ld", "JSON-LD"), ("microdata", "microdata")):
        for item in _flatten(data.get(syntax, [])):
            event = event_from_schema(item, zone_name, how)
            if event is not None:
                found.append(event)
    return found


def event_from_schema(item: dict, zone_name: str, how: str) -> FoundEvent | None:
    """A schema.org Event as a FoundEvent; None when it has no readable startDate."""
    types = item.get("@type", "")
    types = types if isinstance(types, list) else [types]
    if not any(isinstance(t, str) and t.endswith("Event") for t in types):
        return None
    start = _when(_first(item.get("startDate")), zone_name)
    if start is None:
        return None
    end = _when(_first(item.get("endDate")), zone_name)
    if _whole_days(start, end):
        # The Events Calendar writes an all-day event as 00:00:00 to 23:59:59
        start, end = start.date(), end.date()
    all_day = not isinstance(start, datetime)
    if all_day:
        # schema.org's endDate of an all-day event is its last day; DTEND is the day after
        last = end.date() if isinstance(end, datetime) else end
        end = all_day_end(start, last + timedelta(days=1) if last else None)
    elif not isinstance(end, datetime) or end < start:
        end = start
    status_word = str(_first(item.get("eventStatus")) or "").rsplit("/", 1)[-1].lower()
    status = _STATUS.get(status_word)
    location = _place(_first(item.get("location")))
    if status_word == "eventmovedonline":
        location = "Online"
    return FoundEvent(
        start=start,
        end=end,
        all_day=all_day,
        found_by="page",
        how=how,
        status=status,
        location=location,
    )


def _whole_days(start, end) -> bool:
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return False
    return (start.hour, start.minute) == (0, 0) and (end.hour, end.minute) == (23, 59)


def address(text: str) -> str | None:
    """The first line that reads like a street address ("Fælledvej 12, 2200 Kbh N")."""
    for line in text.splitlines():
        line = line.strip(" -•·|")
        if 6 <= len(line) <= 120 and _STREET.search(line) and not line.endswith("?"):
            return line
    for line in text.splitlines():
        line = line.strip(" -•·|")
        if 6 <= len(line) <= 80 and _POSTCODE.search(line) and "," in line:
            return line
    return None


def _flatten(items) -> list[dict]:
    out = []
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, dict):
            if "@graph" in item:
                out.extend(_flatten(item["@graph"]))
            else:
                out.append(item)
    return out


def _first(value):
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _when(value, zone_name: str) -> datetime | date | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(zone_name))
    return parsed


def _place(value) -> str | None:
    if isinstance(value, str):
        return clean_line(value) or None
    if not isinstance(value, dict):
        return None
    kind = value.get("@type", "")
    if "Virtual" in str(kind):
        return "Online"
    name = clean_line(_first(value.get("name")))
    where = _first(value.get("address"))
    if isinstance(where, dict):
        street = clean_line(where.get("streetAddress"))
        city = " ".join(
            clean_line(where.get(k)) for k in ("postalCode", "addressLocality") if where.get(k)
        )
        where = ", ".join(p for p in (street, city) if p)
    else:
        where = clean_line(where)
    parts = [p for p in (name, where) if p]
    if len(parts) == 2 and parts[1].startswith(parts[0]):
        parts = parts[1:]
    return ", ".join(parts) or None


def _ics_links(tree, url: str) -> list[str]:
    """Links to .ics files, cleaned (http(s) only, no control characters): they are fetched.

    webcal:// is the same file over https (the scheme only asks a browser to subscribe).
    """
    links = []
    for anchor in tree.iter("a"):
        href = "".join(part.strip() for part in (anchor.get("href") or "").splitlines())
        href = "".join(ch for ch in href if ch.isprintable()).strip()
        if not href or not _ICS_WORDS.search(f"{href} {anchor.text_content()}"):
            continue
        if href[:7].lower() == "webcal:":
            href = "https:" + href[7:]
        target = clean_url(href, base=url)
        if target is not None and target not in links:
            links.append(target)
    return links


def _main_text(tree) -> str:
    for element in list(tree.iter(*_CHROME)):
        if element.getparent() is not None:
            element.drop_tree()
    for query in _MAIN:
        found = tree.xpath(query)
        if found:
            fragment = lxml.html.tostring(found[0], encoding="unicode")
            return _tidy(html_text.extract_text(nh3.clean(fragment), guess_layout=True))
    return ""


def _tidy(text: str) -> str:
    lines = []
    for line in _NOISE.sub("", text).splitlines():
        line = clean_line(line)
        if _NOISE_LINE.match(line):
            continue
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()[:MAX_TEXT]


def event_from_ics(text: str, url: str, zone_name: str, now: datetime) -> FoundEvent | None:
    """The first event of a linked .ics file ("Download som iCal-fil")."""
    from aggregator.errors import ParseError
    from aggregator.model import Limits
    from aggregator.parse.ical import parse_calendar

    # one event page, one event: any year will do, the feed's horizon applies later
    limits = Limits(past_days=3650, future_days=3650, max_occurrences=50)

    try:
        parsed = parse_calendar(
            text,
            url=url,
            source_id="page",
            floating_zone=zone_name,
            network_zone=zone_name,
            now=now,
            limits=limits,
        )
    except ParseError:
        return None
    if not parsed.occurrences:
        return None
    first = min(parsed.occurrences, key=lambda o: str(o.start))
    return FoundEvent(
        start=first.start,
        end=first.end,
        all_day=first.all_day,
        found_by="page",
        how="linked .ics",
        status=first.status if first.status is not Status.SCHEDULED else None,
        location=first.location or None,
    )
