"""Rule 12, config changes lose nothing: a source taken out of sources.yaml is unpublished
but kept `limits.removed_source_days`, comes back with its ids, and a configuration that
takes out most sources at once (a missing config mount) is refused."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import icalendar
import pytest
from sqlalchemy import text

from aggregator.cli import main
from aggregator.errors import RemovalRefused
from aggregator.refresh import refresh_all
from aggregator.render.atom import render_atom
from aggregator.render.ics import render_calendar
from aggregator.render.json import render_json
from aggregator.schedule import Scheduler
from tests.conftest import fetching, make_settings, source
from tests.test_cli import write_config

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")


def calendar(name: str, count: int, title: str = "Møde") -> bytes:
    """A member's feed: `count` events in 2027, each with its own UID, on days and at hours
    no other member's share (so none merge)."""
    day = 1 + sum(map(ord, name)) % 28
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:{name}-{n}@members.example\r\nDTSTAMP:20261120T100000Z\r\n"
        f"DTSTART:2027{1 + n:02d}{day:02d}T170000Z\r\nDTEND:2027{1 + n:02d}{day:02d}T190000Z\r\n"
        f"SUMMARY:{title} {n} hos {name}\r\nEND:VEVENT\r\n"
        for n in range(count)
    )
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" + events + "END:VCALENDAR\r\n"
    ).encode()


async def outputs(store, settings) -> dict[str, bytes]:
    events = await store.published_events()
    return {
        "calendar.ics": render_calendar(events, settings.network),
        "events.json": render_json(events, settings.network, await store.event_history()),
        "feed.atom": render_atom(await store.recent_changes(), settings.network),
    }


def versions(calendar_bytes: bytes) -> dict[str, tuple[str, int]]:
    """Summary -> (UID, SEQUENCE) of every VEVENT in a published calendar."""
    return {
        str(e["SUMMARY"]): (str(e["UID"]), int(e.get("SEQUENCE", 0)))
        for e in icalendar.Calendar.from_ical(calendar_bytes).walk("VEVENT")
    }


async def rows(store, table: str, source_id: str) -> int:
    async with store.engine.connect() as conn:
        query = text(f"select count(*) from {table} where source_id = :id")  # noqa: S608
        return (await conn.execute(query, {"id": source_id})).scalar()


@pytest.fixture
async def network(store, feed_server, tmp_path, now):
    """Three members, read and published once."""
    members = [source(name, feed_server.serve(f"/{name}.ics", calendar(name, 4))) for name in "abc"]
    settings = make_settings(tmp_path, members)
    async with fetching(settings) as fetcher:
        await refresh_all(store, fetcher, settings, now)
        yield settings, fetcher


async def test_a_source_taken_out_leaves_every_output_but_its_data_is_kept(store, network, now):
    settings, fetcher = network
    before = await outputs(store, settings)
    assert b"hos c" in before["calendar.ics"] and b"hos c" in before["feed.atom"]
    without_c = replace(settings, sources=settings.sources[:2])
    _, changed = await refresh_all(store, fetcher, without_c, now + timedelta(hours=1))
    assert changed
    after = await outputs(store, without_c)
    for name, data in after.items():
        assert b"hos c" not in data, name
        assert b"hos a" in data and b"hos b" in data, name
    assert {o.source_id for o in await store.load_occurrences()} == {"a", "b"}
    assert (await store.counts())["sources"] == 2
    # kept: occurrences, fetch history, and the ids its events were published under
    assert await rows(store, "occurrences", "c") == 4
    assert await rows(store, "fetches", "c") == 1
    assert len(await store.known_ids()) == 12


