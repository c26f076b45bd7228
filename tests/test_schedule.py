"""schedule.py: one job per source, due times from the store, one run of a source at a time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aggregator.schedule import Scheduler, jitter_of
from tests.conftest import FEEDS, fetching, make_settings, source


async def test_each_source_gets_a_job_at_its_interval(store, tmp_path, now):
    settings = make_settings(
        tmp_path,
        [
            source("fast", "/fast.ics", refresh_interval=timedelta(minutes=15)),
            source("default", "/default.ics"),
        ],
    )
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: None)
        await scheduler.start()
        try:
            jobs = {job.id: job for job in scheduler._scheduler.get_jobs()}
            assert set(jobs) == {"fast", "default", "prune-history"}
            assert jobs["fast"].trigger.interval == timedelta(minutes=15)
            assert jobs["default"].trigger.interval == timedelta(minutes=30)
            assert jobs["fast"].max_instances == 1
        finally:
            scheduler.shutdown()


async def test_a_stored_next_check_survives_a_restart(store, tmp_path, now):
    from aggregator.model import Attempt

    settings = make_settings(tmp_path, [source("later", "/later.ics")])
    await store.sync_sources(settings.sources)
    due = now + timedelta(minutes=20)
    await store.record_attempt(
        "later", Attempt(at=now, outcome="unchanged", message="same", next_check_at=due)
    )
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: None)
        await scheduler.start()
        try:
            assert scheduler._scheduler.get_job("later").next_run_time == due
        finally:
            scheduler.shutdown()


def test_jitter_is_a_tenth_of_the_interval_capped_at_five_minutes():
    assert jitter_of(timedelta(minutes=30)) == 180
    assert jitter_of(timedelta(hours=6)) == 300


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


async def test_two_runs_of_one_source_never_overlap(store, feed_server, tmp_path, now):
    url = feed_server.serve_file("/f.ics", FEEDS / "floating.ics")
    settings = make_settings(tmp_path, [source("f", url)])
    await store.sync_sources(settings.sources)
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: None)
        async with scheduler._locks["f"]:  # a run is under way
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
    assert len(feed_server.requests) == 1 + settings.limits.retries
