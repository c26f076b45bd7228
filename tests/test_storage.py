"""Lean storage (issue 15): each long text once, counted by the rows that name it and
forgotten when none does; what is packed reads back as it was written."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from aggregator.merge import merge
from aggregator.model import Occurrence
from aggregator.normalise import iso, occurrence_fingerprint
from aggregator.publish import publish
from aggregator.render.ics import render_vevent
from aggregator.store import Store
from aggregator.store import texts as stored_texts
from aggregator.store.occurrences import _occurrence_row
from aggregator.store.packing import pack_event, pack_text, unpack_event, unpack_text
from aggregator.store.schema import UTCDateTime
from aggregator.versioning import event_change
from tests.conftest import database_url, make_settings, put_snapshot, source
from tests.test_merge import occ
from tests.test_store import migrate

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

LONG = "Kom og vær med; alle er velkomne, også nye.\nTilmelding: kontakt@x.dk\\ " * 20
OTHER = "Et andet arrangement, med en anden tekst.\n" * 30


def described(o: Occurrence, description: str, days: int = 0) -> Occurrence:
    """The occurrence with this description, `days` later."""
    moved = timedelta(days=days)
    draft = replace(o, description=description, start=o.start + moved, end=o.end + moved)
    return replace(draft, fingerprint=occurrence_fingerprint(draft))


async def texts_kept(store) -> dict[str, int]:
    """Each stored text and how many rows name it, after checking that the count the
    triggers keep is the rows that name it."""
    async with store.engine.connect() as conn:
        named = {}
        for table, column in (
            ("occurrences", "text_id"),
            ("events", "text_id"),
            ("changes", "before_text"),
            ("changes", "after_text"),
        ):
            query = f"select {column}, count(*) from {table} where {column} is not null group by 1"
            for key, n in await conn.execute(text(query)):
                named[key] = named.get(key, 0) + n
        rows = (await conn.execute(text("select id, refs, body from texts"))).all()
    assert {r.id: r.refs for r in rows if r.refs} == named
    return {unpack_text(r.body): r.refs for r in rows}


async def sources(store, tmp_path, *ids: str):
    """These sources configured and stored."""
    settings = make_settings(tmp_path, [source(i, f"/{i}.ics") for i in ids])
    await store.sync_sources(settings.sources)
    return settings


async def test_a_series_long_text_is_kept_once(store, tmp_path, now):
    settings = await sources(store, tmp_path, "alpha")
    series = [
        described(
            occ("alpha", "s@x", "Kor", recurrence_id=f"2027020{d}"),
            LONG,
            days=d,
        )
        for d in range(1, 4)
    ]
    await put_snapshot(store, "alpha", [*series, occ("alpha", "plain@x", "Uden tekst")], now)
    await publish(store, settings, now)
    # the occurrences, their events and the events' history name the one text
    assert await texts_kept(store) == {LONG: 9}
    loaded = {o.recurrence_id: o.description for o in await store.load_occurrences()}
    assert loaded == {"20270201": LONG, "20270202": LONG, "20270203": LONG, None: ""}
    events = {e.event.title: e for e in await store.published_events()}
    assert events["Kor"].event.description == LONG and events["Uden tekst"].event.description == ""
    assert b"Kom og v\xc3\xa6r med\\; alle" in events["Kor"].ics


async def test_a_text_no_row_names_is_forgotten_at_the_next_write(store, tmp_path, now):
    await sources(store, tmp_path, "alpha")
    first = described(occ("alpha", "u@x"), LONG)
    await put_snapshot(store, "alpha", [first], now)
    assert await texts_kept(store) == {LONG: 1}
    await put_snapshot(store, "alpha", [described(first, OTHER)], now)
    assert await texts_kept(store) == {OTHER: 1}
    await put_snapshot(store, "alpha", [], now)
    assert await texts_kept(store) == {}


async def test_occurrences_swapping_their_texts_keep_both(store, tmp_path, now):
    await sources(store, tmp_path, "alpha")
    one, two = occ("alpha", "1@x", "En"), occ("alpha", "2@x", "To")
    await put_snapshot(store, "alpha", [described(one, LONG), described(two, OTHER)], now)
    # within one write a text is let go by one row and taken by the next
    await put_snapshot(store, "alpha", [described(one, OTHER), described(two, LONG)], now)
    loaded = {o.title: o.description for o in await store.load_occurrences()}
    assert loaded == {"En": OTHER, "To": LONG}
    assert await texts_kept(store) == {LONG: 1, OTHER: 1}


async def test_the_texts_of_a_deleted_source_go_with_the_next_write(store, tmp_path, now):
    settings = await sources(store, tmp_path, "alpha", "gamma")
    await put_snapshot(store, "gamma", [described(occ("gamma", "g@x"), OTHER)], now)
    await store.sync_sources(settings.sources[:1], now=now)
    await store.delete_removed_sources(settings.sources[:1])
    # the triggers counted the rows the deletion took, whoever deleted them
    assert await texts_kept(store) == {OTHER: 0}
    await put_snapshot(store, "alpha", [described(occ("alpha", "a@x"), LONG)], now)
    assert await texts_kept(store) == {LONG: 1}


async def test_texts_with_the_same_hash_are_both_kept(store, tmp_path, now, monkeypatch):
    monkeypatch.setattr(stored_texts, "text_key", lambda _text: 7)
    await sources(store, tmp_path, "alpha")
    one = described(occ("alpha", "1@x", "En"), LONG)
    two = described(occ("alpha", "2@x", "To"), OTHER)
    await put_snapshot(store, "alpha", [one], now)
    await put_snapshot(store, "alpha", [one, two], now)
    loaded = {o.title: o.description for o in await store.load_occurrences()}
    assert loaded == {"En": LONG, "To": OTHER}
    assert await texts_kept(store) == {LONG: 1, OTHER: 1}


async def test_the_history_shows_each_summary_as_it_was_made(store, tmp_path, now):
    settings = await sources(store, tmp_path, "alpha")
    first = described(occ("alpha", "u@x"), LONG)
    await put_snapshot(store, "alpha", [first], now)
    await publish(store, settings, now)
    (old,) = await store.published_events()
    later = now + timedelta(hours=1)
    await put_snapshot(store, "alpha", [described(first, OTHER)], later)
    await publish(store, settings, later)
    (new,) = await store.published_events()
    added, updated = (await store.event_history())[new.event.id]
    _, _, made = event_change(None, old.event)
    assert list(added.after.items()) == list(made.items()) and added.before is None
    _, before, after = event_change(old.event, new.event)
    assert list(updated.before.items()) == list(before.items())
    assert list(updated.after.items()) == list(after.items())
    assert (updated.before["description"], updated.after["description"]) == (LONG, OTHER)
    assert [c.after for c in await store.recent_changes()] == [after, made]


@given(
    fields=st.dictionaries(st.text(max_size=8), st.text() | st.integers() | st.none()),
    ics=st.binary(max_size=3000),
    description=st.text(max_size=5000),
    event_id=st.text(max_size=30),
)
def test_an_event_packed_reads_back_as_it_was(fields, ics, description, event_id):
    data, packed = pack_event(event_id, fields, ics, description)
    assert unpack_event(event_id, data, packed, description) == (fields, ics)


@given(st.text(max_size=5000))
def test_a_text_packed_reads_back_as_it_was(value):
    assert unpack_text(pack_text(value)) == value


# -- a database made by version 0009 -------------------------------------------------------


def tables_0009() -> dict[str, sa.TableClause]:
    """The tables this test fills as version 0009 has them, with the types it wrote."""

    def table(name: str, *columns) -> sa.TableClause:
        return sa.table(
            name, *(sa.column(*c) if isinstance(c, tuple) else sa.column(c) for c in columns)
        )

    when = ("created", "last_modified", "unpublished_at", "expires_at")
    return {
        "sources": table(
            "sources",
            "id",
            "url",
            "failures_in_row",
            "occurrence_count",
            ("warnings", sa.JSON),
            "pending_removals",
            ("unstable_uids", sa.Boolean),
        ),
        "occurrences": table("occurrences", *OCCURRENCE_COLUMNS),
        "events": table(
            "events",
            "id",
            "fingerprint",
            "sequence",
            "start",
            ("data", sa.JSON),
            "ics",
            *((c, UTCDateTime) for c in when),
        ),
        "changes": table(
            "changes",
            "id",
            "event_id",
            ("at", UTCDateTime),
            "kind",
            "title",
            ("before", sa.JSON),
            ("after", sa.JSON),
        ),
        "identities": table("identities", "identity", "event_id"),
    }


OCCURRENCE_COLUMNS = (
    "key",
    "source_id",
    "uid",
    "recurrence_id",
    "title",
    "start",
    "end",
    ("all_day", sa.Boolean),
    "tzid",
    "description",
    "url",
    "location",
    "status",
    ("categories", sa.JSON),
    "sequence",
    "fingerprint",
    "origin",
    "identity",
    "missing_since",
    "removed_at",
    "row_hash",
)


def rows_0009(settings, now) -> tuple[list[Occurrence], dict[str, list[dict]]]:
    """A source's occurrences (a series with a long text, one without), their events and
    history, as version 0009 stored them."""
    series = [
        described(occ("old", "s@x", "Kor", recurrence_id=f"2027020{d}"), LONG, days=d)
        for d in (1, 2)
    ]
    kept = sorted([*series, occ("old", "plain@x", "Uden tekst")], key=lambda o: o.key)
    merged = merge(kept, settings.sources)
    first = next(e for e in merged if e.description)
    edited = replace(first, description=OTHER)
    history = [(None, e) for e in merged] + [(first, edited)]
    source_row = {
        "id": "old",
        "url": "/old.ics",
        "failures_in_row": 0,
        "occurrence_count": 3,
        "warnings": [],
        "pending_removals": 0,
        "unstable_uids": False,
    }
    rows = {
        "sources": [source_row],
        "occurrences": [{**_occurrence_row(o), "row_hash": "0123456789abcdef"} for o in kept],
        "events": [event_row_0009(e, settings, now) for e in merged],
        "changes": [
            change_row_0009(n + 1, old, new, now + timedelta(minutes=n))
            for n, (old, new) in enumerate(history)
        ],
        "identities": [{"identity": i, "event_id": e.id} for e in merged for i in e.identities],
    }
    return kept, rows


def event_row_0009(event, settings, now) -> dict:
    fields = {
        **asdict(event),
        "start": iso(event.start),
        "end": iso(event.end),
        "status": event.status.value,
        "previous_start": None,
    }
    return {
        "id": event.id,
        "fingerprint": event.fingerprint,
        "sequence": 0,
        "start": iso(event.start),
        "data": json.loads(json.dumps(fields)),
        "ics": render_vevent(event, 0, now, now, settings.network),
        "created": now,
        "last_modified": now,
        "unpublished_at": None,
        "expires_at": None,
    }


def change_row_0009(number: int, old, new, at) -> dict:
    kind, before, after = event_change(old, new)
    return {
        "id": number,
        "event_id": new.id,
        "at": at,
        "kind": kind.value,
        "title": new.title,
        "before": before,
        "after": after,
    }


async def database_0009(tmp_path, now):
    """A database of version 0009 with rows_0009; its settings, occurrences and rows."""
    settings = make_settings(tmp_path, [source("old", "/old.ics")])
    settings = replace(settings, database_url=database_url(tmp_path, "old", empty=True))
    kept, rows = rows_0009(settings, now)
    engine = create_async_engine(settings.database_url)
    async with engine.begin() as conn:
        await conn.run_sync(migrate, "upgrade", "0009")
        for name, table in tables_0009().items():
            await conn.execute(sa.insert(table), rows[name])
    await engine.dispose()
    return settings, kept, rows


async def test_a_database_made_by_version_0009_keeps_its_texts_events_and_history(tmp_path, now):
    settings, kept, rows = await database_0009(tmp_path, now)
    store = await Store.open(settings.database_url)
    assert await store.load_occurrences("old") == kept
    published = {e.event.id: e for e in await store.published_events()}
    for row in rows["events"]:
        item = published[row["id"]]
        assert item.ics == row["ics"] and (item.created, item.last_modified) == (now, now)
        assert item.event.description == row["data"]["description"]
        assert item.event.identities == tuple(row["data"]["identities"])
    history = [c for changes in (await store.event_history()).values() for c in changes]
    assert [(c.id, c.at, c.kind.value, c.title) for c in sorted(history, key=lambda c: c.id)] == [
        (r["id"], r["at"], r["kind"], r["title"]) for r in rows["changes"]
    ]
    for change, row in zip(sorted(history, key=lambda c: c.id), rows["changes"], strict=True):
        assert list(change.after.items()) == list(row["after"].items())
        assert change.before == row["before"]
    assert await store.known_ids() == {r["identity"]: r["event_id"] for r in rows["identities"]}
    # the series' text once: two occurrences, their events, added summaries, and the
    # summary before the update
    assert await texts_kept(store) == {LONG: 7, OTHER: 1}
    await store.close()


async def test_going_back_to_0009_gives_the_rows_it_had(tmp_path, now):
    settings, _kept, rows = await database_0009(tmp_path, now)
    await (await Store.open(settings.database_url)).close()
    engine = create_async_engine(settings.database_url)
    async with engine.begin() as conn:
        await conn.run_sync(migrate, "downgrade", "0009")
        for name, table in tables_0009().items():
            found = (await conn.execute(sa.select(table))).mappings().all()
            # repr: the JSON's keys in their order too (the history shows them so)
            assert sorted(map(repr, map(dict, found))) == sorted(map(repr, rows[name])), name
    await engine.dispose()
