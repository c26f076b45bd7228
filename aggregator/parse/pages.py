"""HTML (an event page, or an item's content) -> PageData: structured events, text, place.

schema.org Event data comes from JSON-LD and microdata (extruct); text is sanitised with
nh3 and laid out as plain lines (html-text), with CMS noise taken out. lxml and extruct
objects never leave this module.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import html_text
import lxml.html
import nh3

from aggregator.errors import ParseError
from aggregator.model import FoundEvent, Limits, PageData, Status
from aggregator.normalise import all_day_end, clean_line, clean_url, zone
from aggregator.parse.ical import parse_calendar

MAX_TEXT = 4000
#: events kept per page (the first is the one used) and .ics links (the first is fetched)
MAX_EVENTS = 20
MAX_ICS_LINKS = 10
#: extruct's microdata reader takes about a microsecond per unit of _microdata_work; more than
#: this (items nested hundreds deep: 20 KB of HTML took 20 s) and only JSON-LD is read
MAX_MICRODATA_WORK = 500_000

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
#: what lxml refuses in a text node (C0 controls but tab and line ends, U+FFFE, U+FFFF, lone
#: surrogates): a page with one would fail halfway through, so they are taken out first
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
#: a date before the first of these years or after the last is no event (0001-01-01T00:00+14:00
#: in UTC, or the day after 9999-12-31, cannot even be computed)
_FIRST_YEAR, _LAST_YEAR = 1000, 9000
#: lxml refuses a str that declares its encoding (an XHTML page): the declaration goes
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*>", re.IGNORECASE)
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
    html = _lxml_ready(html)
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
    return _tidy(html_text.extract_text(nh3.clean(_lxml_ready(html)), guess_layout=True))


def _lxml_ready(html: str | None) -> str:
    """HTML as lxml reads it whole: without the characters it refuses halfway through, and
    without an XML declaration (an XHTML page read nothing at all)."""
    return _XML_DECLARATION.sub("", _NOT_XML.sub("", html or ""), count=1)


def structured_events(html: str, url: str, zone_name: str) -> list[FoundEvent]:
    """schema.org Events in JSON-LD or microdata, in the order the page gives them (at most
    MAX_EVENTS). Each syntax is read on its own: broken JSON-LD leaves the microdata."""
    if "schema.org" not in html and "application/ld+json" not in html:
        return []
    import extruct  # noqa: PLC0415  (0.13 s to load: only where a page has them)

    html = _lxml_ready(html)
    found: list[FoundEvent] = []
    for syntax, how in (("json-ld", "JSON-LD"), ("microdata", "microdata")):
        if syntax == "microdata" and not _microdata_affordable(html):
            continue
        try:
            data = extruct.extract(html, base_url=url, syntaxes=[syntax], uniform=True)
        except Exception:  # noqa: BLE001 - broken JSON-LD is no event, not a broken feed
            continue
        for item in _flatten(data.get(syntax, [])):
            event = event_from_schema(item, zone_name, how)
            if event is not None:
                found.append(event)
                if len(found) >= MAX_EVENTS:
                    return found
    return found


def _microdata_affordable(html: str) -> bool:
    """Whether extruct can read the page's microdata in reasonable time (see _microdata_work)."""
    if "itemscope" not in html.lower():
        return True
    try:
        tree = lxml.html.fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        return False
    return _microdata_work(tree) <= MAX_MICRODATA_WORK


def _microdata_work(tree) -> int:
    """About how many microseconds extruct's microdata reader takes, in one pass without
    recursion. Per item, its XPath walks its own subtree and that of every item inside it (an
    element inside d nested items is walked d(d+1)/2 times), then takes a set difference of
    its properties and those of the items inside it, pair by pair (about 40 ns a pair)."""
    walks = pairs = depth = 0
    opened: list[bool] = []
    #: per open item: [properties in it, properties in the items inside it]
    items: list[list[int]] = [[0, 0]]
    for event, element in lxml.etree.iterwalk(tree, events=("start", "end")):
        is_item = isinstance(element.tag, str) and element.get("itemscope") is not None
        if event == "start":
            if isinstance(element.tag, str) and element.get("itemprop") is not None:
                items[-1][0] += 1
            if is_item:
                items.append([0, 0])
            opened.append(is_item)
            depth += is_item
            walks += depth * (depth + 1) // 2
        elif opened.pop():
            depth -= 1
            inside, nested = items.pop()
            pairs += inside * nested
            items[-1][0] += inside
            items[-1][1] += inside
    return walks + pairs // 25


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
    """The objects of JSON-LD in order, each @graph unpacked; without recursion, so a graph
    nested a thousand deep is no RecursionError."""
    out = []
    pending = [iter(items if isinstance(items, list) else [items])]
    while pending:
        item = next(pending[-1], _END)
        if item is _END:
            pending.pop()
        elif isinstance(item, dict) and "@graph" in item:
            graph = item["@graph"]
            pending.append(iter(graph if isinstance(graph, list) else [graph]))
        elif isinstance(item, dict):
            out.append(item)
    return out


_END = object()


def _first(value):
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _when(value, zone_name: str) -> datetime | date | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        if not _FIRST_YEAR <= parsed.year <= _LAST_YEAR:
            return None
        if not isinstance(parsed, datetime):
            return parsed
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
    links: dict[str, None] = {}
    for anchor in tree.iter("a"):
        href = "".join(part.strip() for part in (anchor.get("href") or "").splitlines())
        href = "".join(ch for ch in href if ch.isprintable()).strip()
        if not href or not _ICS_WORDS.search(f"{href} {anchor.text_content()}"):
            continue
        if href[:7].lower() == "webcal:":
            href = "https:" + href[7:]
        target = clean_url(href, base=url)
        if target is not None:
            links.setdefault(target, None)
            if len(links) >= MAX_ICS_LINKS:
                break
    return list(links)


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
