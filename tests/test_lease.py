"""The scheduler's lease (store/lease.py, and lease.py's Candidate) on each database: one
holder at a time, a successor within the lease, and a holder that loses its lease stops its
work; and the news of a publish (store/lease.py's Listener)."""

from __future__ import annotations

import asyncio
import time

from aggregator.lease import Candidate
from aggregator.store import Store
from aggregator.store.base import _bump_version
from aggregator.store.lease import FileLease, Listener, PostgresLease, lease_for
from tests.postgres import Database

LEASE = 1.5


def work(name: str, log: list[str]):
    """What a candidate starts: notes when it starts and stops."""

    async def start():
        log.append(f"{name} started")

        async def stop() -> None:
            log.append(f"{name} stopped")

        return stop

    return start


async def until(check, seconds: float) -> float:
    """Seconds until `check()` is true (fails after `seconds`)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "not within the lease"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_one_candidate_leads_and_the_next_takes_over_within_the_lease(database, tmp_path):
    url = database.url(tmp_path)
    await (await Store.open(url)).close()
    assert isinstance(
        lease_for(url, LEASE), PostgresLease if database.kind == "postgresql" else FileLease
    )
    log: list[str] = []
    first = Candidate(lease_for(url, LEASE), LEASE, work("first", log))
    second = Candidate(lease_for(url, LEASE), LEASE, work("second", log))
    assert await first.try_lead() and first.leading
    assert not await second.try_lead() and not second.leading
    second.run()
    first.run()
    await first.stop()
    waited = await until(lambda: second.leading, LEASE + 1)
    assert waited <= LEASE
    assert log == ["first started", "first stopped", "second started"]
    await second.stop()
    assert log[-1] == "second stopped"


async def test_a_lease_is_for_one_holder_while_its_work_runs(database, tmp_path):
    url = database.url(tmp_path)
    await (await Store.open(url)).close()
    holder, other = lease_for(url, LEASE), lease_for(url, LEASE)
    async with holder.turn() as ours:
        assert ours and await holder.held()
        async with other.turn() as theirs:
            assert not theirs
    async with other.turn() as theirs:  # let go after the turn
        assert theirs


async def test_a_holder_whose_session_ends_stops_fetching(postgres_server, tmp_path):
    """PostgreSQL ends the holder's session (a network cut, an operator): the holder finds
    its lease gone at its next look and stops its work; the lock is free for another.
    (SQLite's lock ends only with its process.)"""
    database = Database("postgresql", postgres_server)
    url = database.url(tmp_path)
    log: list[str] = []
    holder = Candidate(lease_for(url, LEASE), LEASE, work("holder", log))
    assert await holder.try_lead()
    holder.run()
    name = url.rsplit("/", 1)[1]
    admin = await postgres_server.connect(name)
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'aggregator scheduler lease'"
        )
        assert ended == 1
    finally:
        await admin.close()
    waited = await until(lambda: not holder.leading, LEASE + 1)
    assert waited <= LEASE / 3 + 0.5
    assert log == ["holder started", "holder stopped"]
    async with lease_for(url, LEASE).turn() as ours:
        assert ours
    await holder.stop()
    database.drop()


async def test_a_publish_is_told_to_a_listener_at_its_commit_and_again_after_a_lost_session(
    postgres_server, tmp_path
):
    """NOTIFY on PostgreSQL: a listener hears the version's change when its transaction
    commits (not before), and one whose session was ended listens again and looks."""
    database = Database("postgresql", postgres_server)
    url = database.url(tmp_path)
    store = await Store.open(url)
    told = asyncio.Queue()
    listener = Listener(url, lambda: told.put_nowait(time.monotonic()))
    listener.run()
    try:
        await asyncio.wait_for(told.get(), 10)  # on listening: a look at what came before
        admin = await postgres_server.connect(url.rsplit("/", 1)[1])
        try:
            async with store._writing() as conn:
                await _bump_version(conn)
                # a marker told by another session meanwhile arrives alone: the version's
                # change, not committed yet, was not told before it
                await admin.execute("NOTIFY aggregator_published, 'marker'")
                await asyncio.wait_for(told.get(), 5)
                assert told.empty()
            await asyncio.wait_for(told.get(), 5)  # the commit's
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
            )
        finally:
            await admin.close()
        await asyncio.wait_for(told.get(), 10)  # listening again, it looks
        async with store._writing() as conn:
            await _bump_version(conn)
        await asyncio.wait_for(told.get(), 5)
    finally:
        await listener.stop()
        await store.close()
        database.drop()
