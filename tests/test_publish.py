"""Publishing and rendering: rule 8 (clients update; nothing changed -> identical bytes)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import feedparser
import icalendar
import pytest

from aggregator.merge import merge
from aggregator.model import ChangeKind
from aggregator.publish import publish
from aggregator.render.atom import render_atom
from aggregator.render.ics import render_calendar
from aggregator.render.json import render_json
from aggregator.versioning import prepare_publication
from tests.conftest import make_settings, put_snapshot, source
from tests.test_merge import occ

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")


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


# -- what the store writes: an event that cannot be rendered, and a publish owed ------------
# (moved from tests/test_store.py, where they called the old Store.publish(merged, render, ...))


def render_but(broken: str):
    """A render_event that cannot render the event titled `broken` (returns None)."""

    def render(item, sequence, created, last_modified):
        if item.title == broken:
            return None
        return f"{item.title} {sequence}".encode()

    return render


async def merged_now(store, settings):
    return merge(await store.load_occurrences(), settings.sources, settings.merging, {})


async def write(store, merged, render, now) -> bool:
    """Store.write_publication with the versioning step and `render`, render key "k"."""

    async def plan(known):
        return prepare_publication(merged, known, render, "k", now)

    return await store.write_publication(plan)


async def test_an_event_that_cannot_be_rendered_is_skipped_and_the_others_published(
    store, tmp_path, now
):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    await store.sync_sources(settings.sources)
    later = now + timedelta(hours=1)
    await put_snapshot(
        store,
        "alpha",
        [occ("alpha", "u@x", "Kept"), occ("alpha", "v@x", "Other", start=now + timedelta(days=3))],
        now,
    )
    assert await write(store, await merged_now(store, settings), render_but(""), now)
    before = {e.event.title: e for e in await store.published_events()}

    # Kept changes but can no longer be rendered; New cannot be rendered from the start
    await put_snapshot(
        store,
        "alpha",
        [
            occ("alpha", "u@x", "Kept, changed"),
            occ("alpha", "v@x", "Other, changed", start=now + timedelta(days=3)),
            occ("alpha", "w@x", "New", start=now + timedelta(days=9)),
        ],
        later,
    )
    merged = await merged_now(store, settings)
    broken = {"Kept, changed", "New"}

    def render(item, sequence, created, last_modified):
        return None if item.title in broken else f"{item.title} {sequence}".encode()

    assert await write(store, merged, render, later)
    after = {e.event.id: e for e in await store.published_events()}
    kept = before["Kept"]
    # its previous version stays as it was: not gone, not changed
    assert after[kept.event.id] == kept
    assert after[before["Other"].event.id].ics == b"Other, changed 1"
    assert len(after) == 2  # New was not inserted
    assert not any(c.title == "New" for c in await store.recent_changes())


async def test_a_write_owes_a_publish_until_a_publish_that_read_it(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    await store.sync_sources(settings.sources)  # a new source: owed
    assert await store.publish_owed()
    await write(store, await merged_now(store, settings), render_but(""), now)
    assert not await store.publish_owed()
    await put_snapshot(store, "alpha", [occ("alpha", "u@x")], now)
    assert await store.publish_owed()
    merged = await merged_now(store, settings)
    # a write between the publish's read and its write is still owed afterwards
    await put_snapshot(store, "alpha", [occ("alpha", "u@x", "Changed")], now)
    await write(store, merged, render_but(""), now)
    assert await store.publish_owed()
    await write(store, await merged_now(store, settings), render_but(""), now)
    assert not await store.publish_owed()


async def test_an_event_no_longer_merged_leaves_and_comes_back_with_its_sequence(
    store, tmp_path, now
):
    settings = await stored(store, tmp_path, now, occ("alpha", "u@x"), occ("beta", "v@x", "Talk"))
    await publish(store, settings, now)
    await stored(store, tmp_path, now, occ("alpha", "u@x"))
    assert await publish(store, settings, now + timedelta(hours=1))
    assert [e.event.title for e in await store.published_events()] == ["Workshop"]
    await stored(store, tmp_path, now, occ("alpha", "u@x"), occ("beta", "v@x", "Talk"))
    assert await publish(store, settings, now + timedelta(hours=2))
    talk = next(e for e in await store.published_events() if e.event.title == "Talk")
    assert (talk.sequence, talk.created) == (1, now)
    kinds = [c.kind for c in await store.recent_changes() if c.title == "Talk"]
    assert kinds == [ChangeKind.ADDED, ChangeKind.ADDED]
