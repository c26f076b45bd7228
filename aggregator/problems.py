"""What a member reads about its feed, as data: a stable code, the words, the detail.

Every problem's words come from one template per code (its msgid in the ``problems``
gettext domain), filled from the detail; so a page says it in its own language, and a hint
is found by the code, however the words are phrased. Pure.

The catalogue is ``locale/<lang>/LC_MESSAGES/problems.po``; its msgids are extracted with
``pybabel extract -F babel-problems.cfg -k N_ -o problems.pot .`` (tests/test_problems.py
fails when a template changes and the catalogue does not).
"""

from __future__ import annotations

import re

from aggregator.i18n import N_, gettext_in
from aggregator.model import Problem

__all__ = ["PHRASES", "TEMPLATES", "Problem", "as_problem", "more_count", "problem", "say"]

#: code -> the English words with {placeholders}; a code is never reused or renamed.
#: A number in the detail is written as the English words write it ("1,000", "2.5").
TEMPLATES: dict[str, str] = {
    "text": N_("{words}"),
    "more-warnings": N_("... and {count} more warnings"),
    # -- reading an iCalendar file (parse/ical.py) -------------------------------------------
    "duplicate-occurrence": N_(
        "event '{title}' (UID {uid}) appears more than once; kept the first"
    ),
    "too-many-occurrences": N_(
        "more than {limit} occurrences in the horizon; read only the first {limit} "
        "(check the RRULEs)"
    ),
    "no-events": N_(
        "the calendar has no events in the next {future_days} days or the last {past_days} days"
    ),
    "read-event-by-event": N_(
        "the calendar could not be read as a whole ({error}); read it event by event"
    ),
    "unreadable-calendar-properties": N_(
        "the calendar's own properties could not be read ({error})"
    ),
    "unreadable-timezone": N_("a time zone definition could not be read and was skipped ({error})"),
    "unreadable-event": N_("event '{title}' could not be read and was skipped ({error})"),
    "unreadable-untitled-event": N_(
        "event without a title could not be read and was skipped ({error})"
    ),
    "windows-zone": N_("uses the Windows zone name '{name}'; we read it as {zone}"),
    "unknown-xwr-timezone": N_("X-WR-TIMEZONE '{name}' is not a time zone we know; ignored"),
    "xwr-timezone-failed": N_("X-WR-TIMEZONE could not be applied ({error})"),
    "unreadable-rule": N_("event '{title}' (UID {uid}) has a rule or date we cannot read; skipped"),
    "unreadable-series": N_("event '{title}' (UID {uid}) could not be read ({error}); skipped"),
    "shared-uid": N_("UID {uid} is used by {count} events; each is kept as its own event"),
    "shared-uid-copies": N_("UID {uid} is used by {count} events; kept one copy"),
    "unreadable-property": N_("event '{title}': the {name} line could not be read ({error})"),
    "unreadable-line": N_("event '{title}': a line could not be read ({error})"),
    "no-start": N_("event '{title}' has no readable start (DTSTART); skipped"),
    "series-too-slow": N_(
        "the series with UID {uid} took more than {seconds} s to expand and was skipped "
        "(check its RRULE: a rule that never or too often repeats)"
    ),
    "series-partly-read": N_(
        "the series with UID {uid} could not be fully read ({error}); kept what was read"
    ),
    "too-many-repetitions": N_(
        "the series with UID {uid}: more than {limit} repetitions to reach or fill the "
        "horizon (RRULE:{rule}); read only the first ones"
    ),
    "no-end": N_("event '{title}' has no end time; shown as ending when it starts"),
    "no-uid": N_("event '{title}' has no UID; identified by its title and start"),
    "floating-time": N_("times without a time zone (floating) are read as {zone}"),
    "custom-timezone": N_("uses its own time zone '{name}'; times are kept as exact instants"),
    # -- an iCalendar file that cannot be read at all (ParseError) ---------------------------
    "cut-short": N_("the calendar ends before END:VCALENDAR (cut short?)"),
    "empty-feed": N_("the feed is empty"),
    "html-not-calendar": N_("got an HTML page, not a calendar; check the feed's address"),
    "not-a-calendar": N_("not an iCalendar file (it starts with {start})"),
    "unreadable-calendar": N_("the calendar could not be read ({error})"),
    # -- reading RSS and Atom (parse/feeds.py) -----------------------------------------------
    "unreadable-feed": N_("the feed could not be read ({error})"),
    "not-a-feed": N_("not an RSS or Atom feed ({error})"),
    "no-feed-elements": N_("not an RSS or Atom feed (no feed elements)"),
    "malformed-xml": N_("the feed is not well-formed XML ({error}); read what we could"),
    "no-items": N_("the feed has no items"),
    "duplicate-item": N_("the item '{title}' appears twice (id {id}); kept the first"),
    "bad-link": N_("the item '{title}' links to '{link}', not a web page; link left out"),
    "no-guid": N_("the item '{title}' has no guid and no link; identified by its title"),
    "no-date": N_("no date in '{title}'; not an event"),
    "year-guessed": N_(
        "'{title}': the date '{how}' has no year; read as {date}, the first such day after "
        "publication"
    ),
    "outside-horizon": N_(
        "'{title}' is on {date} ({origin}), outside the {past_days} days back and "
        "{future_days} ahead we show"
    ),
    "too-many-events": N_("more than {limit} events; read the first"),
    # -- bytes to text (parse/__init__.py) ---------------------------------------------------
    "wrong-charset": N_(
        "the server says the feed is {charset}, but it is not; read it another way"
    ),
    "not-utf8": N_("the feed is not UTF-8; read it as Windows-1252 (send UTF-8 to be sure)"),
    # -- a feed's linked pages (the RSS reading) ---------------------------------------------
    "page-waits": N_("'{title}': its page waits for the next cycle (page limit)"),
    "page-not-read": N_("'{title}': its page was not read ({reason})"),
    "page-unreadable": N_("'{title}': its page could not be read ({reason})"),
    # -- against what was stored ---------------------------------------------------------------
    "drop-empty": N_(
        "the feed read fine but has no events, where it had {upcoming} upcoming; "
        "held back until the next fetch shows the same (ref {ref})"
    ),
    "drop-most": N_(
        "{lost} of {upcoming} upcoming events vanished at once; "
        "held back until the next fetch shows the same (ref {ref})"
    ),
    "unstable-uids": N_(
        "UIDs change on every fetch; events are identified by their start and title"
    ),
    "listed-twice": N_(
        "'{title}' on {start} is listed twice (UIDs {uid} and {other_uid}); shown once"
    ),
    # -- what a source's cycle says about an attempt (decide.py) -------------------------------
    "fetch-failed-no-reason": N_("the fetch failed"),
    "unreadable": N_("could not read the feed: {error}"),
    "bug": N_("an unexpected error in the aggregator ({kind}: {error}); reported"),
    "not-modified": N_("not modified (HTTP 304)"),
    "not-modified-confirmed": N_(
        "not modified (HTTP 304); {removed} vanished events confirmed removed"
    ),
    "same-body": N_("the same feed as last time; not read again"),
    "same-body-confirmed": N_(
        "the same feed as last time; not read again; {removed} vanished events confirmed removed"
    ),
    "read": N_("read {count} occurrences"),
    "read-changes": N_("read {count} occurrences ({changes})"),
    "read-drop-confirmed": N_(
        "read {count} occurrences; the drop held back last time is confirmed and applied"
    ),
    "read-changes-drop-confirmed": N_(
        "read {count} occurrences ({changes}); the drop held back last time is confirmed "
        "and applied"
    ),
    # -- reading on a budget (worker.py) -----------------------------------------------------
    "over-memory": N_(
        "reading {what} needed more than {memory} MB of memory and was stopped; the file "
        "is too large or too deeply nested to read: make it smaller"
    ),
    "over-time": N_(
        "reading {what} took more than {seconds} s of processor time and was stopped; it is "
        "too large or too complex to read (for example a repeating rule (RRULE) that "
        "repeats every second or minute): make it smaller or simpler"
    ),
    "reader-died": N_("reading {what} stopped the reader unexpectedly; it was skipped"),
    "reader-failed": N_("reading {what} failed ({error}); reported"),
    # -- fetching (fetch.py) -----------------------------------------------------------------
    "timeout": N_("no complete answer within {seconds} s (timed out)"),
    "broken-off": N_("the connection broke off in the middle of the feed ({error})"),
    "dns-failed": N_("could not connect to {host}:{port} ({error})"),
    "connect-refused": N_("could not connect to {host}:{port} ({error})"),
    "connect-failed": N_("could not connect to {host}:{port} ({error})"),
    "connection-closed": N_("the server closed the connection ({error})"),
    "connection-failed": N_("the connection failed ({error})"),
    "fetch-failed": N_("the fetch failed: {error}"),
    "gone": N_(
        "the server says the feed is gone for good (HTTP 410 Gone); ask the member for its "
        "new address"
    ),
    "too-many-requests": N_("the server answered HTTP {status} {reason} (too many requests)"),
    "too-many-requests-wait": N_(
        "the server answered HTTP {status} {reason} (too many requests); it asks us to wait "
        "{seconds} s"
    ),
    "server-error": N_("the server answered HTTP {status} {reason} (a server error)"),
    "server-error-wait": N_(
        "the server answered HTTP {status} {reason} (a server error); it asks us to wait "
        "{seconds} s"
    ),
    "http-check-address": N_(
        "the server answered HTTP {status} {reason}; check the feed's address"
    ),
    "http-status": N_("the server answered HTTP {status} {reason}"),
    "too-big": N_("the feed is {size} bytes, more than the limit of {limit} bytes"),
    "too-big-decompressed": N_(
        "the feed is larger than the limit of {limit} bytes (after decompression)"
    ),
    "file-too-big": N_("the file is {size} bytes, more than the limit of {limit} bytes"),
    "file-unreadable": N_("cannot read {path}: {error}"),
    "redirect-nowhere": N_("the server redirected (HTTP {status}) without saying where"),
    "redirect-invalid": N_("the server redirected to {location}, not a valid address ({error})"),
    "redirect-loop": N_("the server redirects in a loop: {loop}"),
    "too-many-redirects": N_(
        "more than {limit} redirects ({first} -> ... -> {last}); give us the feed's final address"
    ),
    "no-client": N_("no HTTP client in this run"),
    "no-client-local": N_("no HTTP client in this run (local files only)"),
    "link-not-web": N_("the link {link} is not a web address; only http and https links are read"),
    "link-scheme": N_(
        "the link {url} is not a web address; only http and https addresses are read"
    ),
    "redirect-scheme": N_(
        "{via} redirects to {url}, and it is not a web address; only http and https "
        "addresses are read"
    ),
    # -- addresses refused or malformed (guard.py) -------------------------------------------
    "link-refused": N_("the link {url} goes to {host}, {kind}; only public addresses are read"),
    "redirect-refused": N_(
        "{via} redirects to {url}, and it goes to {host}, {kind}; only public addresses are read"
    ),
    "resolves-refused": N_("{host} resolves to {address}, {kind}; only public addresses are read"),
    "check-scheme": N_("{url}: only http, https and webcal addresses can be checked"),
    "check-refused": N_("{url}: {host} is {kind}; only public addresses can be checked"),
    "address-invalid": N_("not a valid address: {url} ({error})"),
    "address-invalid-url": N_("not a valid address: {error}"),
    "address-unreadable": N_("not a valid address: {url} cannot be read as an address ({error})"),
    "address-port": N_("not a valid address: the port in {url} is not a number from 1 to 65535"),
    "address-no-host": N_("not a valid address: {url} has no host name"),
    "address-number": N_("not a valid address: {host} is neither a name nor an address"),
    "address-host-part": N_(
        "not a valid address: {host} is not a valid host name (an empty or too long part)"
    ),
    "address-host": N_("not a valid address: {host} is not a valid host name"),
}

