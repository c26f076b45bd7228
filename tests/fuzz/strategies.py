"""Hypothesis strategies for hostile member content: iCalendar, RSS/Atom, event pages, bodies.

Each strategy draws the habits of real producers (so that the parsers get far enough to be
tested) mixed with what a broken or hostile one sends: odd property order, folding in the
middle of a character, mixed line ends, encodings the server lies about, huge and negative
numbers, broken nesting, every RRULE part with values outside its range, odd TZIDs and
VTIMEZONEs, entities and CDATA, javascript: and CR/LF in links, deep HTML, broken JSON-LD.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html import escape

from hypothesis import strategies as st

#: the clock of every fuzz test (tests/conftest.py's NOW): generated dates cluster around it
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# -- small pieces ---------------------------------------------------------------------------

#: text with what breaks naive code: controls, CR/LF, bidi, surrogate-ish, NUL, emoji, entities
NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "Aflyst/Cancelled: Koncert",
            "AFLYST - Ny dato følger",
            "Udsat: " * 30,
            "aflyst" * 200,
            "Cancelled cancelled cancelled" + "!" * 50,
            "a\r\nb",
            "\x00\x01\x1b[31m",
            "\u202eevil\u202c",
            "\ufeffBOM",
            "😀" * 10,
            "&amp;&lt;&#0;&#xD800;&nbsp;&bogus;",
            "<script>alert(1)</script>",
            "\\n\\,\\;\\",
            "x" * 5000,
            "Torsdag 26 Januar 2023, 13:00 - 14:30",
            "onsdag den 8. februar 2027 kl. 16.00-18.00",
            "1" + " " * 3000 + "januar",
        ]
    ),
)

_ZONES = [
    "Europe/Copenhagen",
    "America/New_York",
    "UTC",
    "Etc/GMT+12",
    "Pacific/Kiritimati",
    "Romance Standard Time",
    "W. Europe Standard Time",
    '"Romance Standard Time"',
    "(UTC+01:00) Amsterdam, Berlin",
    "Europe",
    "/",
    "",
    "../../etc/passwd",
    "Europe/Copenhagen\x00",
    "Customized Time Zone",
    "tzone://Microsoft/Utc",
    "/freeassociation.sourceforge.net/Europe/Copenhagen",
    "Ä" * 300,
    "GMT+0100",
    "a;b:c",
]
ZONE_NAMES = st.one_of(st.sampled_from(_ZONES), st.text(max_size=12))


@st.composite
def moments(draw) -> datetime:
    """Mostly near NOW (inside the horizon), sometimes at the ends of time."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from([datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)]))
    if kind == 1:
        return draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
    offset = draw(st.integers(-200 * 86400, 800 * 86400))
    return (NOW + timedelta(seconds=offset)).replace(tzinfo=None)


def ical_date(value: datetime) -> str:
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def ical_datetime(value: datetime) -> str:
    return f"{ical_date(value)}T{value.hour:02d}{value.minute:02d}{value.second:02d}"


@st.composite
def ical_time_value(draw) -> str:
    """A DATE or DATE-TIME value as written, or something that only looks like one."""
    value = draw(moments())
    return draw(
        st.sampled_from(
            [
                ical_date(value),
                ical_datetime(value),
                ical_datetime(value) + "Z",
                ical_datetime(value) + "z",
                ical_datetime(value)[:-2],
                "20261345T256161",
                "00000000",
                "-0001" + ical_datetime(value)[4:],
                "99999999T999999Z",
                "2026-11-25T12:00:00Z",
                "",
                "T",
                "2026112" + "5" * 40,
            ]
        )
    )


def _param_value(text: str) -> str:
    return f'"{text}"' if any(ch in text for ch in ';:,"') else text


@st.composite
def time_property(draw, name: str) -> str:
    """DTSTART/DTEND/RECURRENCE-ID/EXDATE/RDATE with the parameters producers write."""
    params = []
    value = draw(ical_time_value())
    if draw(st.booleans()):
        params.append(f"TZID={_param_value(draw(ZONE_NAMES))}")
    if draw(st.integers(0, 3)) == 0:
        params.append(
            "VALUE=" + draw(st.sampled_from(["DATE", "DATE-TIME", "PERIOD", "TEXT", "XYZ", ""]))
        )
    if name == "RECURRENCE-ID" and draw(st.booleans()):
        params.append("RANGE=" + draw(st.sampled_from(["THISANDFUTURE", "THISANDPRIOR", "X"])))
    if name in ("RDATE", "EXDATE") and draw(st.booleans()):
        extra = draw(st.lists(ical_time_value(), max_size=6))
        if draw(st.booleans()) and extra:  # PERIOD: start/end or start/duration
            extra = [f"{v}/{draw(durations())}" for v in extra]
        value = ",".join([value, *extra])
    head = ";".join([name, *params])
    return f"{head}:{value}"


@st.composite
def durations(draw) -> str:
    written = draw(
        st.sampled_from(
            [
                "PT1H",
                "P1D",
                "P1W",
                "PT0S",
                "-PT1H",
                "-P1D",
                "P",
                "PT",
                "P1W2D",
                "P99999999D",
                "PT99999999999H",
                "P1Y",
                "PT1.5H",
                "1H",
                "+P1D",
                "P-1D",
                "",
            ]
        )
    )
    if written == "PT1H" and draw(st.booleans()):
        number = draw(st.integers(-(10**12), 10**12))
        unit = draw(st.sampled_from("WDHMS"))
        written = f"{'-' if number < 0 else ''}P{'T' if unit in 'HMS' else ''}{abs(number)}{unit}"
    return written


