"""iCalendar text -> icalendar's component tree, without the properties nobody reads.

icalendar's own parser (CalendarIcalParser) builds the tree; this subclass only changes
how it gets there, through the parser's template methods:

- lines are unfolded and split with plain string operations when the text allows it (the
  library's unfolding expression and its character-by-character split of every line were
  a third of a calendar's reading);
- a property of a VEVENT or VALARM that nothing downstream reads (DTSTAMP, TRANSP,
  ATTENDEE, X-ALT-DESC, ...) is left out when the library could not have failed on it.

Everything else, every BEGIN and END, every property that is read and every line that is
not plain, goes through the library's own methods: the tree has the same components,
the same errors and the same values of every property that is read (tests/test_parse_
fast.py proves it on generated calendars and on every .ics of the corpus). A text the
parser raises on is read again by the library itself, so even its errors are the
library's own.
"""

from __future__ import annotations

import re
from datetime import datetime

import icalendar
from icalendar.parser import Contentline, Parameters
from icalendar.parser.content_line import UFOLD
from icalendar.parser.ical.calendar import CalendarIcalParser
from icalendar.parser.property import unescape_backslash
from icalendar.prop import vCalAddress, vDDDTypes, vText, vUnknown, vUri

__all__ = ["READ", "read_calendars"]

#: what the pipeline reads of a VEVENT (parse/ical.py, occurrences.py, recurrence.py,
#: recurring-ical-events, x-wr-timezone); every other property may be left out
READ = frozenset(
    {
        "UID",
        "DTSTART",
        "DTEND",
        "DURATION",
        "SUMMARY",
        "DESCRIPTION",
        "URL",
        "LOCATION",
        "STATUS",
        "CATEGORIES",
        "SEQUENCE",
        "RRULE",
        "RDATE",
        "EXDATE",
        "EXRULE",
        "RECURRENCE-ID",
    }
)
#: properties handle_property treats on their own (their lists of values): it adds them
_SPECIAL = frozenset({"CATEGORIES", "FREEBUSY", "RDATE"})
#: a value type that takes its value from the line as written has this (handle_property)
_VERBATIM = "get_value_from_content_line"
#: the parameters of a line without any, while it is only looked at (never added)
_NO_PARAMS = Parameters()
#: components whose other properties nobody reads (a VTIMEZONE is read whole)
_TRIMMED = frozenset({"VEVENT", "VALARM"})
#: a property name the library takes as it is (its token rule is [\w.-]+, and it removes
#: blanks first): ASCII letters, digits and hyphens only
_NAME = re.compile(r"[A-Za-z0-9-]+")
#: the value types of the lines that may be left out: a text or an unknown value never
#: fails; a URI or an address fails only on a line break (a CR, or an escaped \n)
_NEVER_FAIL = (vText, vUnknown)
_FAIL_ON_BREAK = (vCalAddress, vUri)
#: a DTSTAMP, CREATED or LAST-MODIFIED as exporters write them: UTC or floating, no zone
_STAMP = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z?")
#: one fold: a line break and a blank; the library's expression also joins a fold that
#: follows blank lines, which is why a text with blank lines is unfolded by the library
_FOLD = re.compile(r"\r?\n[ \t]")


def read_calendars(text: str) -> list[icalendar.Component]:
    """The top-level components of the text, as icalendar.Calendar.from_ical(text,
    multiple=True) reads them, less the properties of events nobody reads.

    Raises what the library raises on a text it cannot read.
    """
    try:
        return _TrimmedParser(text).parse()
    except Exception:  # noqa: BLE001  (the library says what is wrong, in its own words)
        return icalendar.Calendar.from_ical(text, multiple=True)


def unfold(text: str) -> list[str]:
    """The content lines of a text, as icalendar's Contentlines.from_ical splits them
    (empty lines dropped), as plain strings."""
    if "\n\n" in text or "\n\r\n" in text:
        unfolded = UFOLD.sub("", text)
    else:
        unfolded = _FOLD.sub("", text)
    if unfolded.count("\r\n") == unfolded.count("\n"):
        lines = unfolded.split("\r\n")
    else:
        lines = re.split(r"\r?\n", unfolded)
    return [line for line in lines if line]


def _head(head: str) -> tuple[str, Parameters] | None:
    """A name with parameters, as the library reads it; None when only the whole line
    can say (quotes or escapes in it, or an error, whose words name the whole line), or
    when a parameter has a list of values (each property must get its own list)."""
    if '"' in head or "\\" in head:
        return None
    try:
        name, params, _ = Contentline(head + ":").raw_parts()
    except ValueError:
        return None
    if not all(isinstance(value, str) for value in params.values()):
        return None  # a list of values: each property gets its own from the library
    return name, params


