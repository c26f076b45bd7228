"""Incremental publishing (issue 15): a publish merges only what the changes since the last
one can reach, and what it publishes is exactly what a merge of the whole network gives.

The property test builds random networks in a real SQLite store and edits them at random
(add, rename, cancel, move, remove, a source leaving, time passing). After each publish the
published events are compared with a full merge of every stored occurrence: the same ids,
the same members, the same content.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator import publish as publish_module
from aggregator import remerge
from aggregator.merge import merge
from aggregator.merge import titles as merge_titles
from aggregator.model import Occurrence, Status
from aggregator.normalise import occurrence_fingerprint, occurrence_key
from aggregator.publish import publish, retained
from aggregator.store import Store
from tests.conftest import make_settings, put_snapshot, source

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
SOURCES = [
    source("a", "/a.ics", "Grøn Omstilling", homepage="https://gron.dk"),
    source("b", "/b.ics", "Klimaforeningen"),
    source("c", "/c.ics", "Sprogskolen"),
    source("d", "/d.ics", "Naboskab"),
]
TITLES = [
    "Klimacafé",
    "Klimacafé hos Grøn Omstilling",
    "Invitation: Klimacafé",
    "Workshop om klima",
    "Workshop",
    "Generalforsamling",
    "Generalforsamling i Klimaforeningen",
    "Sprogcafé for begyndere",
    "Sprogcafé for øvede",
    "Filmaften: Vores klima",
    "Foredrag om naboskab",
    "AFLYST: Klimacafé",
]
PLACES = [
    "",
    "Fælledvej 12, 2200 København N",
    "Fælledhuset, Fælledvej 12, 2200 København N",
    "Vesterbrogade 3, 1620 København V",
]
URLS = [None, "https://gron.dk/events/klimacafe", "https://klima.dk/e/7"]

occurrence_fields = st.fixed_dictionaries(
    {
        "source": st.integers(0, len(SOURCES) - 1),
        "uid": st.integers(0, 9),
        "title": st.sampled_from(TITLES),
        "day": st.sampled_from([0, 1, 2, 3, 9, 10, 20]),
        "minute": st.sampled_from([600, 630, 660, 720, 840, 900]),
        "all_day": st.sampled_from([False] * 5 + [True]),
        "place": st.sampled_from(PLACES),
        "url": st.sampled_from(URLS),
        "status": st.sampled_from([Status.SCHEDULED] * 4 + [Status.CANCELLED, Status.POSTPONED]),
    }
)
edits = st.lists(
    st.one_of(
        st.tuples(st.just("add"), occurrence_fields),
        st.tuples(st.just("rename"), st.integers(0, 99), st.sampled_from(TITLES)),
        st.tuples(st.just("cancel"), st.integers(0, 99)),
        st.tuples(st.just("move"), st.integers(0, 99), st.sampled_from([-3600, 1800, 86400])),
        st.tuples(st.just("remove"), st.integers(0, 99)),
        st.tuples(st.just("leave"), st.integers(0, len(SOURCES) - 1)),
        st.tuples(st.just("time"), st.integers(1, 20)),
    ),
    min_size=1,
    max_size=6,
)


def make(fields: dict) -> Occurrence:
    source_id = SOURCES[fields["source"]].id
    uid = f"event-{fields['uid']}@net.test"
    day = date(2026, 11, 26) + timedelta(days=fields["day"])
    if fields["all_day"]:
        start, end = day, day + timedelta(days=1)
    else:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            minutes=fields["minute"]
        )
        end = start + timedelta(hours=2)
    draft = Occurrence(
        key=occurrence_key(source_id, uid, None),
        source_id=source_id,
        uid=uid,
        recurrence_id=None,
        title=fields["title"],
        start=start,
        end=end,
        all_day=fields["all_day"],
        tzid=None if fields["all_day"] else "Europe/Copenhagen",
        url=fields["url"],
        location=fields["place"],
        status=fields["status"],
    )
    return refreshed(draft)


def refreshed(occurrence: Occurrence) -> Occurrence:
    return replace(occurrence, fingerprint=occurrence_fingerprint(occurrence))


def edited(network: dict[str, Occurrence], edit: tuple) -> dict[str, Occurrence]:
    """The network after one edit (keys in insertion order pick the edited one)."""
    kind, *args = edit
    network = dict(network)
    keys = list(network)
    if kind == "add":
        o = make(args[0])
        network[o.key] = o
    elif keys and kind in ("rename", "cancel", "move", "remove"):
        key = keys[args[0] % len(keys)]
        o = network[key]
        if kind == "rename":
            network[key] = refreshed(replace(o, title=args[1]))
        elif kind == "cancel":
            network[key] = refreshed(replace(o, status=Status.CANCELLED))
        elif kind == "move" and not o.all_day:
            shift = timedelta(seconds=args[1])
            network[key] = refreshed(replace(o, start=o.start + shift, end=o.end + shift))
        elif kind == "remove":
            del network[key]
    return network


@pytest.fixture(scope="module")
def empty_database(tmp_path_factory) -> Path:
    """A migrated empty database, copied for each example (migrating takes a while)."""
    path = tmp_path_factory.mktemp("incremental") / "empty.db"

    async def create() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{path}")
        await store.close()

    asyncio.run(create())
    return path


def timed_network(count: int, day, minute) -> dict[str, Occurrence]:
    """`count` timed occurrences over the sources and titles by turns, the n-th on day
    `day(n)` at minute `minute(n)`."""
    network: dict[str, Occurrence] = {}
    for n in range(count):
        fields = {
            "source": n % len(SOURCES),
            "uid": n,
            "title": TITLES[n % len(TITLES)],
            "day": day(n),
            "minute": minute(n),
            "all_day": False,
            "place": "",
            "url": None,
            "status": Status.SCHEDULED,
        }
        network = edited(network, ("add", fields))
    return network


async def write(store: Store, network: dict[str, Occurrence], sources, now: datetime) -> None:
    for s in sources:
        await put_snapshot(store, s.id, [o for o in network.values() if o.source_id == s.id], now)


async def expected(
    store: Store, settings, now: datetime, known: dict[str, str]
) -> tuple[set, dict]:
    """What a merge of the whole network gives: the events retained as publish retains them,
    and each occurrence's event. No two events share an id."""
    events = merge(await store.load_occurrences(), settings.sources, settings.merging, known)
    assert len({e.id for e in events}) == len(events)
    kept = retained(events, now, timedelta(days=settings.limits.retention_days))
    grouped = {key: e.id for e in events for key in e.members}
    return {(e.id, e.fingerprint) for e in kept}, grouped