_ODD_NUMBERS = st.one_of(
    st.integers(-5, 60),
    st.sampled_from([0, -1, 10**9, -(10**9), 2**31, 2**63, 10**30, -(10**30)]),
)
_WEEKDAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


@st.composite
def byday(draw) -> str:
    days = []
    for _ in range(draw(st.integers(1, 4))):
        day = draw(st.sampled_from([*_WEEKDAYS, "XX", "mo", ""]))
        if draw(st.booleans()):
            day = f"{draw(st.sampled_from([-53, -5, -1, 0, 1, 2, 5, 53, 54, 999]))}{day}"
        days.append(day)
    return ",".join(days)


def _numbers(low: int, high: int):
    """A BYxxx list: in range, at the edges, just outside, and not numbers at all."""
    one = st.one_of(
        st.integers(low, high),
        st.sampled_from([low - 1, high + 1, 0, -high, -high - 1, 10**6]),
        st.sampled_from(["x", "", "+1", "1.5"]),
    )
    return st.lists(one, min_size=1, max_size=5).map(lambda v: ",".join(map(str, v)))


_RRULE_PARTS = {
    "FREQ": st.sampled_from(
        ["SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY", "daily", "X", ""]
    ),
    "INTERVAL": _ODD_NUMBERS,
    "COUNT": _ODD_NUMBERS,
    "UNTIL": ical_time_value(),
    "BYSECOND": _numbers(0, 60),
    "BYMINUTE": _numbers(0, 59),
    "BYHOUR": _numbers(0, 23),
    "BYDAY": byday(),
    "BYMONTHDAY": _numbers(-31, 31),
    "BYYEARDAY": _numbers(-366, 366),
    "BYWEEKNO": _numbers(-53, 53),
    "BYMONTH": _numbers(1, 12),
    "BYSETPOS": _numbers(-366, 366),
    "WKST": st.sampled_from([*_WEEKDAYS, "XX", ""]),
    "X-NAME": st.just("x"),
}


@st.composite
def rrules(draw) -> str:
    """An RRULE value: FREQ (usually first, sometimes late, twice or missing) and any parts."""
    names = draw(st.lists(st.sampled_from(sorted(_RRULE_PARTS)), max_size=6, unique=True))
    if "FREQ" not in names and draw(st.integers(0, 5)):
        names.insert(draw(st.integers(0, len(names))), "FREQ")
    if "COUNT" not in names and "UNTIL" not in names and draw(st.booleans()):
        names.append(draw(st.sampled_from(["COUNT", "UNTIL"])))
    parts = [f"{n}={draw(_RRULE_PARTS[n])}" for n in names]
    if parts and draw(st.integers(0, 9)) == 0:
        parts.append(parts[0])  # a part written twice
    return ";".join(parts)


_STATUS = st.sampled_from(["CONFIRMED", "CANCELLED", "TENTATIVE", "cancelled", "X", ""])
_URLS = st.sampled_from(
    [
        "https://example.org/e/1",
        "http://example.org/a b",
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "webcal://example.org/c.ics",
        "file:///etc/passwd",
        "https://exa mple.org/",
        "https://a..b/",
        "https://[::1]/x",
        "https://[zz]/x",
        "https://example.org:99999/",
        "https://example.org:x/",
        "//example.org/no-scheme",
        "/relative/path",
        "https://example.org/\\r\\nSet-Cookie: x",
        "https://ex\u0000ample.org/",
        "https://éxample.org/ø",
        "https://" + "a" * 64 + ".org/",
        "https://example.org/" + "x" * 3000,
        "",
    ]
)


def escape_ical(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


@st.composite
def vevent_lines(draw) -> list[str]:
    """One VEVENT's content lines, in any order, some missing, some broken."""
    lines = []
    uid = draw(st.sampled_from(["u1", "u2", "same@x", "", "ø" * 20, "x" * 300, None]))
    if uid is not None:
        lines.append(f"UID:{uid}")
    if draw(st.integers(0, 9)):
        lines.append(draw(time_property("DTSTART")))
    end_kind = draw(st.integers(0, 3))
    if end_kind == 1:
        lines.append(draw(time_property("DTEND")))
    elif end_kind == 2:
        lines.append(f"DURATION:{draw(durations())}")
    elif end_kind == 3 and draw(st.booleans()):
        lines.append(draw(time_property("DTEND")))
        lines.append(f"DURATION:{draw(durations())}")
    lines.append(f"SUMMARY:{escape_ical(draw(NASTY_TEXT))}")
    for _ in range(draw(st.integers(0, 2))):
        lines.append(f"RRULE:{draw(rrules())}")
    for name in ("RDATE", "EXDATE", "RECURRENCE-ID"):
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(time_property(name)))
    optional = {
        "STATUS": _STATUS,
        "SEQUENCE": _ODD_NUMBERS.map(str),
        "URL": _URLS,
        "LOCATION": NASTY_TEXT.map(escape_ical),
        "DESCRIPTION": NASTY_TEXT.map(escape_ical),
        "CATEGORIES": st.lists(NASTY_TEXT.map(escape_ical), max_size=3).map(",".join),
        "DTSTAMP": ical_time_value(),
        "CLASS": st.just("PRIVATE"),
        "X-MICROSOFT-CDO-ALLDAYEVENT": st.sampled_from(["TRUE", "FALSE"]),
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), max_size=5, unique=True)):
        lines.append(f"{name}:{draw(optional[name])}")
    if draw(st.integers(0, 4)) == 0:
        lines.extend(["BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT15M", "END:VALARM"])
    lines = draw(st.permutations(lines))
    return ["BEGIN:VEVENT", *lines, "END:VEVENT"]


