"""The scheduler's lease (store/lease.py, and lease.py's Candidate) on each database: one
holder at a time, a successor within the lease, and a holder that loses its lease stops its
work, told at once where the database can tell; a deposed holder that has not noticed yet
writes nothing (the fencing token); and the news of a publish (store/lease.py's
Listener)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from aggregator.errors import Deposed
from aggregator.lease import Candidate
from aggregator.model import Publication
from aggregator.publish import publish
from aggregator.schedule import Scheduler
from aggregator.store import Store
from aggregator.store.base import _bump_version
from aggregator.store.lease import FileLease, Listener, PostgresLease, lease_for
from tests.conftest import FEEDS, fetching, make_settings, put_snapshot, source
from tests.postgres import Database
from tests.test_merge import occ

LEASE = 1.5
#: a lease whose holder looks only every 10 s: what it does sooner it was told
LONG_LEASE = 30.0


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


# -- SQLite: the lock is the database file's own ----------------------------------------


def sqlite_file(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


async def test_deleting_the_lock_files_beside_a_sqlite_database_frees_no_second_lease(tmp_path):
    url = Database("sqlite").url(tmp_path)
    await (await Store.open(url)).close()
    holder, other = lease_for(url, LEASE), lease_for(url, LEASE)
    assert await holder.acquire()
    for beside in tmp_path.glob("*.lock"):  # what an operator or a cleaner may delete
        beside.unlink()
    assert not await other.acquire()
    assert await holder.held()
    await holder.release()
    assert await other.acquire()


async def test_a_sqlite_holder_whose_database_file_is_replaced_holds_its_lease_no_more(tmp_path):
    url = Database("sqlite").url(tmp_path)
    await (await Store.open(url)).close()
    path = sqlite_file(url)
    holder, other = lease_for(url, LEASE), lease_for(url, LEASE)
    assert await holder.acquire()
    shutil.copyfile(path, tmp_path / "restored.db")
    os.replace(tmp_path / "restored.db", path)  # a backup put back in its place
    assert not await holder.held()
    assert await other.acquire()  # the file the path names now was never locked
    assert not await holder.acquire()


def posix_locks(path: Path) -> list[tuple[str, ...]]:
    """This process's POSIX (fcntl) locks on the file, as the kernel lists them: kind, mode
    and byte range (not the line's number, which other processes' locks move)."""
    inode = str(path.stat().st_ino)
    with open("/proc/locks") as locks:
        fields = [line.split(":", 1)[1].split() for line in locks]
    return [
        (f[0], f[2], f[5], f[6])
        for f in fields
        if f[0] == "POSIX" and f[3] == str(os.getpid()) and f[4].rsplit(":", 1)[1] == inode
    ]


async def test_the_sqlite_lease_leaves_sqlite_its_own_locks_and_its_writes(tmp_path):
    """The lease's descriptor on the database file is unlocked, never closed: a close would
    drop the shared lock SQLite's WAL connection holds on the file (POSIX locks are the
    process's)."""
    url = Database("sqlite").url(tmp_path)
    store = await Store.open(url)
    try:
        await store.sync_sources([source("alpha", "/a.ics")])
        held = posix_locks(sqlite_file(url))
        assert held  # SQLite's, while its connection is open
        holder, other = lease_for(url, LEASE), lease_for(url, LEASE)
        assert await holder.acquire() and not await other.acquire()
        await store.sync_sources([source("alpha", "/a.ics"), source("beta", "/b.ics")])
        await holder.release()
        assert await other.acquire()
        await other.release()
        assert posix_locks(sqlite_file(url)) == held
        assert set(await store.source_states()) == {"alpha", "beta"}
    finally:
        await store.close()


# -- PostgreSQL: the holder is told at once that its session ended ----------------------


async def test_a_holder_told_its_session_ended_stops_at_once_and_never_beside_another(
    postgres_server, tmp_path
):
    """The holder looks only every 10 s, but asyncpg tells it when the session of its lease
    ends: it stops its work then; the next leads only after."""
    database = Database("postgresql", postgres_server)
    url = database.url(tmp_path)
    log: list[str] = []
    stopped, took_over = asyncio.Event(), asyncio.Event()
    candidates: dict[str, Candidate] = {}
    beside: list[str] = []  # a start while the other led

    def watched(name: str, told: asyncio.Event):
        async def start():
            beside.extend(n for n, c in candidates.items() if n != name and c.leading)
            log.append(f"{name} started")
            if name == "successor":
                told.set()

            async def stop() -> None:
                log.append(f"{name} stopped")
                if name == "holder":
                    told.set()

            return stop

        return start

    holder = Candidate(lease_for(url, LONG_LEASE), LONG_LEASE, watched("holder", stopped))
    successor = Candidate(lease_for(url, LEASE), LEASE, watched("successor", took_over))
    candidates.update(holder=holder, successor=successor)
    try:
        assert await holder.try_lead()
        holder.run()
        assert not await successor.try_lead()
        admin = await postgres_server.connect(url.rsplit("/", 1)[1])
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'aggregator scheduler lease'"
                " AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
            )
        finally:
            await admin.close()
        await asyncio.wait_for(stopped.wait(), 3)  # not at its next look, 10 s on
        assert not holder.leading
        successor.run()
        await asyncio.wait_for(took_over.wait(), LEASE + 2)
        assert successor.leading and not holder.leading
        assert beside == []
        assert log == ["holder started", "holder stopped", "successor started"]
    finally:
        await successor.stop()
        await holder.stop()
        database.drop()