async def test_a_source_put_back_returns_with_its_ids_and_a_sequence_that_never_goes_down(
    store, network, feed_server, now
):
    settings, fetcher = network
    # c changes once, so its events are at SEQUENCE 1 when it leaves
    feed_server.serve("/c.ics", calendar("c", 4, title="Flyttet møde"))
    await refresh_all(store, fetcher, settings, now + timedelta(hours=1))
    published = versions((await outputs(store, settings))["calendar.ics"])
    of_c = {title: v for title, v in published.items() if "hos c" in title}
    assert len(of_c) == 4 and {seq for _, seq in of_c.values()} == {1}

    without_c = replace(settings, sources=settings.sources[:2])
    await refresh_all(store, fetcher, without_c, now + timedelta(hours=2))
    assert not any("hos c" in t for t in versions((await outputs(store, settings))["calendar.ics"]))

    _, changed = await refresh_all(store, fetcher, settings, now + timedelta(hours=3))
    assert changed
    back = versions((await outputs(store, settings))["calendar.ics"])
    for title, (uid, sequence) in of_c.items():
        assert back[title][0] == uid
        assert back[title][1] >= sequence
    # the others were never touched
    assert {t: v for t, v in back.items() if "hos c" not in t} == {
        t: v for t, v in published.items() if "hos c" not in t
    }


async def test_a_source_put_back_unchanged_is_published_again_without_being_read_anew(
    store, network, feed_server, now
):
    settings, fetcher = network
    await refresh_all(store, fetcher, replace(settings, sources=settings.sources[1:]), now)
    assert not any(e.event.source_ids == ("a",) for e in await store.published_events())
    reports, changed = await refresh_all(store, fetcher, settings, now)
    assert {r.source_id: r.outcome for r in reports}["a"] in ("unchanged", "not modified")
    assert changed
    assert sum(e.event.source_ids == ("a",) for e in await store.published_events()) == 4


async def test_a_removed_source_is_deleted_after_removed_source_days(store, network, now):
    settings, fetcher = network
    await refresh_all(store, fetcher, replace(settings, sources=settings.sources[:2]), now)
    await store.prune_history(now + timedelta(days=29), removed_source_days=30)
    assert await rows(store, "occurrences", "c") == 4
    await store.prune_history(now + timedelta(days=31), removed_source_days=30)
    for table in ("occurrences", "fetches", "pages"):
        assert await rows(store, table, "c") == 0, table
    assert "c" not in await store.source_states()
    assert len(await store.known_ids()) == 8
    async with store.engine.connect() as conn:
        assert (await conn.execute(text("select count(*) from events"))).scalar() == 8


async def test_a_config_that_takes_out_most_sources_is_refused_and_changes_nothing(
    store, network, tmp_path, now
):
    settings, fetcher = network
    before = await outputs(store, settings)
    # a missing config mount: the demo's sources in place of the network's
    demo = replace(settings, sources=(source("demo", "/demo.ics"), settings.sources[0]))
    with pytest.raises(RemovalRefused) as refused:
        await refresh_all(store, fetcher, demo, now + timedelta(hours=1))
    words = str(refused.value)
    assert "2 of the 3" in words and "b, c" in words and "--allow-removals" in words
    assert await outputs(store, settings) == before
    assert set(await store.source_states()) == {"a", "b", "c"}
    assert len(await store.load_occurrences()) == 12


async def test_taking_out_exactly_half_is_not_refused(store, tmp_path, now):
    await store.sync_sources([source(n, f"/{n}.ics") for n in "abcd"], now=now)
    assert await store.sync_sources([source(n, f"/{n}.ics") for n in "ab"], now=now)


async def test_allow_removals_takes_out_most_sources(store, network, now):
    settings, fetcher = network
    only_a = replace(settings, sources=settings.sources[:1], allow_removals=True)
    _, changed = await refresh_all(store, fetcher, only_a, now)
    assert changed
    assert {e.event.source_ids for e in await store.published_events()} == {("a",)}


async def test_the_scheduler_start_honours_allow_removals(store, network, now):
    settings, fetcher = network
    only_a = replace(settings, sources=settings.sources[:1])
    refused = Scheduler(store, fetcher, only_a, lambda: now, lambda: None)
    with pytest.raises(RemovalRefused):
        await refused.start()
    allowed = Scheduler(
        store, fetcher, replace(only_a, allow_removals=True), lambda: now, lambda: None
    )
    await allowed.start()
    allowed.shutdown()
    assert set(await store.source_states()) == {"a", "b", "c"}  # kept, not deleted
    assert (await store.counts())["sources"] == 1