@st.composite
def vtimezone_lines(draw) -> list[str]:
    """A VTIMEZONE, good or broken: odd TZID, offsets out of range, rules that never stop."""
    tzid = draw(ZONE_NAMES)
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tzid}"]
    for kind in draw(st.lists(st.sampled_from(["STANDARD", "DAYLIGHT", "BOGUS"]), max_size=3)):
        offset = draw(
            st.sampled_from(["+0100", "+0200", "-1200", "+1400", "+9999", "0100", "+01", "abc", ""])
        )
        sub = [
            f"BEGIN:{kind}",
            f"DTSTART:{draw(ical_time_value())}",
            f"TZOFFSETFROM:{draw(st.sampled_from(['+0100', '+0200', '-0000', 'x']))}",
            f"TZOFFSETTO:{offset}",
        ]
        if draw(st.booleans()):
            sub.append(f"RRULE:{draw(rrules())}")
        if draw(st.booleans()):
            sub.append(f"RDATE:{draw(ical_time_value())}")
        sub.append(f"END:{kind}")
        lines.extend(draw(st.permutations(sub[1:-1])) if draw(st.booleans()) else sub)
    lines.append("END:VTIMEZONE")
    return lines


# -- well-formed calendars (level 0) with a few hostile values (level 1) --------------------
#
# Anything-goes input (level 2) is mostly refused at the door as a ParseError; the expansion,
# override and time-zone code is reached only by calendars that are right where it matters.

#: how a calendar's times are written: all-day, floating, UTC, or with a TZID
_FORMS = ("date", "floating", "utc", "tz")
_GOOD_ZONES = [
    "Europe/Copenhagen",
    "America/New_York",
    "Pacific/Kiritimati",
    "Etc/GMT+12",
    "Australia/Lord_Howe",
    "Romance Standard Time",
    "W. Europe Standard Time",
    "Custom Zone",  # defined by a VTIMEZONE of its own
]
_FREQ_STEPS = {
    "SECONDLY": timedelta(seconds=1),
    "MINUTELY": timedelta(minutes=1),
    "HOURLY": timedelta(hours=1),
    "DAILY": timedelta(days=1),
    "WEEKLY": timedelta(weeks=1),
    "MONTHLY": timedelta(days=30),  # only roughly: overrides may miss, which is a case too
    "YEARLY": timedelta(days=365),
}


#: no generated occurrence lies further from its series' start (year 9999 is not far away)
_FAR = timedelta(days=3000)


def _time_value(moment: datetime, form: str) -> str:
    if form == "date":
        return ical_date(moment)
    return ical_datetime(moment) + ("Z" if form == "utc" else "")


def _time_line(name: str, moment: datetime, form: str, tzid: str, *params: str) -> str:
    head = [name, *params]
    if form == "date":
        head.append("VALUE=DATE")
    elif form == "tz":
        head.append(f"TZID={_param_value(tzid)}")
    return f"{';'.join(head)}:{_time_value(moment, form)}"


@st.composite
def near_now(draw) -> datetime:
    offset = draw(st.integers(-120 * 86400, 760 * 86400))
    moment = (NOW + timedelta(seconds=offset)).replace(tzinfo=None, microsecond=0)
    return moment.replace(second=0) if draw(st.integers(0, 3)) else moment


def _in_range(low: int, high: int, size: int = 4):
    """A BYxxx list of values RFC 5545 allows (negative ones too, where it does)."""
    values = st.integers(low, high).filter(lambda v: v != 0 or low == 0)
    return st.lists(values, min_size=1, max_size=size, unique=True).map(
        lambda v: ",".join(map(str, v))
    )


_VALID_PARTS = {
    "BYSECOND": _in_range(0, 59),
    "BYMINUTE": _in_range(0, 59),
    "BYHOUR": _in_range(0, 23),
    "BYDAY": st.lists(
        st.tuples(
            st.sampled_from(["", "1", "-1", "2", "+3", "-2", "5", "53"]), st.sampled_from(_WEEKDAYS)
        ),
        min_size=1,
        max_size=4,
        unique=True,
    ).map(lambda days: ",".join(n + d for n, d in days)),
    "BYMONTHDAY": _in_range(-31, 31),
    "BYYEARDAY": _in_range(-366, 366),
    "BYWEEKNO": _in_range(-53, 53),
    "BYMONTH": _in_range(1, 12),
    "BYSETPOS": _in_range(-366, 366, size=3),
    "WKST": st.sampled_from(_WEEKDAYS),
}


