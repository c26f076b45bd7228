"""A realistic member network on disk: seeded iCalendar feeds and the sources.yaml that reads them.

    .venv/bin/python bench/generate.py OUT_DIR --members 1000 --events 200 [--seed 1]
                                              [--today 2026-11-26]

writes OUT_DIR/feeds/m0001.ics ... and OUT_DIR/sources.yaml (sources are file paths relative to
it). Each member's calendar looks like a Google Calendar, Outlook or Nextcloud export: PRODID,
X-WR-CALNAME, X-WR-TIMEZONE, a VTIMEZONE (Europe/Copenhagen; a few Outlook members use the
Windows name "Romance Standard Time"), and VEVENTs with UID, DTSTAMP, CREATED, LAST-MODIFIED,
SEQUENCE, zoned DTSTART/DTEND, Danish titles, addresses, long escaped descriptions, URL,
CATEGORIES, ORGANIZER, STATUS and TRANSP, folded at 75 octets with CRLF. Of a member's VEVENTs
about 70% are one-off timed events from 30 days ago to a year ahead, 10% all-day (some over
several days), 10% weekly or fortnightly series (COUNT or UNTIL, EXDATE, RECURRENCE-ID overrides
that move or cancel a date), 5% cancelled and 5% copies of another member's event (co-hosted:
same time and place, title the same or reworded, another UID), so merging has work to do.

Every event is drawn from its own seeded generator (seed, member, index), so a file is written
without holding the network in memory and a co-hosted copy finds its original without it.
`edit_member` changes a few VEVENTs of one file in place, as a member editing its calendar.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

try:  # imported as bench.generate, from the repository's folder
    from bench import network_words as words
except ImportError:  # run as a script, or imported with bench/ on sys.path
    import network_words as words

Member, member = words.Member, words.member

ZONE = ZoneInfo("Europe/Copenhagen")
CRLF = "\r\n"
#: the share of VEVENTs of each kind (the rest are one-off timed events)
MIX = (("allday", 0.10), ("series", 0.10), ("cancelled", 0.05), ("copy", 0.05))


def event_kind(seed: int, number: int, index: int) -> str:
    """What VEVENT `index` of member `number` is: timed, allday, series, cancelled or copy."""
    draw = random.Random(f"{seed}/{number}/{index}/kind").random()
    for kind, share in MIX:
        if draw < share:
            return kind
        draw -= share
    return "timed"


#: a VEVENT's content lines (with its overrides), and the starts it takes
Made = tuple[list[str], list[date]]


@dataclass(frozen=True)
class Core:
    """What a co-host copies of an event: title, time and place."""

    title: str
    start: datetime
    end: datetime
    location: str


def core(seed: int, who: Member, index: int, today: date, salt: int = 0) -> Core:
    """The title, time and place of a one-off timed event (on the hour or half past)."""
    rng = random.Random(f"{seed}/{who.number}/{index}/core{salt or ''}")
    day = today + timedelta(days=rng.randrange(-30, 366))
    start = datetime(day.year, day.month, day.day, rng.randrange(9, 21), rng.choice((0, 0, 30)))
    end = start + timedelta(minutes=rng.choice((60, 90, 120, 120, 180)))
    return Core(words.title_for(rng, who.name), start, end, words.address(rng))


def escape(text: str) -> str:
    """RFC 5545 TEXT escaping: backslash, semicolon, comma and newline."""
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def fold(line: str) -> str:
    """One content line folded at 75 octets (RFC 5545 3.1), never inside a UTF-8 character."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line + CRLF
    parts, start, limit = [], 0, 75
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1
        parts.append(data[start:end].decode("utf-8"))
        start, limit = end, 74
    return (CRLF + " ").join(parts) + CRLF


def unfold(text: str) -> list[str]:
    """The content lines of a folded file."""
    return text.replace(CRLF + " ", "").split(CRLF)