async def published(store: Store) -> tuple[set, dict]:
    """The published events (id and fingerprint: what subscribers see), and the event each
    occurrence was merged into, as the store keeps them."""
    events = {(e.event.id, e.event.fingerprint) for e in await store.published_events()}
    grouped = {
        s.occurrence.key: s.event_id
        for s in await store.stored_occurrences(
            keys=[o.key for o in await store.load_occurrences()]
        )
    }
    return events, grouped


async def run_edits(database: Path, initial: list[dict], steps: list[tuple]) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{database}")
    try:
        sources = list(SOURCES)
        settings = make_settings(database.parent, sources)
        await store.sync_sources(sources)
        network = edited({}, ("add", initial[0]))
        for fields in initial[1:]:
            network = edited(network, ("add", fields))
        now = NOW
        await write(store, network, sources, now)
        await publish(store, settings, now)
        assert await published(store) == await expected(store, settings, now, {})  # full
        for step in steps:
            now += timedelta(hours=1)
            if step[0] == "time":
                now += timedelta(days=step[1])
            elif step[0] == "leave" and len(sources) > 1:
                gone = SOURCES[step[1]].id
                sources = [s for s in sources if s.id != gone]
                settings = make_settings(database.parent, sources)
                await store.sync_sources(sources, now=now, allow_removals=True)
            else:
                network = edited(network, step)
                await write(store, network, sources, now)
            known = await store.known_ids()
            await publish(store, settings, now)
            assert await published(store) == await expected(store, settings, now, known)
    finally:
        await store.close()


@pytest.mark.parametrize(("common_share", "part"), [(0.01, 3), (0.08, 1000), (0.3, 7)])
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(initial=st.lists(occurrence_fields, min_size=1, max_size=30), steps=edits)
def test_an_incremental_publish_gives_what_a_full_merge_gives(
    empty_database, tmp_path, common_share, part, initial, steps
):
    database = tmp_path / f"net-{abs(hash((str(initial), str(steps))))}.db"
    shutil.copy(empty_database, database)
    try:
        # a merge of everything in parts of a few occurrences and events: parts meet
        with (
            patch.object(merge_titles, "_COMMON", common_share),
            patch.object(remerge, "PART", part),
            patch.object(remerge, "BATCH", part),
        ):
            asyncio.run(run_edits(database, initial, steps))
    finally:
        database.unlink(missing_ok=True)