@st.composite
def valid_rrules(draw, start: datetime, form: str) -> tuple[str, timedelta]:
    """A well-formed RRULE (odd, maybe: SECONDLY, BYSETPOS, COUNT=10**9) and its step."""
    freq = draw(st.sampled_from(sorted(_FREQ_STEPS)))
    interval = draw(st.one_of(st.integers(1, 4), st.integers(1, 1000)))
    parts = [f"FREQ={freq}"]
    if interval != 1 or draw(st.booleans()):
        parts.append(f"INTERVAL={interval}")
    ending = draw(st.sampled_from(["forever", "count", "until"]))
    if ending == "count":
        count = draw(st.one_of(st.integers(1, 60), st.sampled_from([5000, 10**6, 10**9])))
        parts.append(f"COUNT={count}")
    elif ending == "until":
        until = start + draw(
            st.sampled_from(
                [timedelta(0), timedelta(days=1), timedelta(days=400), timedelta(days=-10)]
            )
        )
        # RFC 5545 3.3.10: UNTIL in UTC unless DTSTART is a date or floating
        parts.append(f"UNTIL={_time_value(until, 'utc' if form == 'tz' else form)}")
    for name in draw(st.lists(st.sampled_from(sorted(_VALID_PARTS)), max_size=3, unique=True)):
        parts.append(f"{name}={draw(_VALID_PARTS[name])}")
    parts = [parts[0], *draw(st.permutations(parts[1:]))]
    return ";".join(parts), _FREQ_STEPS[freq] * interval


@st.composite
def wellformed_events(draw, level: int, uid: str, form: str, tzid: str) -> list[list[str]]:
    """One event or one series with its overrides (same UID, RECURRENCE-ID on an occurrence,
    maybe RANGE=THISANDFUTURE, moved or cancelled), as content lines per VEVENT."""
    start = draw(near_now())
    if form == "date":
        start = start.replace(hour=0, minute=0, second=0)
    length = draw(
        st.sampled_from(
            [
                timedelta(hours=1),
                timedelta(days=1),
                timedelta(0),
                timedelta(days=3),
                timedelta(minutes=90),
            ]
        )
    )
    if form == "date":
        length = timedelta(days=max(length.days, 0))
    master = [
        f"UID:{uid}",
        _time_line("DTSTART", start, form, tzid),
        f"SUMMARY:{escape_ical(draw(NASTY_TEXT))}",
        f"DTSTAMP:{ical_datetime(NOW.replace(tzinfo=None))}Z",
    ]
    ending = draw(st.sampled_from(["dtend", "duration", "none"]))
    if ending == "dtend":
        master.append(_time_line("DTEND", start + length, form, tzid))
    elif ending == "duration":
        days, seconds = length.days, length.seconds
        master.append(f"DURATION:P{days}D" if form == "date" else f"DURATION:P{days}DT{seconds}S")
    events = [master]
    if draw(st.integers(0, 2)):
        rule, step = draw(valid_rrules(start, form))
        master.append(f"RRULE:{rule}")
        for _ in range(draw(st.integers(0, 2))):
            k = draw(st.integers(0, 20))
            master.append(_time_line("EXDATE", start + min(k * step, _FAR), form, tzid))
        if draw(st.integers(0, 2)) == 0:
            extra = [start + draw(st.integers(-5, 400)) * timedelta(days=1) for _ in range(3)]
            if form == "date":
                master.append(f"RDATE;VALUE=DATE:{','.join(ical_date(m) for m in extra)}")
            else:
                master.append(_time_line("RDATE", extra[0], form, tzid))
        for _ in range(draw(st.integers(0, 3))):
            k = draw(st.integers(0, 30))
            when = start + min(k * step, _FAR)
            moved = when + draw(
                st.sampled_from([timedelta(0), timedelta(hours=2), timedelta(days=-1)])
            )
            params = ["RANGE=THISANDFUTURE"] if draw(st.integers(0, 3)) == 0 else []
            override = [
                f"UID:{uid}",
                _time_line("RECURRENCE-ID", when, form, tzid, *params),
                _time_line("DTSTART", moved, form, tzid),
                f"SUMMARY:{escape_ical(draw(NASTY_TEXT))}",
                f"SEQUENCE:{draw(st.integers(0, 5))}",
            ]
            if draw(st.booleans()):
                override.append("STATUS:CANCELLED")
            if draw(st.booleans()):
                override.append(_time_line("DTEND", moved + length, form, tzid))
            events.append(override)
    optional = {
        "STATUS": st.sampled_from(["CONFIRMED", "CANCELLED", "TENTATIVE"]),
        "URL": _URLS,
        "LOCATION": NASTY_TEXT.map(escape_ical),
        "DESCRIPTION": NASTY_TEXT.map(escape_ical),
        "CATEGORIES": st.lists(NASTY_TEXT.map(escape_ical), min_size=1, max_size=3).map(",".join),
        "SEQUENCE": st.integers(0, 10).map(str),
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), max_size=4, unique=True)):
        master.append(f"{name}:{draw(optional[name])}")
    if level == 1:
        # a few values broken: a hostile line replaces or joins a good one
        for _ in range(draw(st.integers(1, 2))):
            event = draw(st.sampled_from(events))
            name = draw(st.sampled_from(["DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE", "RDATE"]))
            bad = draw(
                st.one_of(
                    time_property(name),
                    rrules().map(lambda rule: f"RRULE:{rule}"),
                    durations().map(lambda value: f"DURATION:{value}"),
                    _JUNK_LINES,
                )
            )
            at = draw(st.integers(0, len(event)))
            if draw(st.booleans()) and at < len(event):
                event[at] = bad
            else:
                event.insert(at, bad)
    return [["BEGIN:VEVENT", *draw(st.permutations(e)), "END:VEVENT"] for e in events]


