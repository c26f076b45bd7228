"""Publishing and rendering: rule 8 (clients update; nothing changed -> identical bytes)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import feedparser
import icalendar

from aggregator.publish import publish
from aggregator.render.atom import render_atom
from aggregator.render.ics import render_calendar
from aggregator.render.json import render_json
from tests.conftest import make_settings, put_snapshot, source
from tests.test_merge import occ


async def stored(store, tmp_path, now, *occurrences):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics"), source("beta", "/b.ics")])
    await store.sync_sources(settings.sources)
    for source_id in ("alpha", "beta"):
        mine = [o for o in occurrences if o.source_id == source_id]
        await put_snapshot(store, source_id, mine, now)
    return settings


def vevents(data: bytes) -> dict[str, icalendar.Event]:
    return {str(e["SUMMARY"]): e for e in icalendar.Calendar.from_ical(data).walk("VEVENT")}


async def test_a_new_event_starts_at_sequence_zero(store, tmp_path, now):
    settings = await stored(store, tmp_path, now, occ("alpha", "u@x", "Workshop"))
    assert await publish(store, settings, now)
    (event,) = await store.published_events()
    assert (event.sequence, event.created, event.last_modified) == (0, now, now)


async def test_nothing_changed_gives_identical_bytes_and_no_new_version(store, tmp_path, now):
    settings = await stored(store, tmp_path, now, occ("alpha", "u@x"), occ("beta", "v@x", "Talk"))
    await publish(store, settings, now)
    first = render_calendar(await store.published_events(), settings.network)
    assert not await publish(store, settings, now + timedelta(hours=5))
    second = render_calendar(await store.published_events(), settings.network)
    assert first == second


async def test_a_change_bumps_sequence_and_last_modified(store, tmp_path, now):
    settings = await stored(
        store, tmp_path, now, occ("alpha", "u@x", "Workshop"), occ("beta", "v@x", "Talk")
    )
    await publish(store, settings, now)
    later = now + timedelta(hours=3)
    await stored(
        store,
        tmp_path,
        later,
        occ("alpha", "u@x", "Workshop (new room)"),
        occ("beta", "v@x", "Talk"),
    )
    assert await publish(store, settings, later)
    events = vevents(render_calendar(await store.published_events(), settings.network))
    changed, untouched = events["Workshop (new room)"], events["Talk"]
    assert changed["SEQUENCE"] == 1
    assert changed["LAST-MODIFIED"].dt == later and changed["DTSTAMP"].dt == later
    assert changed["CREATED"].dt == now
    assert untouched["SEQUENCE"] == 0 and untouched["DTSTAMP"].dt == now


async def test_an_organiser_joining_is_a_change_subscribers_see(store, tmp_path, now):
    settings = await stored(store, tmp_path, now, occ("alpha", "u@x"))
    await publish(store, settings, now)
    await stored(store, tmp_path, now, occ("alpha", "u@x"), occ("beta", "u@x"))
    assert await publish(store, settings, now + timedelta(hours=1))
    (event,) = await store.published_events()
    assert event.sequence == 1 and event.event.organisers == ("Alpha", "Beta")
    assert b"Alpha\\, Beta" in event.ics


async def test_the_calendar_names_itself_and_its_refresh_interval(store, tmp_path, now):
    settings = await stored(store, tmp_path, now, occ("alpha", "u@x"))
    await publish(store, settings, now)
    calendar = icalendar.Calendar.from_ical(
        render_calendar(await store.published_events(), settings.network)
    )
    assert calendar["NAME"] == calendar["X-WR-CALNAME"] == "Testnetværket"
    assert calendar["DESCRIPTION"] == calendar["X-WR-CALDESC"] == "Test network"
    assert calendar["REFRESH-INTERVAL"].dt == timedelta(minutes=30)
    assert str(calendar["X-PUBLISHED-TTL"]) == "PT30M"
    assert calendar["PRODID"].startswith("-//Network event aggregator//")


async def test_one_vtimezone_per_tzid_used(store, tmp_path, now):
    new_york = replace(occ("beta", "ny@x", "New York"), tzid="America/New_York")
    all_day = replace(
        occ("alpha", "day@x", "Day"),
        all_day=True,
        start=date(2027, 3, 1),
        end=date(2027, 3, 2),
        tzid=None,
    )
    settings = await stored(store, tmp_path, now, occ("alpha", "u@x"), new_york, all_day)
    await publish(store, settings, now)
    data = render_calendar(await store.published_events(), settings.network)
    calendar = icalendar.Calendar.from_ical(data)
    assert sorted(str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")) == [
        "America/New_York",
        "Europe/Copenhagen",
    ]
    events = vevents(data)
    assert events["New York"]["DTSTART"].params["TZID"] == "America/New_York"
    assert events["New York"]["DTSTART"].dt == occ("beta", "ny@x").start
    assert events["Day"]["DTSTART"].dt == date(2027, 3, 1)
    assert b"DTSTART;VALUE=DATE:20270301" in data


async def test_atom_and_json_are_valid_and_stable(store, tmp_path, now):
    settings = await stored(store, tmp_path, now, occ("alpha", "u@x", "Older"))
    await publish(store, settings, now)
    await stored(
        store,
        tmp_path,
        now,
        occ("alpha", "u@x", "Older"),
        occ("beta", "v@x", "Newer", start=occ("beta", "v").start + timedelta(days=2)),
    )
    await publish(store, settings, now + timedelta(hours=1))
    events = await store.published_events()
    changes = await store.recent_changes()
    atom = render_atom(changes, settings.network)
    assert atom == render_atom(await store.recent_changes(), settings.network)
    parsed = feedparser.parse(atom)
    assert not parsed.bozo
    assert [e.title for e in parsed.entries] == ["Ny / New: Newer", "Ny / New: Older"]
    assert render_json(events, settings.network) == render_json(events, settings.network)
