"""schedule.py's pace: how many sources a tick starts follows the network, so that every
source starts within its interval, the starts of a tick spread over it."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

import pytest

from aggregator import schedule
from aggregator.model import Attempt, FetchOutcome
from aggregator.refresh import SourceReport
from aggregator.schedule import STARTS_PER_TICK, TICK, Scheduler, starts_per_tick
from tests.conftest import fetching, make_settings, source

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")

#: the starts of a tick's sources not spread out: a test does not wait
NONE = timedelta(0)


def network(tmp_path, count: int, interval: timedelta):
    sources = [source(f"s{n:03}", f"/s{n}.ics", refresh_interval=interval) for n in range(count)]
    return make_settings(tmp_path, sources)


def test_a_small_network_starts_twenty_a_tick_and_a_large_one_what_it_needs(tmp_path):
    assert starts_per_tick(network(tmp_path, 25, timedelta(minutes=30))) == STARTS_PER_TICK
    # 1,000 sources every 5 minutes come due 33.3 a tick: 20 a tick would never catch up
    needed = starts_per_tick(network(tmp_path, 1000, timedelta(minutes=5)))
    assert needed >= math.ceil(1000 * TICK / timedelta(minutes=5))
    assert needed < 1000 / 10  # still spread over the interval's thirty ticks


async def test_every_source_of_a_fast_network_starts_within_its_interval(
    store, tmp_path, now, monkeypatch
):
    interval = timedelta(minutes=1)
    settings = network(tmp_path, 200, interval)  # 33.3 come due every tick of 10 s
    await store.sync_sources(settings.sources)

    async def read(store, fetcher, source, settings, at, current):
        """A fetch that says 'not modified': the source is due again in its interval."""
        attempt = Attempt(
            at=at, outcome=FetchOutcome.NOT_MODIFIED, message="same", next_check_at=at + interval
        )
        await store.record_attempt(source.id, attempt)
        return SourceReport(source.id, FetchOutcome.NOT_MODIFIED)

    monkeypatch.setattr(schedule, "refresh_source", read)
    clock = [now]
    starts: dict[str, list] = {s.id: [] for s in settings.sources}
    async with fetching(settings) as fetcher:
        scheduler = Scheduler(
            store, fetcher, settings, lambda: clock[0], lambda: None, stagger=NONE
        )
        assert scheduler.starts_per_tick > STARTS_PER_TICK
        for n in range(3 * int(interval / TICK)):  # three intervals, a tick at a time
            clock[0] = now + n * TICK
            started = await scheduler.tick()
            assert len(started) <= scheduler.starts_per_tick < len(settings.sources)
            await asyncio.gather(*scheduler._rounds)
            for source_id in started:
                starts[source_id].append(clock[0])
    for source_id, times in starts.items():
        # never fetched: each started in the first interval, then each time it came due
        assert times[0] < now + interval, source_id
        assert [b - a for a, b in zip(times, times[1:], strict=False)] == [interval] * (
            len(times) - 1
        ), source_id
        assert len(times) == 3, source_id


async def test_the_starts_of_a_tick_spread_over_it(store, tmp_path, now, monkeypatch):
    settings = network(tmp_path, 80, timedelta(minutes=1))
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    async with fetching(settings) as fetcher:
        scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: None)
        ran: list[str] = []

        async def run(source_id: str) -> None:
            ran.append(source_id)

        monkeypatch.setattr(scheduler, "_run", run)
        monkeypatch.setattr(schedule.asyncio, "sleep", sleep)
        ids = [s.id for s in settings.sources[: scheduler.starts_per_tick]]
        await scheduler._round(ids)
    assert sorted(ran) == sorted(ids)
    gap = TICK.total_seconds() / len(ids)  # closer than STAGGER: they all fit in the tick
    assert sorted(waits) == [n * gap for n in range(len(ids))]
    assert max(waits) < TICK.total_seconds()