# -- fencing: a deposed leader writes nothing --------------------------------------------


async def test_a_deposed_leader_writes_nothing_and_its_successor_writes(database, tmp_path, now):
    """A leader that lost its lease without noticing (its lock gone, its session ended)
    publishes and records nothing once another took the lease: its token is older."""
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    url = settings.database_url
    deposed_store, leader_store = await Store.open(url), await Store.open(url)
    deposed_lease = lease_for(url, LEASE)
    tokens: list[int | None] = []

    def work(store: Store):
        async def start():
            tokens.append(store.fence)  # taken before the work starts, whose writes it fences
            await store.sync_sources(settings.sources, now=now)

            async def stop() -> None:
                pass

            return stop

        return start

    deposed = Candidate(deposed_lease, LEASE, work(deposed_store), store=deposed_store)
    leader = Candidate(lease_for(url, LEASE), LEASE, work(leader_store), store=leader_store)
    try:
        assert await deposed.try_lead()
        await put_snapshot(deposed_store, "alpha", [occ("alpha", "u@x")], now)
        await deposed_lease.release()  # lost, and the deposed leader has not looked yet
        assert await leader.try_lead() and deposed.leading
        assert tokens[0] is not None and tokens[1] > tokens[0]
        version = await leader_store.data_version()

        with pytest.raises(Deposed):
            await publish(deposed_store, settings, now)
        with pytest.raises(Deposed):
            await put_snapshot(deposed_store, "alpha", [occ("alpha", "v@x")], now)
        assert await leader_store.data_version() == version
        assert [o.uid for o in await leader_store.load_occurrences("alpha")] == ["u@x"]
        assert len(await leader_store.fetch_history("alpha")) == 1

        assert await publish(leader_store, settings, now)
        await put_snapshot(leader_store, "alpha", [occ("alpha", "v@x")], now)
        assert await leader_store.data_version() == version + 1
        assert [o.uid for o in await leader_store.load_occurrences("alpha")] == ["v@x"]
    finally:
        await leader.stop()
        await deposed.stop()
        await deposed_store.close()
        await leader_store.close()


async def test_a_publish_under_way_when_its_leader_steps_down_writes_nothing(
    database, tmp_path, now
):
    """Stepping down leaves a token that never matches, though no other took the lease:
    a publish that began before is refused, not let through unfenced."""
    url = database.url(tmp_path)
    store = await Store.open(url)
    leader = Candidate(lease_for(url, LEASE), LEASE, work("leader", []), store=store)
    planning, go_on = asyncio.Event(), asyncio.Event()

    async def plan(_known) -> Publication:
        planning.set()
        await go_on.wait()
        return Publication(versions=(), gone=("gone",), identities={}, at=now)

    try:
        assert await leader.try_lead()
        version = await store.data_version()
        publishing = asyncio.create_task(store.write_publication(plan))
        await planning.wait()
        await leader.stop()
        go_on.set()
        with pytest.raises(Deposed):
            await publishing
        assert await store.data_version() == version
    finally:
        await leader.stop()
        await store.close()


async def test_a_turn_fences_its_writes_and_leaves_none_that_pass_after(database, tmp_path, now):
    """Lease.turn (the catch-up of a process that does not schedule) with the store: its
    writes carry the token of the turn; after it, that store's fenced writes are refused."""
    url = database.url(tmp_path)
    store = await Store.open(url)
    alpha = source("alpha", "/a.ics")
    try:
        async with lease_for(url, LEASE).turn(store) as ours:
            assert ours and store.fence is not None
            assert await store.sync_sources([alpha], now=now)
        with pytest.raises(Deposed):
            await store.sync_sources([alpha, source("beta", "/b.ics")], now=now)
        assert set(await store.source_states()) == {"alpha"}
    finally:
        await store.close()


async def test_a_deposed_scheduler_says_so_in_one_line_and_stops(
    database, feed_server, tmp_path, now, caplog
):
    """A source's cycle refused its write (another took the lease): one warning, no
    traceback, no more ticks; nothing of the cycle written."""
    alpha = source("alpha", feed_server.serve_file("/alpha.ics", FEEDS / "floating.ics"))
    settings = make_settings(tmp_path, [alpha])
    store, successor = (
        await Store.open(settings.database_url),
        await Store.open(settings.database_url),
    )
    try:
        await store.sync_sources(settings.sources, now=now)
        await store.take_fence()
        await successor.take_fence()  # another process took the lease since
        async with fetching(settings) as fetcher:
            scheduler = Scheduler(store, fetcher, settings, lambda: now, lambda: None)
            with caplog.at_level(logging.INFO):
                await scheduler.run_source("alpha")
            await scheduler.stop()
        assert [r.levelno for r in caplog.records if r.name == "aggregator.schedule"] == [
            logging.WARNING
        ]
        assert not any(r.exc_info for r in caplog.records)
        assert scheduler._stopping
        assert await successor.fetch_history("alpha") == []
    finally:
        await store.close()
        await successor.close()
