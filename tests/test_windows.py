"""windows.py: the window a query asks for and the cursor of a page, at the calendar's edges
(issue 25). Every value a visitor can send is a window or a ValueError naming the parameter:
never an OverflowError, which the web layer would answer with a 500."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from multidict import MultiDict

from aggregator.windows import (
    EARLIEST,
    LATEST,
    MAX_DAYS,
    asked_window,
    decode_cursor,
    encode_cursor,
)

TODAY = date(2026, 11, 25)
#: the zones furthest ahead of and behind UTC, and one with a local mean time before 1900
ZONES = [ZoneInfo(z) for z in ("Pacific/Kiritimati", "Etc/GMT+12", "Europe/Copenhagen")]


def window(tz=UTC, **query: str):
    return asked_window(MultiDict(query), TODAY, tz)


def cursor_of(micros: int | str, event_id: str = "e1") -> str:
    return base64.urlsafe_b64encode(f"{micros}|{event_id}".encode()).decode().rstrip("=")


def micros_at(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@pytest.mark.parametrize("tz", ZONES, ids=str)
def test_the_first_and_last_days_make_a_window_in_every_zone(tz):
    first = window(tz, **{"from": str(EARLIEST), "to": str(EARLIEST)})
    last = window(tz, **{"from": str(LATEST), "days": "1"})
    assert first.start.date() == EARLIEST and last.end.date() == LATEST + timedelta(days=1)
    # the cache key converts to UTC: it must not overflow either
    assert first.query().startswith("from=1899") or first.query().startswith("from=1900")
    assert last.query().endswith("Z") and window(tz, to=str(LATEST)).query().endswith("Z")


@pytest.mark.parametrize("name", ["from", "to"])
@pytest.mark.parametrize(
    "day", ["0001-01-01", "1899-12-31", "3000-01-01", "9999-12-31"], ids=lambda d: d[:4]
)
def test_a_day_outside_the_years_a_window_may_hold_is_refused_by_name(name, day):
    with pytest.raises(ValueError, match=f"^{name}='{day}': give a date from 1900-01-01 to"):
        window(**{name: day})


@pytest.mark.parametrize("days", ["1", "10", str(MAX_DAYS)])
def test_days_from_the_last_years_end_is_refused_by_name_not_overflowed(days):
    with pytest.raises(ValueError, match=r"^from='9999-12-31'"):
        window(**{"from": "9999-12-31", "days": days})
    if days != "1":
        with pytest.raises(ValueError, match=rf"^days={days}: .*after {LATEST}"):
            window(**{"from": str(LATEST), "days": days})


def test_days_may_reach_the_last_day_but_not_beyond():
    start = LATEST - timedelta(days=9)
    assert window(**{"from": str(start), "days": "10"}).end.date() == LATEST + timedelta(days=1)
    with pytest.raises(ValueError, match="^days=11"):
        window(**{"from": str(start), "days": "11"})


@pytest.mark.parametrize(
    "micros",
    [10**30, -(10**30), 10**18, -(10**18), "9" * 5000, micros_at(datetime(1, 1, 1, tzinfo=UTC))],
    ids=["huge", "huge-negative", "year-33658", "year-minus", "5000-digits", "year-1"],
)
def test_a_cursor_with_a_number_out_of_range_is_not_one_of_ours(micros):
    with pytest.raises(ValueError, match="^cursor=.*not a cursor this server gave"):
        decode_cursor(cursor_of(micros))


def test_a_cursor_just_outside_the_years_is_refused_and_just_inside_is_read_back():
    for moment in (
        datetime.combine(EARLIEST, datetime.min.time(), UTC),
        datetime(2999, 12, 31, 23, 59, tzinfo=UTC),
    ):
        assert decode_cursor(encode_cursor(moment, "e1")) == (moment, "e1")
    for moment in (datetime(1899, 12, 31, 23, 59, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC)):
        with pytest.raises(ValueError, match="not a cursor this server gave"):
            decode_cursor(encode_cursor(moment, "e1"))