#: words that go into other words as detail (what was read, what kind of address), said in
#: the page's language as well; any other detail (a title, a library's error) stays as written
PHRASES: tuple[str, ...] = (
    N_("the feed"),
    N_("its page"),
    N_("the .ics file its page links"),
    N_("a multicast address"),
    N_("the unspecified address (it reaches this server itself)"),
    N_("a loopback address (this server itself)"),
    N_("a link-local address (where cloud metadata services answer)"),
    N_("a private network address"),
    N_("not a public address"),
    N_("a local-use NAT64 address (it reaches a private network)"),
)
#: how many occurrences a read added, updated or removed: the parts of a "changes" detail
#: ("34 added, 1 removed"), said in the page's language as well
CHANGE_COUNTS: dict[str, str] = {
    "added": N_("{count} added"),
    "removed": N_("{count} removed"),
    "updated": N_("{count} updated"),
}
_CHANGE_COUNT = re.compile(r"(\d+) (added|removed|updated)")
#: the detail whose values are PHRASES
_PHRASE_DETAIL = ("what", "kind")
#: the last line of a capped list, as plain words (what older versions stored)
_MORE = re.compile(r"\.\.\. and (\d+) more warnings")


def problem(code: str, **detail: object) -> Problem:
    """The problem `code`, its words made from the template and `detail`."""
    values = tuple((name, str(value)) for name, value in detail.items())
    return Problem(code, TEMPLATES[code].format(**dict(values)), values)


