"""parse/ical.py: expansion, time zones, status, broken input. Rules 1 and 2."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import icalendar
import pytest
import recurring_ical_events
import x_wr_timezone

from aggregator.errors import ParseError
from aggregator.model import Limits, Status
from aggregator.normalise import to_utc
from aggregator.parse import decode_body
from aggregator.parse.ical import parse_calendar
from tests.conftest import CORPUS, DATA, FEEDS, NOW

WIDE = Limits(past_days=365 * 40, future_days=365 * 12, max_occurrences=100_000)


def parse(text: str, *, floating_zone="Europe/Copenhagen", limits=WIDE, now=NOW):
    return parse_calendar(
        text,
        url="test.ics",
        source_id="src",
        floating_zone=floating_zone,
        network_zone="Europe/Copenhagen",
        now=now,
        limits=limits,
    )


def parse_file(path, **kwargs):
    text, _ = decode_body(path.read_bytes())
    return parse(text, **kwargs)


def by_uid(parsed):
    return {o.uid: o for o in parsed.occurrences}


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- Rule 2: recurrence --------------------------------------------------------------------

SERIES_FILES = [
    "ical__apple_ical.ics",
    "icalevents__recurring_override.ics",
    "icalevents__recurrenceid_ms.ics",
    "khal__event_rrule_recuid_cancelled.ics",
    "ical__office_356_custom_timezone.ics",
    "node-ical__exchange_whole_day_moved_recurrence.ics",
    "ical4j__valid_maritz.ics",
    "python-mergecal__calendar_with_date_recurrence_id.ics",
    "icalevents__multi_exdate_same_line_ms.ics",
    "node-ical__windows-quoted-tz-rrule.ics",
]


@pytest.mark.parametrize("name", SERIES_FILES)
def test_expansion_matches_recurring_ical_events_on_corpus_series(name):
    path = CORPUS / "ics" / name
    start, stop = NOW - timedelta(days=WIDE.past_days), NOW + timedelta(days=WIDE.future_days)
    calendar = x_wr_timezone.to_standard(icalendar.Calendar.from_ical(path.read_bytes()))
    expected = set()
    for component in recurring_ical_events.of(calendar).between(start, stop):
        value = component["DTSTART"].dt
        value = to_utc(value, "Europe/Copenhagen") if isinstance(value, datetime) else value
        expected.add((str(component["UID"]), value))
    got = {(o.uid, o.start) for o in parse_file(path).occurrences}
    assert got == expected
    assert len(got) > 1


def test_exdate_rdate_and_overrides_are_honoured():
    parsed = parse_file(DATA / "series_overrides.ics")
    starts = sorted((o.start, o.title, o.status) for o in parsed.occurrences)
    cph = lambda *a: to_utc(datetime(*a), "Europe/Copenhagen")
    assert starts == [
        (cph(2027, 1, 5, 17), "Weekly", Status.SCHEDULED),
        (cph(2027, 1, 12, 17), "Weekly", Status.SCHEDULED),
        # 19 January is an EXDATE; 26 January moved to the 27th at 19:00
        (cph(2027, 1, 27, 19), "Weekly (moved)", Status.SCHEDULED),
        (cph(2027, 2, 2, 17), "Weekly", Status.CANCELLED),
        (cph(2027, 2, 9, 17), "Weekly", Status.SCHEDULED),
        (cph(2027, 3, 1, 12), "Weekly", Status.SCHEDULED),  # the RDATE
    ]
    assert parsed.series == 1


def test_moved_override_keeps_the_recurrence_id_of_the_slot_it_replaces():
    parsed = parse_file(DATA / "series_overrides.ics")
    moved = next(o for o in parsed.occurrences if o.title == "Weekly (moved)")
    assert moved.recurrence_id == "2027-01-26T16:00:00Z"


def test_occurrence_keys_are_stable_and_unique():
    first = parse_file(DATA / "series_overrides.ics")
    second = parse_file(DATA / "series_overrides.ics")
    assert [o.key for o in first.occurrences] == [o.key for o in second.occurrences]
    assert len({o.key for o in first.occurrences}) == len(first.occurrences)


def test_runaway_rule_stops_at_the_cap_with_a_warning():
    parsed = parse_file(DATA / "runaway_rrule.ics", limits=Limits(max_occurrences=500))
    assert len(parsed.occurrences) == 500
    assert any("more than 500 occurrences" in str(w) for w in parsed.warnings)


def test_expansion_stays_inside_the_horizon():
    parsed = parse_file(
        DATA / "runaway_rrule.ics",
        limits=Limits(past_days=0, future_days=7, max_occurrences=100_000),
    )
    assert parsed.occurrences
    assert all(NOW <= o.start < NOW + timedelta(days=7) for o in parsed.occurrences)


def test_reversed_component_order_reads_the_same_occurrences():
    text = (FEEDS / "kulturhuset.ics").read_text(encoding="utf-8")
    blocks = re.findall(r"BEGIN:VEVENT.*?END:VEVENT\r?\n", text, re.DOTALL)
    head = text[: text.index(blocks[0])]
    reversed_text = head + "".join(reversed(blocks)) + "END:VCALENDAR\r\n"
    forward = {(o.key, o.fingerprint) for o in parse(text).occurrences}
    backward = {(o.key, o.fingerprint) for o in parse(reversed_text).occurrences}
    assert forward == backward
    assert len(forward) == 34


# -- Rule 1: time ---------------------------------------------------------------------------


def test_x_wr_timezone_keeps_utc_instants_and_reads_floating_times_in_that_zone():
    events = by_uid(parse_file(DATA / "google_x_wr_timezone.ics"))
    utc_event = events["utc-time@google.test"]
    assert utc_event.start == utc(2027, 1, 10, 14)
    assert utc_event.tzid == "America/New_York"
    # 09:00 in New York in January is 14:00 UTC, not 08:00 (which Copenhagen would give)
    assert events["floating-time@google.test"].start == utc(2027, 1, 11, 14)
    assert events["all-day@google.test"].start == date(2027, 1, 12)


def test_windows_zone_names_give_the_right_instants():
    parsed = parse_file(DATA / "outlook_windows_tzid.ics")
    events = {o.title: o for o in parsed.occurrences}
    winter = events["Vinter: Romance Standard Time"]
    summer = events["Sommer: Romance Standard Time"]
    eastern = events["No VTIMEZONE: Eastern Standard Time"]
    assert winter.start == utc(2027, 1, 12, 9)
    assert summer.start == utc(2027, 6, 15, 8)
    # Romance Standard Time keeps Copenhagen's clock, so the network's zone is named
    assert winter.tzid == summer.tzid == "Europe/Copenhagen"
    assert eastern.start == utc(2027, 1, 12, 15)
    assert eastern.tzid == "America/New_York"
    assert any("Windows zone name 'Romance Standard Time'" in str(w) for w in parsed.warnings)


def test_windows_name_in_x_wr_timezone_is_understood():
    parsed = parse_file(CORPUS / "ics" / "mergecal__windows_timezone.ics")
    (event,) = parsed.occurrences
    assert event.start == utc(2025, 1, 15, 19)  # 14:00 Eastern Standard Time
    assert event.tzid == "America/New_York"


def test_floating_times_take_the_source_zone():
    events = by_uid(parse_file(DATA / "floating_times.ics", floating_zone="Europe/London"))
    assert events["floating-1@test"].start == utc(2027, 3, 3, 19)
    assert events["floating-1@test"].tzid == "Europe/London"


def test_floating_times_without_a_source_zone_take_the_network_zone():
    events = by_uid(parse_file(DATA / "floating_times.ics"))
    assert events["floating-1@test"].start == utc(2027, 3, 3, 18)


def test_all_day_events_stay_dates():
    events = by_uid(parse_file(DATA / "floating_times.ics"))
    three = events["all-day-multi@test"]
    assert three.all_day and (three.start, three.end) == (date(2027, 6, 10), date(2027, 6, 13))
    assert not isinstance(three.start, datetime)


def test_missing_end_follows_rfc_5545():
    parsed = parse_file(DATA / "floating_times.ics")
    events = by_uid(parsed)
    # a DATE start without DTEND lasts one day; a DATE-TIME start ends when it starts
    assert events["all-day-no-end@test"].end == date(2027, 6, 2)
    assert events["no-end-1@test"].end == events["no-end-1@test"].start
    assert events["duration-1@test"].end - events["duration-1@test"].start == timedelta(hours=2)
    assert any("'No end' has no end time" in str(w) for w in parsed.warnings)


# -- status ---------------------------------------------------------------------------------


def test_status_cancelled_is_read():
    parsed = parse_file(FEEDS / "kulturhuset.ics")
    concert = next(o for o in parsed.occurrences if "Brass" in o.title)
    assert concert.status is Status.CANCELLED


def test_method_cancel_cancels_its_events():
    (event,) = parse_file(DATA / "method_cancel.ics").occurrences
    assert event.status is Status.CANCELLED
    assert event.sequence == 2


# -- broken input -----------------------------------------------------------------------------


def test_broken_components_are_skipped_with_warnings_and_the_rest_is_read():
    parsed = parse_file(DATA / "broken_components.ics")
    assert sorted(o.title for o in parsed.occurrences) == ["Good after", "Good before"]
    text = " | ".join(map(str, parsed.warnings))
    assert "Impossible date" in text
    assert "No start at all" in text
    assert "bad-rule@test" in text or "Unreadable rule" in text


def test_a_calendar_that_fails_as_a_whole_is_read_event_by_event():
    # a VTIMEZONE with an impossible offset makes icalendar give up on the whole file
    parsed = parse_file(CORPUS / "ics" / "icalevents__icloud.ics")
    assert parsed.occurrences
    assert any("event by event" in str(w) for w in parsed.warnings)


@pytest.mark.parametrize(
    "body, words",
    [
        ("", "empty"),
        ("<!DOCTYPE html><html><body>Login</body></html>", "HTML page"),
        ("hello world", "not an iCalendar file"),
    ],
)
def test_a_body_that_is_not_a_calendar_is_a_parse_error(body, words):
    with pytest.raises(ParseError, match=words):
        parse(body)


def test_a_moved_single_event_keeps_its_key():
    text = (DATA / "method_cancel.ics").read_text().replace("METHOD:CANCEL\n", "")
    (before,) = parse(text).occurrences
    moved = text.replace("20270110T100000Z", "20270117T100000Z")
    (after,) = parse(moved).occurrences
    assert before.recurrence_id is None
    assert after.key == before.key and after.start != before.start


def test_single_events_are_not_counted_as_series():
    parsed = parse_file(FEEDS / "floating.ics")
    assert parsed.series == 0
    assert all(o.recurrence_id is None for o in parsed.occurrences)


def test_single_events_sharing_a_uid_are_all_kept_whatever_their_order():
    one = """BEGIN:VEVENT\nUID:dup@x\nDTSTAMP:20261101T000000Z\nDTSTART:20270110T100000Z
SUMMARY:First\nEND:VEVENT\n"""
    two = one.replace("First", "Second").replace("20270110", "20270111")
    head, tail = "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\n", "END:VCALENDAR\n"
    forward = parse(head + one + two + tail)
    backward = parse(head + two + one + tail)
    assert sorted(o.title for o in forward.occurrences) == ["First", "Second"]
    assert {(o.key, o.title) for o in forward.occurrences} == {
        (o.key, o.title) for o in backward.occurrences
    }
    assert any("UID dup@x is used by 2 events" in str(w) for w in forward.warnings)


def test_a_calendar_cut_short_is_a_parse_error():
    text = (FEEDS / "kulturhuset.ics").read_text(encoding="utf-8")
    with pytest.raises(ParseError, match="cut short"):
        parse(text[: len(text) * 9 // 10])