def local(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%S")


def utc(value: datetime) -> str:
    """A local Copenhagen time written in UTC (for UNTIL, DTSTAMP and the like)."""
    return value.replace(tzinfo=ZONE).astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%SZ")


def uid(who: Member, index: int, rng: random.Random) -> str:
    """A UID in the style of the member's calendar program."""
    token = "%032x" % rng.getrandbits(128)
    if who.flavour == "google":
        return f"{token[:26]}@google.com"
    if who.flavour == "outlook":
        return f"040000008200E00074C5B7101A82E00800000000{token.upper()}"
    return f"{token[:8]}-{token[8:12]}-{token[12:16]}-{token[16:20]}-{token[20:]}"


def stamps(rng: random.Random, today: date) -> list[str]:
    """DTSTAMP (the export), CREATED and LAST-MODIFIED (before it), SEQUENCE."""
    created = datetime(today.year, today.month, today.day, 9) - timedelta(
        days=rng.randrange(20, 400), minutes=rng.randrange(600)
    )
    modified = created + timedelta(days=rng.randrange(0, 15), minutes=rng.randrange(300))
    return [
        f"DTSTAMP:{today:%Y%m%d}T060000Z",
        f"CREATED:{utc(created)}",
        f"LAST-MODIFIED:{utc(modified)}",
        f"SEQUENCE:{rng.choice((0, 0, 0, 1, 2))}",
    ]


def organizer(who: Member) -> str:
    name = f'"{who.name}"' if re.search(r"[,;:]", who.name) else who.name
    return f"ORGANIZER;CN={name}:mailto:kontakt@{who.domain}"


def common(who: Member, rng: random.Random, title: str, location: str, n: int) -> list[str]:
    """The properties every VEVENT has besides its times, UID and stamps."""
    url = f"https://{who.domain}/arrangementer/{n}"
    cats = ",".join(rng.sample(words.CATEGORIES, rng.randrange(1, 3)))
    return [
        f"SUMMARY:{escape(title)}",
        f"LOCATION:{escape(location)}",
        f"DESCRIPTION:{escape(words.description(rng, who.name, who.domain, title, url))}",
        f"URL:{url}",
        f"CATEGORIES:{cats}",
        organizer(who),
    ]


def timed(tzid: str, start: datetime, end: datetime) -> list[str]:
    return [f"DTSTART;TZID={tzid}:{local(start)}", f"DTEND;TZID={tzid}:{local(end)}"]


def vevent(
    who: Member, lines: list[str], status: str = "CONFIRMED", transp: str = "OPAQUE"
) -> list[str]:
    """A VEVENT of the properties, STATUS and TRANSP (and Outlook's own properties)."""
    if who.flavour == "outlook":
        lines = [*lines, "CLASS:PUBLIC", "PRIORITY:5", "X-MICROSOFT-CDO-BUSYSTATUS:BUSY"]
    return ["BEGIN:VEVENT", *lines, f"STATUS:{status}", f"TRANSP:{transp}", "END:VEVENT"]


def single(seed: int, who: Member, index: int, today: date, salt: int, cancelled: bool) -> Made:
    """A one-off timed event (cancelled: STATUS:CANCELLED, now and then 'AFLYST:' too)."""
    rng = random.Random(f"{seed}/{who.number}/{index}/single{salt or ''}")
    c = core(seed, who, index, today, salt)
    title = c.title
    if cancelled and rng.random() < 0.3:
        title = f"AFLYST: {title}"
    lines = [f"UID:{uid(who, index, rng)}", *stamps(rng, today)]
    lines += timed(who.tzid, c.start, c.end) + common(who, rng, title, c.location, index)
    return vevent(who, lines, "CANCELLED" if cancelled else "CONFIRMED"), [c.start]


def copy(
    seed: int, who: Member, index: int, today: date, salt: int, members: int, events: int
) -> Made:
    """Another member's one-off event as this member lists it: same time and place."""
    rng = random.Random(f"{seed}/{who.number}/{index}/copy{salt or ''}")
    for _ in range(50):
        host = member(rng.randrange(1, members + 1))
        original = rng.randrange(events)
        if host.number != who.number and event_kind(seed, host.number, original) == "timed":
            break
    c = core(seed, host, original, today)
    title = rng.choice(
        (
            c.title,
            f"{c.title} hos {host.name}",
            f"Invitation: {c.title}",
            f"{c.title} (sammen med {host.name})",
        )
    )
    lines = [f"UID:{uid(who, index, rng)}", *stamps(rng, today)]
    lines += timed(who.tzid, c.start, c.end) + common(who, rng, title, c.location, index)
    return vevent(who, lines), [c.start]


def allday(seed: int, who: Member, index: int, today: date, salt: int) -> Made:
    """An all-day event, a third of them over two to four days."""
    rng = random.Random(f"{seed}/{who.number}/{index}/allday{salt or ''}")
    first = today + timedelta(days=rng.randrange(-30, 366))
    days = rng.randrange(2, 5) if rng.random() < 0.33 else 1
    title = rng.choice(("Sommerlejr", "Festival", "Landsmøde", "Weekendseminar", "Markedsdag"))
    title = f"{title} {rng.choice(words.PLACES)}" if rng.random() < 0.5 else f"{title} – {who.name}"
    lines = [f"UID:{uid(who, index, rng)}", *stamps(rng, today)]
    lines += [
        f"DTSTART;VALUE=DATE:{first:%Y%m%d}",
        f"DTEND;VALUE=DATE:{first + timedelta(days=days):%Y%m%d}",
    ]
    lines += common(who, rng, title, words.address(rng), index)
    return vevent(who, lines, transp="TRANSPARENT"), [first]


def series(seed: int, who: Member, index: int, today: date, salt: int) -> Made:
    """A weekly or fortnightly series (COUNT or UNTIL, EXDATE), and overrides of single dates."""
    rng = random.Random(f"{seed}/{who.number}/{index}/series{salt or ''}")
    every = rng.choice((1, 1, 2))
    first = today + timedelta(days=rng.randrange(-60, 300))
    start = datetime(
        first.year, first.month, first.day, rng.randrange(15, 20), rng.choice((15, 45))
    )
    length = timedelta(minutes=rng.choice((90, 120)))
    count = rng.randrange(6, 21)
    dates = [start + timedelta(weeks=every * k) for k in range(count)]
    byday = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")[start.weekday()]
    rule = f"RRULE:FREQ=WEEKLY;INTERVAL={every};BYDAY={byday}"
    rule += f";COUNT={count}" if rng.random() < 0.5 else f";UNTIL={utc(dates[-1])}"
    title = rng.choice(words.SERIES_TITLES).format(
        group=rng.choice(words.GROUPS), place=rng.choice(words.PLACES)
    )
    text = common(who, rng, title, words.address(rng), index)
    series_uid, stamp = uid(who, index, rng), stamps(rng, today)
    master = [f"UID:{series_uid}", *stamp, *timed(who.tzid, start, start + length), rule]
    if rng.random() < 0.5:
        master.append(f"EXDATE;TZID={who.tzid}:{local(dates[rng.randrange(1, count - 1)])}")
    out = vevent(who, master + text)

    def override(old: datetime, new: datetime, status: str = "CONFIRMED") -> list[str]:
        """A RECURRENCE-ID VEVENT that moves or cancels the date `old` of the series."""
        lines = [f"UID:{series_uid}", *stamp[:3], "SEQUENCE:1"]
        lines += [f"RECURRENCE-ID;TZID={who.tzid}:{local(old)}"]
        return vevent(who, lines + timed(who.tzid, new, new + length) + text, status)

    picks = rng.sample(range(1, count - 1), 2)
    if rng.random() < 0.35:  # one date moved: a day later, or an hour later
        old = dates[picks[0]]
        new = old + rng.choice((timedelta(days=1), timedelta(hours=1)))
        out += override(old, new)
        dates.append(new)
    if rng.random() < 0.2:  # one date cancelled
        old = dates[picks[1]]
        out += override(old, old, "CANCELLED")
    return out, dates


def vevents(seed: int, who: Member, events: int, members: int, today: date) -> list[str]:
    """The content lines of all of a member's VEVENTs.

    No two start at the same time: a feed that lists one title twice at one time is warned
    about (listed twice), so an event that would is drawn again with another salt. (A copy of
    such an event then finds no original, now and then: a lone event, as in life.)"""
    lines: list[str] = []
    taken: set[date] = set()
    for index in range(events):
        kind = event_kind(seed, who.number, index)
        for salt in range(100):
            if kind == "copy" and members > 1:
                made, starts = copy(seed, who, index, today, salt, members, events)
            elif kind == "series":
                made, starts = series(seed, who, index, today, salt)
            elif kind == "allday":
                made, starts = allday(seed, who, index, today, salt)
            else:
                made, starts = single(seed, who, index, today, salt, kind == "cancelled")
            if taken.isdisjoint(starts):
                break
        taken.update(starts)
        lines += made
    return lines


def vtimezone(tzid: str, outlook: bool) -> list[str]:
    """Copenhagen's rules as Google and Nextcloud write them, or as Outlook does (since 1601)."""
    lines = ["BEGIN:VTIMEZONE", f"TZID:{tzid}"] + ([] if outlook else [f"X-LIC-LOCATION:{tzid}"])
    for kind, name, before, after, month, start in (
        ("DAYLIGHT", "CEST", "+0100", "+0200", 3, "0329T020000"),
        ("STANDARD", "CET", "+0200", "+0100", 10, "1025T030000"),
    ):
        lines += [f"BEGIN:{kind}", f"TZOFFSETFROM:{before}", f"TZOFFSETTO:{after}"]
        # Outlook starts its rules on 1 January 1601; the rule alone says when they apply
        first = f"16010101{start[4:]}" if outlook else f"1970{start}"
        lines += ([] if outlook else [f"TZNAME:{name}"]) + [f"DTSTART:{first}"]
        interval = "INTERVAL=1;" if outlook else ""
        lines += [f"RRULE:FREQ=YEARLY;{interval}BYMONTH={month};BYDAY=-1SU", f"END:{kind}"]
    return [*lines, "END:VTIMEZONE"]


HEADERS = {
    "google": "PRODID:-//Google Inc//Google Calendar 70.9054//EN\nVERSION:2.0\n"
    "CALSCALE:GREGORIAN\nMETHOD:PUBLISH",
    "outlook": "METHOD:PUBLISH\nPRODID:Microsoft Exchange Server 2010\nVERSION:2.0",
    "nextcloud": "VERSION:2.0\nPRODID:-//IDN nextcloud.com//Calendar app 4.7.6//EN\n"
    "CALSCALE:GREGORIAN\nX-APPLE-CALENDAR-COLOR:#31CC7C",
}


def calendar(seed: int, who: Member, events: int, members: int, today: date) -> str:
    """A member's whole feed, folded, with CRLF line ends."""
    lines = ["BEGIN:VCALENDAR", *HEADERS[who.flavour].split("\n")]
    lines += [f"X-WR-CALNAME:{escape(who.name)}", "X-WR-TIMEZONE:Europe/Copenhagen"]
    lines += (
        vtimezone(who.tzid, who.flavour == "outlook")
        + vevents(seed, who, events, members, today)
        + ["END:VCALENDAR"]
    )
    return "".join(fold(line) for line in lines)


def write_network(
    out: Path | str, members: int, events: int, seed: int = 1, today: date | None = None
) -> Path:
    """Write OUT/feeds/mNNNN.ics for every member and OUT/sources.yaml; returns the yaml's path."""
    out, today = Path(out), today or date.today()
    (out / "feeds").mkdir(parents=True, exist_ok=True)
    yaml = [
        "network:",
        "  name: Benchnetværket",
        "  timezone: Europe/Copenhagen",
        "  base_url: http://127.0.0.1:8080",
        "  refresh_interval: 30m",
        "sources:",
    ]
    for number in range(1, members + 1):
        who = member(number)
        text = calendar(seed, who, events, members, today)
        (out / "feeds" / f"{who.id}.ics").write_bytes(text.encode("utf-8"))
        yaml += [
            f"  - id: {who.id}",
            f"    name: {json.dumps(who.name, ensure_ascii=False)}",
            f"    url: feeds/{who.id}.ics",
            "    kind: ical",
            f"    homepage: https://{who.domain}",
        ]
    path = out / "sources.yaml"
    path.write_text("\n".join(yaml) + "\n", encoding="utf-8")
    return path


def edit_member(out: Path | str, member_id: int | str, count: int = 3, seed: int = 1) -> list[str]:
    """Change `count` one-off VEVENTs of one member's file in place, as the member would:
    by turns a new title, a move (start and end), a cancellation; each with SEQUENCE and
    LAST-MODIFIED raised. Returns what it did, one line per VEVENT."""
    number = member_id if isinstance(member_id, int) else int(str(member_id).lstrip("m"))
    path = Path(out) / "feeds" / f"m{number:04d}.ics"
    lines = unfold(path.read_bytes().decode("utf-8"))
    blocks = vevent_blocks(lines)
    candidates = [
        (first, last)
        for first, last in blocks
        if not any(
            x.startswith(("RRULE", "RECURRENCE-ID", "STATUS:CANCELLED", "DTSTART;VALUE"))
            for x in lines[first:last]
        )
    ]
    rng = random.Random(f"{seed}/{number}/edit")
    done = []
    for turn, (first, last) in enumerate(rng.sample(candidates, min(count, len(candidates)))):
        what = ("retitled", "moved", "cancelled")[turn % 3]
        done.append(f"m{number:04d}: {change(lines, first, last, what, rng)}")
    path.write_bytes("".join(fold(line) for line in lines if line).encode("utf-8"))
    return done


def vevent_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) line numbers of each VEVENT's properties."""
    starts = [n for n, line in enumerate(lines) if line == "BEGIN:VEVENT"]
    ends = [n for n, line in enumerate(lines) if line == "END:VEVENT"]
    return [(s + 1, e) for s, e in zip(starts, ends, strict=True)]