def as_problem(item: Problem | str) -> Problem:
    """A Problem as it is; plain words (older code, older databases) as a "text" Problem."""
    return item if isinstance(item, Problem) else Problem.text(str(item))


def more_count(item: Problem | str) -> int | None:
    """N of a capped list's "... and N more warnings" line, or None for any other problem."""
    if isinstance(item, Problem) and item.code == "more-warnings":
        return int(dict(item.detail)["count"])
    found = _MORE.fullmatch(str(item))
    return int(found.group(1)) if found else None


def say(item: Problem | str, lang: str) -> str:
    """The problem in `lang` (its English words when the catalogue has no translation)."""
    if isinstance(item, str):
        return item
    template = TEMPLATES.get(item.code)
    if template is None or item.code == "text":
        return item.words
    _ = gettext_in(lang, "problems")
    detail = {name: _said(name, value, _) for name, value in item.detail}
    try:
        return _(template).format(**detail)
    except (KeyError, IndexError, ValueError):  # a translation that lost a placeholder
        return item.words


def changes_in_words(changes: dict[str, int]) -> str:
    """'34 added, 1 removed': the counts of a read, by kind in alphabetical order."""
    return ", ".join(CHANGE_COUNTS[kind].format(count=n) for kind, n in sorted(changes.items()))


def _said(name: str, value: str, _) -> str:
    """A detail's value in the page's language: a phrase or the counts of changes
    translated, anything else (a title, a library's error) as written."""
    if name in _PHRASE_DETAIL and value in PHRASES:
        return _(value)
    if name == "changes":
        parts = [_CHANGE_COUNT.fullmatch(part) for part in value.split(", ")]
        if all(parts):
            return ", ".join(_(CHANGE_COUNTS[m[2]]).format(count=m[1]) for m in parts)
    return value