# -- the command line --------------------------------------------------------------------


@pytest.fixture
def cli_database(tmp_path, monkeypatch) -> Path:
    """A SQLite file the command line uses (the tests read it with sqlite3)."""
    path = tmp_path / "cli.db"
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", f"sqlite:///{path}")
    return path


def members(tmp_path, names: str) -> str:
    for name in names:
        feed = tmp_path / f"{name}.ics"
        if not feed.exists():
            feed.write_bytes(calendar(name, 3))
    return "".join(
        f"\n  - id: {name}\n    name: {name.upper()}\n    url: {tmp_path / f'{name}.ics'}"
        for name in names
    )


def export(config, out) -> dict[str, bytes]:
    assert main(["export", "--config", str(config), "--out", str(out)]) == 0
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_refresh_refuses_a_config_without_most_sources_with_exit_code_2(
    tmp_path, cli_database, capsys
):
    full = write_config(tmp_path, members(tmp_path, "abcde"))
    assert main(["refresh", "--config", str(full)]) == 0
    before = export(full, tmp_path / "before")
    capsys.readouterr()
    (tmp_path / "other").mkdir()
    demo = write_config(tmp_path / "other", members(tmp_path, "xa"))
    assert main(["refresh", "--config", str(demo)]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "4 of the 5" in err and "b, c, d, e" in err
    assert "--allow-removals" in err
    assert export(full, tmp_path / "after") == before

    assert main(["refresh", "--config", str(demo), "--allow-removals"]) == 0
    calendar_ics = export(demo, tmp_path / "allowed")["calendar.ics"]
    assert b"hos x" in calendar_ics and b"hos a" in calendar_ics and b"hos b" not in calendar_ics


def test_prune_deletes_what_is_kept_of_removed_sources_and_says_what(
    tmp_path, cli_database, capsys
):
    config = write_config(tmp_path, members(tmp_path, "abc"))
    assert main(["refresh", "--config", str(config)]) == 0
    assert main(["prune", "--config", str(config)]) == 0
    assert "nothing to delete" in capsys.readouterr().out

    smaller = write_config(tmp_path, members(tmp_path, "ab"))
    assert main(["refresh", "--config", str(smaller)]) == 0
    capsys.readouterr()
    assert main(["prune", "--config", str(smaller)]) == 0
    out = capsys.readouterr().out
    assert "deleted c: 3 occurrences, 1 fetches, 3 events" in out
    assert "deleted 1 sources" in out
    with sqlite3.connect(cli_database) as db:
        query = "select count(*) from occurrences where source_id = 'c'"
        assert db.execute(query).fetchone() == (0,)


def test_prune_takes_out_a_source_still_published_and_its_events_leave(
    tmp_path, cli_database, capsys
):
    config = write_config(tmp_path, members(tmp_path, "abc"))
    assert main(["refresh", "--config", str(config)]) == 0
    smaller = write_config(tmp_path, members(tmp_path, "ab"))
    assert main(["prune", "--config", str(smaller)]) == 0
    assert "deleted c: 3 occurrences" in capsys.readouterr().out
    assert b"hos c" not in export(smaller, tmp_path / "site")["calendar.ics"]


def test_prune_refuses_to_take_out_most_sources_without_allow_removals(
    tmp_path, cli_database, capsys
):
    config = write_config(tmp_path, members(tmp_path, "abc"))
    assert main(["refresh", "--config", str(config)]) == 0
    only_a = write_config(tmp_path, members(tmp_path, "a"))
    assert main(["prune", "--config", str(only_a)]) == 2
    assert "refused" in capsys.readouterr().err
    assert main(["prune", "--config", str(only_a), "--allow-removals"]) == 0
    assert "deleted 2 sources" in capsys.readouterr().out