class _TrimmedParser(CalendarIcalParser):
    """icalendar's calendar parser, splitting plain lines itself and leaving out the
    properties of events that nobody reads."""

    def __init__(self, text: str) -> None:
        calendar = icalendar.Calendar
        super().__init__(text, calendar._get_component_factory(), calendar.types_factory)
        #: a name with parameters -> how the library reads it: a feed repeats a few of
        #: them (DTSTART;TZID=Europe/Copenhagen) on every event
        self._heads: dict[str, tuple[str, Parameters] | None] = {}
        #: (name, VALUE parameter) -> the value type the library gives it
        self._types: dict[tuple[str, str | None], type] = {}

    def initialize_parsing(self) -> None:
        """The library's start, the lines unfolded by unfold() (once: a calendar whose
        VTIMEZONE comes after its events is parsed twice, from the same lines)."""
        self._stack = []
        self._components = []
        if not isinstance(self._data, list):
            self._data = unfold(self._data)
        self._content_lines_iterator = iter(self._data)

    def parse_content_lines(self) -> None:
        """The library's loop over the lines, a property nobody reads left out."""
        for line in self._content_lines_iterator:
            parts = self._split(line)
            if parts is None:
                try:
                    parts = Contentline(line).raw_parts()
                except ValueError as e:
                    self.handle_line_parse_error(e)
                    continue
            name, params, raw = parts
            uname = name.upper()
            if uname == "BEGIN":
                self.handle_begin_component(unescape_backslash(raw))
            elif uname == "END":
                self.handle_end_component(unescape_backslash(raw))
            elif not self._left_out(uname, params, raw):
                self._add(uname, params, raw, line)

    def _split(self, line: str) -> tuple[str, Parameters, str] | None:
        """A content line's name, parameters and raw (still escaped) value, as
        Contentline.raw_parts() gives them; None when only the library can tell.

        The library finds the value after the first colon outside quotes and escapes:
        when the text before the first colon has neither, that colon is the one, and the
        rest of the line (often a long description) need not be walked character by
        character. A name with parameters is read once per calendar.
        """
        colon = line.find(":")
        if colon <= 0:
            return None
        head = line[:colon]
        if _NAME.fullmatch(head):
            return head, _NO_PARAMS, line[colon + 1 :]
        if head in self._heads:
            found = self._heads[head]
        else:
            found = self._heads[head] = _head(head)
        if found is None:
            return None
        name, params = found
        # each property its own parameters, as the library gives it (values are words)
        return name, Parameters(params), line[colon + 1 :]

    def _type(self, name: str, params: Parameters) -> type:
        """The value type of a property (the library's get_factory_for_property)."""
        key = (name, None if params is _NO_PARAMS else params.value)
        found = self._types.get(key)
        if found is None:
            found = self._types[key] = self.get_factory_for_property(name, params)
        return found

    def _add(self, name: str, params: Parameters, raw: str, line: str) -> None:
        """A property to the component: handle_property's steps, its type looked up once."""
        component, factory = self.component, self._type(name, params)
        value = unescape_backslash(raw)
        if factory is vText and params is _NO_PARAMS and component is not None:
            # a text without parameters (none of _SPECIAL is text): its own empty ones
            component.add(name, factory(value), encode=False)
            return
        if params is _NO_PARAMS:
            params = Parameters()  # each property its own, as the library gives it
        if component is None or name in _SPECIAL or hasattr(factory, _VERBATIM):
            self.handle_property(name, params, value, Contentline(line))
            return
        # parse_and_add_property; a text value is not copied once more
        tzid = params.get("TZID") if params and name in self.datetime_names else None
        try:
            if factory is vText and not tzid:  # with a zone, from_ical fails: let it
                parsed = factory(value)
            elif tzid:
                parsed = factory(factory.from_ical(value, tzid))
            else:
                parsed = factory(factory.from_ical(value))
        except (ValueError, TypeError) as e:
            self.handle_property_parse_error(e, name, params, value, Contentline(line))
            return
        parsed.params = params
        component.add(name, parsed, encode=False)

    def _left_out(self, name: str, params: Parameters, raw: str) -> bool:
        """Whether the property is one nobody reads, on which the library cannot fail."""
        component = self.component
        if component is None or name in READ or component.name not in _TRIMMED:
            return False
        factory = self._type(name, params)
        if factory in _NEVER_FAIL:
            return True
        if factory in _FAIL_ON_BREAK:
            return "\r" not in raw and "\\" not in raw
        if factory is vDDDTypes and not params:
            return _valid_stamp(raw)
        return False


def _valid_stamp(raw: str) -> bool:
    """Whether the library reads this date-time value without fail (vDatetime.from_ical:
    15 or 16 characters, the 9th a T, valid numbers, nothing or Z after them)."""
    found = _STAMP.fullmatch(raw)
    if found is None:
        return False
    try:
        datetime(*map(int, found.groups()))
    except ValueError:
        return False
    return True
