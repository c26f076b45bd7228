"""Exactly one scheduler at a time, however many processes could fetch; and the news of a
publish, to every process that serves.

The scheduler's lease is the database's own lock, never one of our making:

- PostgreSQL: a session advisory lock (`pg_try_advisory_lock`), held by a connection of its
  own. It is let go when that session ends, whatever ends it: a clean stop, a killed
  process (the server sees the socket close), a machine gone (the server's TCP keepalives,
  set here to find a dead peer within the lease).
- SQLite: an exclusive `flock` on a file beside the database, let go by the kernel when the
  process ends. SQLite is one machine's database, so one machine's lock is enough.

The processes that want the lease ask for it every third of `scheduler.lease_seconds`; the
holder confirms every third of it that its lease is still held (its session alive) and stops
fetching when it cannot (lease.Candidate). So a scheduler that dies is replaced within the
lease.

A publish is told by PostgreSQL's NOTIFY (store/base.py sends it with the new data version,
delivered when the publish commits); a `Listener` calls back on each. On SQLite the processes of
the one machine see the published folder's version change instead (outputs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from aggregator.store.base import PUBLISHED_CHANNEL

log = logging.getLogger(__name__)

#: the advisory lock's key: "aggregator scheduler" (any fixed number; locks are per database)
LOCK_KEY = 0x61676772_7363686
#: how long a connection of the lease may take to answer (at most a third of the lease)
ANSWER_SECONDS = 10.0


class Lease:
    """The scheduler's lease: `acquire` tries once, `held` confirms it, `release` lets go."""

    async def acquire(self) -> bool:
        raise NotImplementedError

    async def held(self) -> bool:
        raise NotImplementedError

    async def release(self) -> None:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[bool]:
        """The lease for a moment, if it is free (whether it was): for work that only the
        holder may do, done once by a process that does not schedule."""
        ours = await self.acquire()
        try:
            yield ours
        finally:
            if ours:
                await self.release()


def lease_for(database_url: str, lease_seconds: float) -> Lease:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return PostgresLease(database_url, lease_seconds)
    path = url.database
    if not path or path == ":memory:":
        return _OwnLease()  # one process's own database: no other process can fetch into it
    return FileLease(Path(f"{path}.scheduler.lock"))


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as asyncpg takes it (no driver name)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresLease(Lease):
    def __init__(self, database_url: str, lease_seconds: float) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.lease_seconds = lease_seconds
        self._conn: asyncpg.Connection | None = None

    async def _connect(self) -> asyncpg.Connection:
        third = max(1, int(self.lease_seconds / 3))
        return await asyncpg.connect(
            self.dsn,
            timeout=min(ANSWER_SECONDS, self.lease_seconds / 3),
            server_settings={
                "application_name": "aggregator scheduler lease",
                # a holder whose machine is gone is found dead within the lease
                "tcp_keepalives_idle": str(third),
                "tcp_keepalives_interval": str(max(1, third // 3)),
                "tcp_keepalives_count": "3",
            },
        )

    async def acquire(self) -> bool:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            return bool(
                await self._conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)", LOCK_KEY, timeout=self._timeout
                )
            )
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as error:
            log.warning("the scheduler's lease could not be asked for: %s", error)
            await self._drop()
            return False

    async def held(self) -> bool:
        """The session that holds the lock answers: the lock is still ours."""
        if self._conn is None or self._conn.is_closed():
            return False
        try:
            return bool(
                await self._conn.fetchval(
                    "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND granted",
                    timeout=self._timeout,
                )
            )
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as error:
            log.warning("the scheduler's lease could not be confirmed: %s", error)
            await self._drop()
            return False

    async def release(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncio.TimeoutError):
                await self._conn.execute(
                    "SELECT pg_advisory_unlock($1)", LOCK_KEY, timeout=self._timeout
                )
        await self._drop()

    @property
    def _timeout(self) -> float:
        return min(ANSWER_SECONDS, self.lease_seconds / 3)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # no goodbye to wait for: the session ends, and its lock


class FileLease(Lease):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    async def acquire(self) -> bool:
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            log.warning("the scheduler's lock file %s: %s", self.path, error)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def held(self) -> bool:
        return self._fd is not None  # the kernel keeps it until we let go or end

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing lets go of the lock


class _OwnLease(Lease):
    def __init__(self) -> None:
        self._held = False

    async def acquire(self) -> bool:
        self._held = True
        return True

    async def held(self) -> bool:
        return self._held

    async def release(self) -> None:
        self._held = False


class Listener:
    """Calls `on_publish` at each NOTIFY of a publish, on a connection of its own, made again
    when lost (PostgreSQL only)."""

    def __init__(self, database_url: str, on_publish: Callable[[], None]) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.on_publish = on_publish
        self._task: asyncio.Task[None] | None = None

    def run(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        lost = asyncio.Event()
        wait = 1.0  # between tries, doubled while the server is away (at most a minute)
        while True:
            lost.clear()
            conn = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=ANSWER_SECONDS)
                conn.add_termination_listener(lambda _conn: lost.set())
                await conn.add_listener(PUBLISHED_CHANNEL, lambda *_: self.on_publish())
                wait = 1.0
                self.on_publish()  # what was published while not listening
                await lost.wait()
            except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as error:
                log.warning("listening for publishes (again in %.0f s): %s", wait, error)
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(wait)
            wait = min(wait * 2, 60.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