_CUSTOM_ZONE = [
    "BEGIN:VTIMEZONE",
    "TZID:Custom Zone",
    "BEGIN:STANDARD",
    "DTSTART:19701025T030000",
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
    "TZOFFSETFROM:+0200",
    "TZOFFSETTO:+0100",
    "END:STANDARD",
    "BEGIN:DAYLIGHT",
    "DTSTART:19700329T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
    "TZOFFSETFROM:+0100",
    "TZOFFSETTO:+0200",
    "END:DAYLIGHT",
    "END:VTIMEZONE",
]


@st.composite
def wellformed_calendars(draw, level: int) -> list[str]:
    header = ["VERSION:2.0", "PRODID:-//fuzz//EN"]
    if draw(st.integers(0, 3)) == 0:
        header.append(f"X-WR-TIMEZONE:{draw(st.sampled_from(_GOOD_ZONES[:-1]))}")
    if draw(st.integers(0, 9)) == 0:
        header.append("METHOD:CANCEL")
    body = list(_CUSTOM_ZONE)
    if level and draw(st.booleans()):
        body.extend(draw(vtimezone_lines()))
    uids = ["a@fuzz", "b@fuzz", "c@fuzz", "a@fuzz"]  # a shared UID now and then
    for n in range(draw(st.integers(1, 4))):
        form = draw(st.sampled_from(_FORMS))
        tzid = draw(st.sampled_from(_GOOD_ZONES))
        for event in draw(wellformed_events(level, uids[n], form, tzid)):
            body.extend(event)
    return ["BEGIN:VCALENDAR", *draw(st.permutations(header)), *body, "END:VCALENDAR"]


_JUNK_LINES = st.sampled_from(
    [
        "BEGIN:VEVENT",
        "END:VEVENT",
        "BEGIN:VCALENDAR",
        "END:VCALENDAR",
        "BEGIN:VTIMEZONE",
        "END:VTIMEZONE",
        "BEGIN:VALARM",
        "END:VTODO",
        "BEGIN:",
        "END:",
        "no colon on this line",
        ":",
        ";;;:",
        'X-PARAM;A="unterminated:value',
        "DTSTART;TZID=:20261125T120000",
        " continuation without a line",
        "\x00",
        "SUMMARY" + ";X=1" * 200 + ":many params",
        "X-" + "A" * 2000 + ":long name",
    ]
)


#: how hostile one calendar is: 0 every value well-formed (odd but legal: SECONDLY, BYSETPOS,
#: COUNT=10**9, RANGE=THISANDFUTURE, Windows zones), 1 a few values broken, 2 anything goes
LEVELS = st.sampled_from([0, 0, 1, 1, 2])


@st.composite
def calendars(draw) -> str:
    """A whole iCalendar text, as one (hostile) producer writes it."""
    level = draw(LEVELS)
    if level < 2:
        return _fold(draw, draw(wellformed_calendars(level)))
    header = ["VERSION:2.0", "PRODID:-//fuzz//EN"]
    if draw(st.booleans()):
        header.append(f"X-WR-TIMEZONE:{draw(ZONE_NAMES)}")
    if draw(st.integers(0, 4)) == 0:
        header.append(f"METHOD:{draw(st.sampled_from(['CANCEL', 'PUBLISH', 'REQUEST', 'X']))}")
    if draw(st.integers(0, 4)) == 0:
        header.append(f"CALSCALE:{draw(st.sampled_from(['GREGORIAN', 'CHINESE']))}")
    header = draw(st.permutations(header))
    body: list[str] = []
    for _ in range(draw(st.integers(0, 2))):
        body.extend(draw(vtimezone_lines()))
    events = draw(st.lists(vevent_lines(), min_size=0, max_size=5))
    if events and draw(st.integers(0, 4)) == 0:
        # the same event many times: big files, shared UIDs
        events = events * draw(st.integers(2, 300))
    for event in events:
        body.extend(event)
    lines = ["BEGIN:VCALENDAR", *header, *body, "END:VCALENDAR"]
    # broken nesting: lines inserted, dropped or swapped anywhere
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.integers(0, 2))
        at = draw(st.integers(0, len(lines) - 1))
        if action == 0:
            lines.insert(at, draw(_JUNK_LINES))
        elif action == 1 and len(lines) > 2 and at not in (0, len(lines) - 1):
            del lines[at]
        else:
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
    if draw(st.integers(0, 9)) == 0:
        lines = lines[1:]  # bare VEVENTs without a VCALENDAR
    if draw(st.integers(0, 9)) == 0:
        lines = lines[: draw(st.integers(1, len(lines)))]  # cut short
    return _fold(draw, lines)


def _fold(draw, lines: list[str]) -> str:
    """Content lines joined with the line ends producers use, folded (RFC 5545 3.1) or not."""
    ending = draw(st.sampled_from(["\r\n", "\n", "\r\n", "\r", "mixed"]))
    folding = draw(st.sampled_from(["none", "rfc", "anywhere"]))
    out = []
    for line in lines:
        if folding == "rfc" and len(line) > 75:
            line = "\r\n ".join(line[i : i + 74] for i in range(0, len(line), 74))
        elif folding == "anywhere" and line and draw(st.integers(0, 3)) == 0:
            at = draw(st.integers(0, len(line)))
            line = (
                line[:at] + draw(st.sampled_from(["\r\n ", "\r\n\t", "\n ", "\r\n  "])) + line[at:]
            )
        out.append(line)
    if ending == "mixed":
        return "".join(line + draw(st.sampled_from(["\r\n", "\n", "\r"])) for line in out)
    return ending.join(out) + draw(st.sampled_from([ending, "", ending * 3]))