def change(lines: list[str], first: int, last: int, what: str, rng: random.Random) -> str:
    """Apply one edit to the VEVENT at lines[first:last]; say what it did."""
    props = {
        line.split(":", 1)[0].split(";", 1)[0]: n for n, line in enumerate(lines[first:last], first)
    }
    uid_, title = lines[props["UID"]][4:], lines[props["SUMMARY"]][8:]
    if what == "retitled":
        lines[props["SUMMARY"]] = f"SUMMARY:{title} (opdateret)"
        said = f"retitled {title!r} to {title + ' (opdateret)'!r}"
    elif what == "moved":
        shift = timedelta(days=rng.choice((1, 2, 7)), hours=rng.choice((0, 1)))
        for name in ("DTSTART", "DTEND"):
            head, value = lines[props[name]].rsplit(":", 1)
            moved = datetime.strptime(value, "%Y%m%dT%H%M%S") + shift
            lines[props[name]] = f"{head}:{local(moved)}"
        said = f"moved {title!r} by {shift}"
    else:
        lines[props["STATUS"]] = "STATUS:CANCELLED"
        said = f"cancelled {title!r}"
    sequence = int(lines[props["SEQUENCE"]].split(":")[1]) + 1
    lines[props["SEQUENCE"]] = f"SEQUENCE:{sequence}"
    lines[props["LAST-MODIFIED"]] = f"LAST-MODIFIED:{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    return f"{said} (UID {uid_})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--today", type=date.fromisoformat, default=date.today())
    args = parser.parse_args()
    path = write_network(args.out, args.members, args.events, args.seed, args.today)
    feeds = sorted((args.out / "feeds").glob("m*.ics"))[: args.members]
    size = sum(f.stat().st_size for f in feeds)
    count = sum(f.read_bytes().count(b"BEGIN:VEVENT") for f in feeds)
    print(f"{path}: {args.members} members, {count:,} VEVENTs, {size / 1e6:.1f} MB of feeds")


if __name__ == "__main__":
    main()
