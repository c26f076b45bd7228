"""The event lifecycle end to end: versions of a member's feed on a real local server, an
injected clock, a fresh process (store and app) for every step, and what subscribers get:
the stored changes, /calendar.ics and the Atom change feed. DESIGN.md rules 3, 4, 5, 7, 8."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import feedparser
import icalendar
import pytest
from lxml import etree

from aggregator.refresh import refresh_all
from aggregator.store import Store
from aggregator.web import make_app
from tests.conftest import fetching, ical_js, make_settings, source

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

CPH = ZoneInfo("Europe/Copenhagen")
T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)


def vevent(uid, title, start, hours=2, status=None, extra=""):
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20261101T000000Z",
        f"DTSTART;TZID=Europe/Copenhagen:{start:%Y%m%dT%H%M%S}",
        f"DTEND;TZID=Europe/Copenhagen:{start + timedelta(hours=hours):%Y%m%dT%H%M%S}",
        f"SUMMARY:{title}",
    ]
    if status:
        lines.append(f"STATUS:{status}")
    if extra:
        lines.append(extra)
    return "\r\n".join(lines + ["END:VEVENT"]) + "\r\n"


def calendar(*events, method=None):
    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//member//EN\r\n"
    if method:
        head += f"METHOD:{method}\r\n"
    return head + "".join(events) + "END:VCALENDAR\r\n"


JAN = datetime(2027, 1, 14, 19, tzinfo=CPH)
FEB = datetime(2027, 2, 11, 19, tzinfo=CPH)
BASE = [vevent("talk@m", "Foredrag", JAN), vevent("walk@m", "Naturvandring", FEB)]


class Network:
    """One member feed, stepped through versions; every step is a fresh process."""

    def __init__(self, feed_server, tmp_path, aiohttp_client):
        self.feed_server = feed_server
        self.client_factory = aiohttp_client
        self.url = feed_server.serve("/m.ics", calendar(*BASE))
        self.settings = make_settings(tmp_path, [source("m", self.url, name="Medlem")])
        self.tmp_path = tmp_path

    async def step(self, body: str | None, when: datetime, status: int = 200) -> dict:
        if body is not None:
            self.feed_server.serve("/m.ics", body, status=status)
        store = await Store.open(self.settings.database_url)
        try:
            async with fetching(self.settings) as fetcher:
                await refresh_all(store, fetcher, self.settings, when)
        finally:
            await store.close()
        return await self.outputs(when)

    async def outputs(self, when: datetime) -> dict:
        client = await self.client_factory(
            make_app(self.settings, clock=lambda: when, scheduler=False)
        )
        try:
            result = {}
            for policy in ("status", "prefix", "hide"):
                response = await client.get(f"/calendar.ics?cancelled={policy}")
                result[policy] = await response.read()
            result["atom"] = await (await client.get("/feed.atom")).read()
            result["json"] = await (await client.get("/events.json")).json()
            return result
        finally:
            await client.close()


def events(data: bytes) -> dict[str, icalendar.Event]:
    parsed = icalendar.Calendar.from_ical(data).walk("VEVENT")
    return {str(e["SUMMARY"]).split(": ", 1)[-1]: e for e in parsed}


def atom_titles(data: bytes) -> list[str]:
    feed = feedparser.parse(data)
    assert not feed.bozo
    return [entry.title for entry in feed.entries]


async def test_cancel_by_status_reaches_every_client(feed_server, tmp_path, aiohttp_client):
    net = Network(feed_server, tmp_path, aiohttp_client)
    first = await net.step(None, T0)
    cancelled = calendar(vevent("talk@m", "Foredrag", JAN, status="CANCELLED"), BASE[1])
    out = await net.step(cancelled, T0 + timedelta(hours=1))
    talk = events(out["status"])["Foredrag"]
    assert talk["STATUS"] == "CANCELLED"
    assert str(talk["SUMMARY"]) == "Aflyst / Cancelled: Foredrag"
    assert talk["SEQUENCE"] == 1
    assert events(first["status"])["Foredrag"]["SEQUENCE"] == 0
    assert events(out["status"])["Naturvandring"]["SEQUENCE"] == 0  # untouched
    # Google: no STATUS:CANCELLED, only the title says it
    prefixed = events(out["prefix"])["Foredrag"]
    assert prefixed["STATUS"] == "CONFIRMED"
    assert str(prefixed["SUMMARY"]).startswith("Aflyst / Cancelled:")
    assert "Foredrag" not in events(out["hide"])
    assert atom_titles(out["atom"])[0] == "Aflyst / Cancelled: Foredrag"
    # ical.js (Thunderbird) reads it too
    for policy, expect in (("status", ["CANCELLED"]), ("prefix", [])):
        path = tmp_path / f"{policy}.ics"
        path.write_bytes(out[policy])
        seen = [e["status"] for e in ical_js(path)["events"] if e["status"] == "CANCELLED"]
        assert seen == expect, policy


async def test_method_cancel_and_title_markers_cancel(feed_server, tmp_path, aiohttp_client):
    net = Network(feed_server, tmp_path, aiohttp_client)
    await net.step(None, T0)
    marked = calendar(vevent("talk@m", "Aflyst: Foredrag", JAN), BASE[1])
    out = await net.step(marked, T0 + timedelta(hours=1))
    assert events(out["status"])["Foredrag"]["STATUS"] == "CANCELLED"
    method = calendar(vevent("walk@m", "Naturvandring", FEB), method="CANCEL")
    out = await net.step(method, T0 + timedelta(hours=2))
    assert events(out["status"])["Naturvandring"]["STATUS"] == "CANCELLED"


async def test_an_exdate_cancels_the_occurrence_at_once(feed_server, tmp_path, aiohttp_client):
    net = Network(feed_server, tmp_path, aiohttp_client)
    weekly = "RRULE:FREQ=WEEKLY;COUNT=3"
    await net.step(calendar(vevent("club@m", "Klubaften", JAN, extra=weekly)), T0)
    skipped = weekly + "\r\nEXDATE;TZID=Europe/Copenhagen:20270121T190000"
    out = await net.step(
        calendar(vevent("club@m", "Klubaften", JAN, extra=skipped)), T0 + timedelta(hours=1)
    )
    statuses = sorted(
        (e["DTSTART"].dt.isoformat(), str(e["STATUS"]))
        for e in icalendar.Calendar.from_ical(out["status"]).walk("VEVENT")
    )
    assert statuses == [
        ("2027-01-14T19:00:00+01:00", "CONFIRMED"),
        ("2027-01-21T19:00:00+01:00", "CANCELLED"),
        ("2027-01-28T19:00:00+01:00", "CONFIRMED"),
    ]


async def test_vanishing_is_confirmed_on_the_second_fetch_only(
    feed_server, tmp_path, aiohttp_client
):
    net = Network(feed_server, tmp_path, aiohttp_client)
    first = await net.step(None, T0)
    only_walk = calendar(BASE[1])
    pending = await net.step(only_walk, T0 + timedelta(hours=1))
    assert pending["status"] == first["status"]  # not yet: one fetch is no proof
    failed = await net.step("oops", T0 + timedelta(hours=2), status=500)
    assert failed["status"] == first["status"]  # a failed fetch confirms nothing
    out = await net.step(only_walk, T0 + timedelta(hours=3))
    talk = events(out["status"])["Foredrag"]
    assert talk["STATUS"] == "CANCELLED" and talk["SEQUENCE"] == 1
    assert "fjernet af arrangøren / removed by the organiser" in str(talk["DESCRIPTION"])
    assert atom_titles(out["atom"])[0].startswith("Aflyst / Cancelled: Foredrag (fjernet")


async def test_past_events_that_vanish_are_not_cancelled(feed_server, tmp_path, aiohttp_client):
    net = Network(feed_server, tmp_path, aiohttp_client)
    await net.step(None, T0)
    after_talk = JAN.astimezone(UTC) + timedelta(days=1)
    for hours in (0, 1):
        out = await net.step(calendar(BASE[1]), after_talk + timedelta(hours=hours))
    assert events(out["status"])["Foredrag"]["STATUS"] == "CONFIRMED"


async def test_postponed_is_shown_as_postponed(feed_server, tmp_path, aiohttp_client):
    net = Network(feed_server, tmp_path, aiohttp_client)
    await net.step(None, T0)
    out = await net.step(
        calendar(vevent("talk@m", "Udsat: Foredrag", JAN), BASE[1]), T0 + timedelta(hours=1)
    )
    talk = events(out["status"])["Foredrag"]
    assert str(talk["SUMMARY"]) == "Udsat / Postponed: Foredrag"
    assert talk["STATUS"] == "CANCELLED"
    (item,) = [e for e in out["json"]["events"] if e["title"] == "Foredrag"]
    assert item["eventStatus"] == "https://schema.org/EventPostponed"


async def test_a_moved_event_moves_and_says_from_where(feed_server, tmp_path, aiohttp_client):
    net = Network(feed_server, tmp_path, aiohttp_client)
    first = await net.step(None, T0)
    moved = calendar(vevent("talk@m", "Foredrag", JAN + timedelta(days=7)), BASE[1])
    out = await net.step(moved, T0 + timedelta(hours=1))
    talk = events(out["status"])["Foredrag"]
    assert talk["UID"] == events(first["status"])["Foredrag"]["UID"]
    assert talk["SEQUENCE"] == 1
    assert talk["DTSTART"].dt == JAN + timedelta(days=7)
    assert "Flyttet fra / Moved from Thu 14 Jan 19:00" in str(talk["DESCRIPTION"])
    assert atom_titles(out["atom"])[0] == (
        "Flyttet / Moved: Foredrag fra/from Thu 14 Jan 19:00 til/to Thu 21 Jan 19:00"
    )
    (item,) = [e for e in out["json"]["events"] if e["title"] == "Foredrag"]
    assert item["eventStatus"] == "https://schema.org/EventRescheduled"
    assert item["previousStartDate"] == "2027-01-14T18:00:00Z"
    assert [h["kind"] for h in item["history"]] == ["added", "rescheduled"]


async def test_delete_and_recreate_keeps_the_network_id(feed_server, tmp_path, aiohttp_client):
    net = Network(feed_server, tmp_path, aiohttp_client)
    first = await net.step(None, T0)
    recreated = calendar(vevent("talk-NEW@m", "Foredrag", JAN + timedelta(days=3)), BASE[1])
    out = await net.step(recreated, T0 + timedelta(hours=1))
    assert len(events(out["status"])) == 2
    talk = events(out["status"])["Foredrag"]
    assert talk["UID"] == events(first["status"])["Foredrag"]["UID"]
    assert talk["STATUS"] == "CONFIRMED" and talk["SEQUENCE"] == 1


async def test_a_cancelled_event_listed_again_is_restored(feed_server, tmp_path, aiohttp_client):
    net = Network(feed_server, tmp_path, aiohttp_client)
    await net.step(None, T0)
    cancelled = calendar(vevent("talk@m", "Foredrag", JAN, status="CANCELLED"), BASE[1])
    await net.step(cancelled, T0 + timedelta(hours=1))
    out = await net.step(calendar(*BASE), T0 + timedelta(hours=2))
    talk = events(out["status"])["Foredrag"]
    assert talk["STATUS"] == "CONFIRMED" and talk["SEQUENCE"] == 2
    assert str(talk["SUMMARY"]) == "Foredrag"
    assert atom_titles(out["atom"])[0] == "Genoptaget / Restored: Foredrag"


async def test_cancelled_events_leave_after_the_retention_time(
    feed_server, tmp_path, aiohttp_client
):
    net = Network(feed_server, tmp_path, aiohttp_client)
    cancelled = calendar(vevent("talk@m", "Foredrag", JAN, status="CANCELLED"), BASE[1])
    out = await net.step(cancelled, T0)
    assert "Foredrag" in events(out["status"])
    within = JAN.astimezone(UTC) + timedelta(days=29)
    assert "Foredrag" in events((await net.step(None, within))["status"])
    beyond = JAN.astimezone(UTC) + timedelta(days=31)
    assert "Foredrag" not in events((await net.step(None, beyond))["status"])


async def test_nothing_changed_means_the_same_bytes_across_restarts(
    feed_server, tmp_path, aiohttp_client
):
    net = Network(feed_server, tmp_path, aiohttp_client)
    first = await net.step(None, T0)
    for hours in (1, 30, 60):  # new days too: read in full again, nothing visible changes
        again = await net.step(None, T0 + timedelta(hours=hours))
        assert again["status"] == first["status"] and again["atom"] == first["atom"]


async def test_uids_that_change_on_every_fetch_change_nothing(
    feed_server, tmp_path, aiohttp_client
):
    def version(n: int) -> str:
        return calendar(
            *(
                vevent(f"o365-{n}-{i}@m", title, JAN + timedelta(days=7 * i))
                for i, title in enumerate(("Møde", "Workshop", "Café", "Loppemarked"))
            )
        )

    net = Network(feed_server, tmp_path, aiohttp_client)
    first = await net.step(version(1), T0)
    for n in (2, 3, 4):
        out = await net.step(version(n), T0 + timedelta(hours=n))
        assert out["status"] == first["status"], n
    store = await Store.open(net.settings.database_url)
    state = await store.source_state("m")
    await store.close()
    assert state.unstable_uids
    assert any("UIDs change on every fetch" in str(w) for w in state.warnings)


async def test_sequence_rises_with_every_visible_change_only(feed_server, tmp_path, aiohttp_client):
    net = Network(feed_server, tmp_path, aiohttp_client)
    talk = lambda **kw: vevent("talk@m", kw.pop("title", "Foredrag"), kw.pop("at", JAN), **kw)  # noqa: E731
    versions = [
        calendar(talk(), BASE[1]),
        calendar(talk(), BASE[1]),  # nothing changed
        calendar(talk(status="CANCELLED"), BASE[1]),
        calendar(talk(), BASE[1]),  # restored
        calendar(talk(at=JAN + timedelta(hours=1)), BASE[1]),  # moved
        calendar(talk(title="Foredrag om klima", at=JAN + timedelta(hours=1)), BASE[1]),
        calendar(talk(title="Foredrag om klima", at=JAN + timedelta(hours=1)), BASE[1]),
    ]
    sequences = []
    for n, body in enumerate(versions):
        out = await net.step(body, T0 + timedelta(hours=n))
        (event,) = [
            e
            for e in icalendar.Calendar.from_ical(out["status"]).walk("VEVENT")
            if "Foredrag" in str(e["SUMMARY"])
        ]
        sequences.append(int(event["SEQUENCE"]))
    assert sequences == [0, 0, 1, 2, 3, 4, 4]


async def test_the_change_feed_has_what_rfc_4287_requires(feed_server, tmp_path, aiohttp_client):
    net = Network(feed_server, tmp_path, aiohttp_client)
    await net.step(None, T0)
    out = await net.step(
        calendar(vevent("talk@m", "Foredrag", JAN, status="CANCELLED"), BASE[1]),
        T0 + timedelta(hours=1),
    )
    ns = {"a": "http://www.w3.org/2005/Atom"}
    feed = etree.fromstring(out["atom"])
    for required in ("a:id", "a:title", "a:updated", "a:author/a:name"):
        assert feed.find(required, ns) is not None, required
    assert feed.find("a:link[@rel='self']", ns) is not None
    entries = feed.findall("a:entry", ns)
    assert len(entries) == 3  # two added, one cancelled
    for entry in entries:
        for required in ("a:id", "a:title", "a:updated", "a:link"):
            assert entry.find(required, ns) is not None, required
        assert entry.find("a:link", ns).get("rel", "alternate") == "alternate"  # RFC 4287 4.2.7.2
    ids = [e.find("a:id", ns).text for e in entries]
    assert len(set(ids)) == len(ids)
    updated = [e.find("a:updated", ns).text for e in entries]
    assert updated == sorted(updated, reverse=True)  # newest change first
    assert not feedparser.parse(out["atom"]).bozo
    again = await net.outputs(T0 + timedelta(hours=5))
    assert again["atom"] == out["atom"]  # stable entry ids and bytes after a restart