_CHARSETS = st.sampled_from(
    [None, "utf-8", "UTF-8", "iso-8859-1", "windows-1252", "utf-16", "ascii", "latin-1", "x-bogus"]
)


@st.composite
def encoded(draw, text: str) -> tuple[bytes, str | None]:
    """Bytes and the charset the server claims (which may be a lie)."""
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"]))
    body = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 5)) == 0 and body:
        # a byte-level fold or junk inside a multi-byte character
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\r\n ", b"\xff", b"\xc3", b"\x00"])) + body[at:]
    return body, draw(_CHARSETS)


@st.composite
def ical_bodies(draw) -> tuple[bytes, str | None]:
    return draw(encoded(draw(calendars())))


# -- RSS and Atom ---------------------------------------------------------------------------

_DATE_TEXTS = st.sampled_from(
    [
        "Torsdag 26 Januar 2027, 13:00 - 14:30",
        "onsdag den 8. februar 2027 kl. 16.00-18.00",
        "d. 12/5 2027 kl. 17:00-19:00",
        "Saturday 4 March 2027, 10am–2pm",
        "March 12, 2027 from 5:30 pm to 7 pm",
        "fra den 3. til den 5. juni 2027",
        "12–14 May 2027",
        "lørdag d. 4. marts kl. 10-14",
        "fredag 26. januar kl. 17 til søndag 28. januar kl. 13",
        "Ny dato: 15. marts 2027",
        "Ny dato følger",
        "Register before 24th of January 2027",
        "2027-02-30",
        "31. februar 2027 kl. 25:61",
        "1. januar 9999",
        "32/13 2027",
        "0. januar 2027",
        "12 May 2027 at 23:59 - 00:01",
        "12 May 2027 at 12pm-0am",
        "",
    ]
)


@st.composite
def texts_with_dates(draw) -> str:
    parts = draw(st.lists(st.one_of(_DATE_TEXTS, NASTY_TEXT), max_size=4))
    return draw(st.sampled_from(["\n", " ", "<br>", "</p><p>", " - "])).join(parts)


def _xml_text(text: str, how: str) -> str:
    if how == "cdata":
        return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    if how == "double":
        return escape(escape(text))
    if how == "raw":  # not escaped at all: not well-formed when text has < or &
        return text
    return escape(text)


_PUB_DATES = st.sampled_from(
    [
        "Tue, 10 Jan 2023 12:00:00 GMT",
        "Wed, 25 Nov 2026 12:00:00 +0100",
        "2026-11-25T12:00:00Z",
        "Mon, 99 Foo 2023 99:99:99 XYZ",
        "0",
        "-1",
        "Fri, 31 Dec 9999 23:59:59 -1200",
        "Sat, 01 Jan 0001 00:00:00 +1400",
        "",
        "yesterday",
    ]
)

_LINKS = st.one_of(
    _URLS,
    st.sampled_from(
        [
            "https://example.org/events/\r\n  m%C3%B8de\r\n",
            "https://example.org/e\n/2",
            "\r\nhttps://example.org/e/3\r\n",
            "https://example.org/e/1",
            "https://example.org/e/1#dup",
            "vbscript:msgbox(1)",
            "&#106;avascript:alert(1)",
            "jav&#x09;ascript:alert(1)",
        ]
    ),
)


