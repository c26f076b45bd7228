"""schedule.py: one tick asks the store what is due; each source at its own interval, due
times kept by the store across restarts, one run of a source at a time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from aggregator.model import Attempt
from aggregator.schedule import STARTS_PER_TICK, Scheduler
from tests.conftest import FEEDS, fetching, make_settings, source

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

#: the starts of a tick's sources not spread out: a test does not wait
NONE = timedelta(0)


async def rounds(scheduler: Scheduler) -> None:
    """Wait for the rounds the ticks started."""
    await asyncio.gather(*scheduler._rounds)


async def test_one_tick_job_and_the_prune_are_scheduled(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("fast", "/fast.ics"), source("d", "/d.ics")])
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: None)
        await scheduler.start()
        try:
            jobs = {job.id: job for job in scheduler._scheduler.get_jobs()}
            assert set(jobs) == {"tick", "prune-history"}  # not a job per source
            assert jobs["tick"].max_instances == 1
        finally:
            scheduler.shutdown()


async def test_each_source_is_fetched_at_its_interval(store, feed_server, tmp_path, now):
    fast = source(
        "fast",
        feed_server.serve_file("/fast.ics", FEEDS / "floating.ics"),
        refresh_interval=timedelta(minutes=15),
    )
    default = source("default", feed_server.serve_file("/default.ics", FEEDS / "floating.ics"))
    settings = make_settings(tmp_path, [fast, default])
    await store.sync_sources(settings.sources)
    clock = [now]
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(
            store, fetcher, settings, lambda: clock[0], lambda: None, stagger=NONE
        )
        assert sorted(await scheduler.tick()) == ["default", "fast"]
        await rounds(scheduler)
        states = await store.source_states()
        assert states["fast"].next_check_at == now + timedelta(minutes=15)
        assert states["default"].next_check_at == now + timedelta(minutes=30)
        clock[0] = now + timedelta(minutes=15)
        assert await scheduler.tick() == ["fast"]
        await rounds(scheduler)
        clock[0] = now + timedelta(minutes=30)
        assert sorted(await scheduler.tick()) == ["default", "fast"]
        await rounds(scheduler)
    assert sorted(r.path for r in feed_server.requests) == ["/default.ics"] * 2 + ["/fast.ics"] * 3


async def test_a_stored_next_check_survives_a_restart(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("later", "/later.ics")])
    await store.sync_sources(settings.sources)
    due = now + timedelta(minutes=20)
    await store.record_attempt(
        "later", Attempt(at=now, outcome="unchanged", message="same", next_check_at=due)
    )
    clock = [now]
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(
            store, fetcher, settings, lambda: clock[0], lambda: None, stagger=NONE
        )
        assert await scheduler.tick() == []
        clock[0] = due - timedelta(seconds=1)
        assert await scheduler.tick() == []
        clock[0] = due
        assert await scheduler.tick() == ["later"]
        await rounds(scheduler)


async def test_a_restart_starts_a_few_sources_a_tick_the_longest_waiting_first(
    store, tmp_path, now
):
    # a long stop: every source is overdue, the oldest check first
    sources = [source(f"s{n:02}", f"/missing/s{n}.ics") for n in range(STARTS_PER_TICK + 5)]
    settings = make_settings(tmp_path, sources)
    await store.sync_sources(settings.sources)
    for n, s in enumerate(sources):
        at = now - timedelta(hours=1, minutes=n)
        await store.record_attempt(
            s.id, Attempt(at=at, outcome="unchanged", message="same", next_check_at=at)
        )
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: None, stagger=NONE)
        first = await scheduler.tick()
        assert first == [s.id for s in reversed(sources)][:STARTS_PER_TICK]
        await rounds(scheduler)
        assert await scheduler.tick() == [s.id for s in sources[:5]][::-1]
        await rounds(scheduler)


async def test_a_fresh_start_reads_every_source_in_its_first_ticks_in_config_order(
    store, tmp_path, now
):
    count = STARTS_PER_TICK + 5
    sources = [source(f"s{n:02}", f"/missing/s{n}.ics") for n in reversed(range(count))]
    settings = make_settings(tmp_path, sources)
    await store.sync_sources(settings.sources)
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: None, stagger=NONE)
        assert await scheduler.tick() == [s.id for s in sources][:STARTS_PER_TICK]
        await rounds(scheduler)
        assert await scheduler.tick() == [s.id for s in sources][STARTS_PER_TICK:]
        await rounds(scheduler)
    states = await store.source_states()
    assert all(state.last_fetch_at == now for state in states.values())


async def test_a_run_publishes_and_tells_the_web_layer(store, feed_server, tmp_path, now):
    url = feed_server.serve_file("/f.ics", FEEDS / "floating.ics")
    settings = make_settings(tmp_path, [source("f", url)])
    await store.sync_sources(settings.sources)
    published = []
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: published.append(1))
        await scheduler.run_source("f")
        assert published == [1]
        assert len(await store.published_events()) == 3
        await scheduler.run_source("f")  # unchanged: nothing to tell
        assert published == [1]


async def test_every_update_of_a_round_is_published(store, feed_server, tmp_path, now):
    names = ("a", "b", "c")
    sources = [
        source(n, feed_server.serve_file(f"/{n}.ics", FEEDS / "floating.ics")) for n in names
    ]
    settings = make_settings(tmp_path, sources)
    await store.sync_sources(settings.sources)
    published = []
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(
            store, fetcher, settings, lambda: now, lambda: published.append(1), stagger=NONE
        )
        assert await scheduler.tick() == list(names)
        await rounds(scheduler)
    assert published and not await store.publish_owed()
    assert {e.event.source_ids for e in await store.published_events()} == {("a", "b", "c")}


async def test_two_runs_of_one_source_never_overlap(store, feed_server, tmp_path, now):
    url = feed_server.serve_file("/f.ics", FEEDS / "floating.ics")
    settings = make_settings(tmp_path, [source("f", url)])
    await store.sync_sources(settings.sources)
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: None)
        async with scheduler._locks["f"]:  # a run is under way
            assert await scheduler.tick() == []  # a tick leaves it alone
            waiting = asyncio.create_task(scheduler.run_source("f"))
            for _ in range(20):
                await asyncio.sleep(0)  # let the task run as far as it can
            assert not waiting.done() and feed_server.requests == []
        await waiting
        assert len(feed_server.requests) == 1


async def test_a_source_in_backoff_is_not_fetched_before_it_is_due(
    store, feed_server, tmp_path, now
):
    url = feed_server.serve("/down.ics", b"", status=500)
    settings = make_settings(tmp_path, [source("down", url)])
    await store.sync_sources(settings.sources)
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: None)
        await scheduler.run_source("down")
        await scheduler.run_source("down")  # same moment: its next check is later
        assert await scheduler.tick() == []
    assert len(feed_server.requests) == 1 + settings.limits.retries


async def test_a_source_whose_cycle_the_store_cannot_record_waits_its_interval(
    store, feed_server, tmp_path, now, monkeypatch
):
    url = feed_server.serve_file("/a.ics", FEEDS / "floating.ics")
    settings = make_settings(tmp_path, [source("a", url)])
    await store.sync_sources(settings.sources)

    async def broken(update):
        raise OSError("disk full")

    monkeypatch.setattr(store, "apply", broken)
    clock = [now]
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(
            store, fetcher, settings, lambda: clock[0], lambda: None, stagger=NONE
        )
        assert await scheduler.tick() == ["a"]
        await rounds(scheduler)
        # nothing was recorded, so the store still says it is due: not asked again yet
        clock[0] = now + timedelta(seconds=10)
        assert await scheduler.tick() == []
        clock[0] = now + timedelta(minutes=30)
        assert await scheduler.tick() == ["a"]
        await rounds(scheduler)
    assert [r.path for r in feed_server.requests] == ["/a.ics", "/a.ics"]