async def test_an_edit_merges_only_what_it_can_reach(store, tmp_path):
    """After the first publish, an edit that leaves the configuration alone never merges
    the whole network: the full merge is not called, and few occurrences are merged."""
    settings = make_settings(tmp_path, SOURCES)
    await store.sync_sources(SOURCES)
    network = timed_network(200, day=lambda n: n % 4, minute=lambda n: 600 + 30 * (n % 20))
    await write(store, network, SOURCES, NOW)
    await publish(store, settings, NOW)
    key = next(iter(network))
    network = edited(network, ("rename", 0, "Strandrydning ved Amager"))
    merged = []
    real_merge = remerge.merge

    def counting(items, *args, **kwargs):
        merged.append(len(items))
        return real_merge(items, *args, **kwargs)

    await write(store, network, SOURCES, NOW)
    with (
        patch.object(publish_module, "merge_all", side_effect=AssertionError("full merge")),
        patch.object(remerge, "merge", counting),
    ):
        assert await publish(store, settings, NOW + timedelta(hours=1))
    assert merged and merged[0] < 40
    (event,) = [e for e in await store.published_events() if key in e.event.members]
    assert event.event.title == "Strandrydning ved Amager"


async def test_a_co_host_moving_its_copy_leaves_two_events_both_published(store, tmp_path):
    """Two members list one event (one id); one moves its copy a week on. Both events stay
    in the outputs: the half with the smallest identity keeps the id, the other gets its
    own (before, both claimed the id and the store kept one)."""
    settings = make_settings(tmp_path, SOURCES)
    await store.sync_sources(SOURCES)
    fields = dict(
        uid=1,
        title="Klimacafé",
        day=1,
        minute=900,
        all_day=False,
        place="",
        url=None,
        status=Status.SCHEDULED,
    )
    first, second = make({**fields, "source": 0}), make({**fields, "source": 1, "uid": 2})
    network = {first.key: first, second.key: second}
    await write(store, network, SOURCES, NOW)
    await publish(store, settings, NOW)
    (joined,) = await store.published_events()
    week = timedelta(days=7)
    network[second.key] = refreshed(
        replace(second, start=second.start + week, end=second.end + week)
    )
    await write(store, network, SOURCES, NOW)
    assert await publish(store, settings, NOW + timedelta(hours=1))
    events = {e.event.source_ids: e.event for e in await store.published_events()}
    assert set(events) == {("a",), ("b",)}
    assert events[("a",)].id == joined.event.id
    assert events[("b",)].id != joined.event.id
    assert events[("b",)].start == second.start + week


async def test_a_whole_network_merge_writes_as_it_goes_and_merges_each_occurrence_about_once(
    store, tmp_path
):
    """A merge of everything in parts writes an event once no later part can reach it:
    events of the first weeks are written before the last part is read, and the
    occurrences merged in all come to little more than the network (before, every
    occurrence was merged twice: once to group, once to write)."""
    settings = make_settings(tmp_path, SOURCES)
    await store.sync_sources(SOURCES)
    # 40 days, three occurrences a day
    network = timed_network(120, day=lambda n: n // 3, minute=lambda n: 600 + 60 * (n % 3))
    await write(store, network, SOURCES, NOW)
    merged: list[int] = []
    parts_read: list[int] = []
    written_before_last_part: list[int] = []
    real_merge, real_write_all = remerge.merge, remerge._write_all
    real_in_order = store.occurrences_in_order

    def counting(items, *args, **kwargs):
        merged.append(len(items))
        return real_merge(items, *args, **kwargs)

    async def in_order(after, limit):
        part = await real_in_order(after, limit)
        parts_read.append(len(part))
        return part

    async def write_all(write_, events):
        if parts_read and parts_read[-1]:  # a part is still being merged
            written_before_last_part.append(len(events))
        return await real_write_all(write_, events)

    with (
        patch.object(remerge, "PART", 12),
        patch.object(remerge, "merge", counting),
        patch.object(remerge, "_write_all", write_all),
        patch.object(store, "occurrences_in_order", in_order),
    ):
        assert await publish(store, settings, NOW)
    assert sum(written_before_last_part) >= 60
    assert sum(merged) <= 1.5 * len(network)
    published = {e.event.id: e.event.fingerprint for e in await store.published_events()}
    full = merge(list(network.values()), SOURCES, settings.merging, {})
    assert sorted(published.values()) == sorted(e.fingerprint for e in full)