@st.composite
def html_fragments(draw, depth: int = 0) -> str:
    """HTML as items carry it: nested, unclosed, scripts, JSON-LD, dates in the text."""
    pieces = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 8))
        if kind == 0:
            pieces.append(f"<p>{escape(draw(texts_with_dates()))}</p>")
        elif kind == 1:
            n = draw(st.integers(1, 3000))
            tag = draw(st.sampled_from(["div", "b", "span", "table", "ul", "li"]))
            pieces.append(f"<{tag}>" * n + escape(draw(_DATE_TEXTS)) + f"</{tag}>" * (n // 2))
        elif kind == 2:
            pieces.append(f"<script>{draw(NASTY_TEXT)}</script>")
        elif kind == 3:
            pieces.append(draw(json_ld_blocks()))
        elif kind == 4:
            href = draw(_LINKS)
            pieces.append(f'<a href="{escape(href)}">{escape(draw(NASTY_TEXT))} .ics</a>')
        elif kind == 5:
            pieces.append(draw(microdata()))
        elif kind == 6:
            pieces.append(draw(st.sampled_from(["<p", "</div></div>", "<!--", "<![CDATA[", "&#"])))
        elif kind == 7 and depth < 2:
            pieces.append(f"<div>{draw(html_fragments(depth + 1))}</div>")
        else:
            pieces.append(escape(draw(NASTY_TEXT)))
    return "".join(pieces)


_SCHEMA_DATES = st.one_of(
    st.sampled_from(
        [
            "2027-03-02T19:00:00+01:00",
            "2027-03-02T19:00:00Z",
            "2027-03-02T19:00",
            "2027-03-02",
            "2027-03-02T00:00:00",
            "2027-03-02T23:59:59",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-12:00",
            "9999-12-31",
            "0001-01-01",
            "2027-13-45",
            "2027-03-02T25:00",
            "2027-03-02T19:00:00+25:00",
            "Z" * 10,
            "ZZZZZZZZZZZ",
            "2027-W09",
            "20270302",
            "",
            " ",
        ]
    ),
    st.integers(-(10**20), 10**20),
    st.none(),
    st.lists(st.sampled_from(["2027-03-02", "x", ""]), max_size=3),
    st.dictionaries(st.sampled_from(["@value", "x"]), st.text(max_size=5), max_size=2),
)

_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def schema_events(draw) -> dict:
    event: dict = {
        "@context": draw(st.sampled_from(["https://schema.org", "http://schema.org/", "x", None])),
        "@type": draw(
            st.sampled_from(
                ["Event", "MusicEvent", ["Event", "Thing"], "Place", "", 7, None, ["x", 1]]
            )
        ),
        "name": draw(NASTY_TEXT),
        "startDate": draw(_SCHEMA_DATES),
    }
    if draw(st.booleans()):
        event["endDate"] = draw(_SCHEMA_DATES)
    if draw(st.booleans()):
        event["eventStatus"] = draw(
            st.one_of(
                st.sampled_from(
                    [
                        "https://schema.org/EventCancelled",
                        "EventPostponed",
                        "https://schema.org/EventMovedOnline",
                        "eventrescheduled",
                        "",
                    ]
                ),
                _JSON_VALUES,
            )
        )
    if draw(st.booleans()):
        event["location"] = draw(
            st.one_of(
                NASTY_TEXT,
                _JSON_VALUES,
                st.just(
                    {
                        "@type": "Place",
                        "name": "Kulturhuset",
                        "address": {
                            "@type": "PostalAddress",
                            "streetAddress": "Nørrebrogade 1",
                            "postalCode": 2200,
                            "addressLocality": ["København N"],
                        },
                    }
                ),
                st.just({"@type": "VirtualLocation", "url": "javascript:alert(1)"}),
            )
        )
    if draw(st.booleans()):
        event["url"] = draw(_LINKS)
    for key in draw(st.lists(st.sampled_from(["offers", "organizer", "image", "x"]), max_size=2)):
        event[key] = draw(_JSON_VALUES)
    return event


@st.composite
def json_ld_blocks(draw) -> str:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        payload = json.dumps(draw(schema_events()))
    elif kind == 1:
        payload = json.dumps(
            {
                "@context": "https://schema.org",
                "@graph": draw(st.lists(schema_events(), max_size=3)),
            }
        )
    elif kind == 2:
        payload = json.dumps(draw(st.lists(schema_events(), max_size=3)))
    elif kind == 3:  # broken JSON
        payload = json.dumps(draw(schema_events()))[: draw(st.integers(0, 60))]
    elif kind == 4:  # deeply nested
        n = draw(st.integers(1, 5000))
        payload = "[" * n + '{"@type": "Event", "startDate": "2027-01-01"}' + "]" * n
    else:
        payload = json.dumps(draw(_JSON_VALUES))
    payload = payload.replace("</", draw(st.sampled_from(["<\\/", "</"])))
    return f'<script type="application/ld+json">{payload}</script>'


@st.composite
def microdata(draw) -> str:
    start = draw(_SCHEMA_DATES)
    start = start if isinstance(start, str) else json.dumps(start)
    kind = draw(st.sampled_from(["https://schema.org/Event", "http://schema.org/Event", "x"]))
    inner = (
        f'<span itemprop="name">{escape(draw(NASTY_TEXT))}</span>'
        f'<meta itemprop="startDate" content="{escape(start)}">'
        f'<time itemprop="endDate" datetime="{escape(draw(st.sampled_from(["2027-03-02", "x"])))}">'
        "</time>"
        f'<div itemprop="location" itemscope itemtype="https://schema.org/Place">'
        f'<span itemprop="name">{escape(draw(NASTY_TEXT))}</span></div>'
        f'<a itemprop="url" href="{escape(draw(_LINKS))}">link</a>'
    )
    if draw(st.booleans()):  # unclosed, or itemscope inside itemscope many times
        inner = f'<div itemscope itemtype="{kind}">' * draw(st.integers(1, 200)) + inner
    return f'<div itemscope itemtype="{kind}">{inner}</div>'


@st.composite
def rss_items(draw, flavour: str) -> str:
    how = draw(st.sampled_from(["escape", "cdata", "double", "raw"]))
    title = _xml_text(draw(st.one_of(NASTY_TEXT, texts_with_dates())), how)
    link = draw(st.one_of(st.none(), _LINKS))
    body = _xml_text(draw(html_fragments()), draw(st.sampled_from(["escape", "cdata"])))
    guid = draw(st.one_of(st.none(), st.sampled_from(["g1", "g2", "", " ", "x" * 500]), _LINKS))
    date = _xml_text(draw(_PUB_DATES), "escape")
    if flavour == "atom":
        parts = [f"<title>{title}</title>", f'<content type="html">{body}</content>']
        if link is not None:
            parts.append(f'<link href="{escape(link)}"/>')
        if guid is not None:
            parts.append(f"<id>{escape(guid)}</id>")
        parts.append(f"<updated>{date}</updated>")
        tag = "entry"
    else:
        parts = [f"<title>{title}</title>", f"<description>{body}</description>"]
        if link is not None:
            parts.append(
                f"<link>{_xml_text(link, draw(st.sampled_from(['escape', 'cdata'])))}</link>"
            )
        if guid is not None:
            parts.append(f"<guid>{escape(guid)}</guid>")
        parts.append(f"<pubDate>{date}</pubDate>")
        if flavour == "rdf" or draw(st.integers(0, 4)) == 0:
            parts.append(f"<ev:startdate>{escape(str(draw(_SCHEMA_DATES)))}</ev:startdate>")
            parts.append(f"<ev:enddate>{escape(str(draw(_SCHEMA_DATES)))}</ev:enddate>")
            parts.append(f"<ev:location>{escape(draw(NASTY_TEXT))}</ev:location>")
        for _ in range(draw(st.integers(0, 2))):
            parts.append(f"<category>{_xml_text(draw(NASTY_TEXT), how)}</category>")
        tag = "item"
    parts = draw(st.permutations(parts))
    return f"<{tag}>{''.join(parts)}</{tag}>"


#: a generated feed stays under about this size: big enough for "huge" (thousands of items),
#: small enough that one example takes well under a second and a failure can be shrunk
MAX_FEED_CHARACTERS = 1_000_000
_NAMESPACES = (
    'xmlns:ev="http://purl.org/rss/1.0/modules/event/" '
    'xmlns:content="http://purl.org/rss/1.0/modules/content/"'
)


@st.composite
def feeds(draw) -> str:
    flavour = draw(st.sampled_from(["rss", "atom", "rdf"]))
    items = draw(st.lists(rss_items(flavour), max_size=6))
    if items and draw(st.integers(0, 5)) == 0:
        # huge item counts, up to about MAX_FEED_CHARACTERS in all
        most = max(2, MAX_FEED_CHARACTERS // sum(map(len, items)))
        items = items * draw(st.integers(2, min(most, 3000)))
    entities = ""
    if draw(st.integers(0, 5)) == 0:  # entity expansion; feedparser must not blow up
        entities = (
            '<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY ext SYSTEM "file:///etc/passwd">]>'
        )
        items.append("<item><title>&c;&ext;</title></item>")
    if flavour == "atom":
        doc = f'<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title>{"".join(items)}</feed>'
    elif flavour == "rdf":
        doc = (
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            f'xmlns="http://purl.org/rss/1.0/" {_NAMESPACES}>'
            f'<channel rdf:about="x"><title>F</title></channel>{"".join(items)}</rdf:RDF>'
        )
    else:
        channel = f"<channel><title>F</title>{''.join(items)}</channel>"
        doc = f'<rss version="2.0" {_NAMESPACES}>{channel}</rss>'
    prolog = draw(st.sampled_from(['<?xml version="1.0" encoding="utf-8"?>', "", "\ufeff", "  \n"]))
    doc = prolog + entities + doc
    if draw(st.integers(0, 9)) == 0:
        doc = doc[: draw(st.integers(0, len(doc)))]  # cut short
    return doc


@st.composite
def feed_bodies(draw) -> tuple[bytes, str | None]:
    body, _ = draw(encoded(draw(feeds())))
    content_type = draw(
        st.sampled_from(
            [
                None,
                "application/rss+xml",
                "application/atom+xml; charset=utf-8",
                "text/html",
                "text/xml; charset=iso-8859-1",
                "application/xml; charset=x-bogus",
                "",
            ]
        )
    )
    return body, content_type


# -- event pages ----------------------------------------------------------------------------


@st.composite
def pages(draw) -> str:
    head = "".join(draw(st.lists(json_ld_blocks(), max_size=3)))
    main = draw(html_fragments())
    wrapper = draw(st.sampled_from(["article", "main", "div", "body", "section"]))
    chrome = draw(st.sampled_from(["", "<nav>menu</nav>", "<footer>Del på Facebook</footer>"]))
    doc = (
        f"<html><head><title>{escape(draw(NASTY_TEXT))}</title>{head}</head>"
        f"<body>{chrome}<{wrapper}>{main}</{wrapper}></body></html>"
    )
    if draw(st.integers(0, 9)) == 0:
        doc = draw(st.sampled_from(["", "<", "\x00", "<?xml version='1.0'?><x/>", "plain text"]))
    return doc


PAGE_URLS = st.sampled_from(
    ["https://example.org/e/1", "http://example.org/", "", "not a url", "https://[::1]/x"]
)


@st.composite
def any_bytes(draw) -> bytes:
    return draw(
        st.one_of(
            st.binary(max_size=200),
            st.text(max_size=100).map(lambda t: t.encode("utf-8")),
            st.sampled_from(
                [
                    b"\xef\xbb\xbf",
                    b"\xff\xfe",
                    b"\xfe\xff",
                    b"\xff\xfeB\x00E\x00",
                    b"\xff\xfe\x00",
                    b"\xc3",
                    b"\x00" * 10,
                ]
            ),
        )
    )


CHARSETS = st.one_of(
    _CHARSETS,
    st.sampled_from(["utf-7", "utf-32", "idna", "rot13", "hex", "base64", "mbcs", "UTF8 ", ""]),
    st.text(max_size=10),
)
