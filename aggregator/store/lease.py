"""Exactly one scheduler at a time, however many processes could fetch; and the news of a
publish, to every process that serves.

The scheduler's lease is the database's own lock, never one of our making:

- PostgreSQL: a session advisory lock (`pg_try_advisory_lock`), held by a connection of its
  own. It is let go when that session ends, whatever ends it: a clean stop, a killed
  process (the server sees the socket close), a machine gone (the server's TCP keepalives,
  set here to find a dead peer within the lease). The holder is told at once when its
  session ends (`Lease.on_lost`), not only at its next look.
- SQLite: an exclusive `flock` on the database file itself, let go by the kernel when the
  process ends. SQLite is one machine's database, so one machine's lock is enough. Not a
  file beside it: one deleted under its holder let a second process lock a new file of
  the same name. The database file cannot go without the database; if the path comes to
  name another file (replaced), the holder's lease is lost (`held`).

The processes that want the lease ask for it every third of `scheduler.lease_seconds`; the
holder confirms every third of it that its lease is still held (its session alive) and stops
fetching when it cannot (lease.Candidate). So a scheduler that dies is replaced within the
lease.

A holder that has not noticed yet that it lost the lease must not write beside its
successor: each holder takes a fencing token when it takes the lease (the lease's epoch in
meta, one more: Store.take_fence), and the writes of the scheduler's work commit only while
the epoch is still theirs (store/base.py, `_writing(fenced=True)`).

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
from typing import TYPE_CHECKING

import asyncpg
from sqlalchemy.engine import make_url

from aggregator.store.base import PUBLISHED_CHANNEL

if TYPE_CHECKING:
    from aggregator.store.base import StoreBase

log = logging.getLogger(__name__)

#: the advisory lock's key: "aggregator scheduler" (any fixed number; locks are per database)
LOCK_KEY = 0x61676772_7363686
#: how long a connection of the lease may take to answer (at most a third of the lease)
ANSWER_SECONDS = 10.0


class Lease:
    """The scheduler's lease: `acquire` tries once, `held` confirms it, `release` lets go."""

    #: called at once when the lease is found lost between looks (its PostgreSQL session
    #: ended), so its holder need not wait for its next `held` to stop (lease.Candidate)
    on_lost: Callable[[], None] | None = None

    async def acquire(self) -> bool:
        raise NotImplementedError

    async def held(self) -> bool:
        raise NotImplementedError

    async def release(self) -> None:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def turn(self, store: StoreBase | None = None) -> AsyncIterator[bool]:
        """The lease for a moment, if it is free (whether it was): for work that only the
        holder may do, done once by a process that does not schedule. With `store`, its
        writes of that work are fenced as a scheduler's are: a token taken with the lease,
        and after the turn none that matches."""
        ours = await self.acquire()
        try:
            if ours and store is not None:
                await store.take_fence()
            yield ours
        finally:
            if ours:
                if store is not None:
                    store.depose()
                await self.release()


def lease_for(database_url: str, lease_seconds: float) -> Lease:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return PostgresLease(database_url, lease_seconds)
    path = url.database
    if not path or path == ":memory:":
        return _OwnLease()  # one process's own database: no other process can fetch into it
    return FileLease(Path(path))


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
                self._conn.add_termination_listener(self._ended)
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

    def _ended(self, conn: asyncpg.Connection) -> None:
        """The session of the lease ended (terminated, the server gone, the network cut):
        its lock with it. Not when we ended it (_drop forgets it first)."""
        if conn is self._conn and self.on_lost is not None:
            self.on_lost()

    @property
    def _timeout(self) -> float:
        return min(ANSWER_SECONDS, self.lease_seconds / 3)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # no goodbye to wait for: the session ends, and its lock


class FileLease(Lease):
    """An exclusive `flock` on the SQLite database file `path`.

    On Linux flock and SQLite's own locks (POSIX fcntl byte ranges) are independent, so
    SQLite reads and writes as usual while it is held (on a local file system, which
    SQLite's WAL needs anyway: NFS makes flock a POSIX lock). Its descriptor is never closed, only
    unlocked: closing any descriptor of a file lets go of every POSIX lock the process holds
    on it, SQLite's too (a WAL connection holds a shared one as long as it is open), and a
    process's SQLite would then be unprotected ("How To Corrupt An SQLite Database File",
    2.2). One descriptor a lease, for the life of the process.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: open on the file `path` named when it was last asked for; never closed (above)
        self._fd: int | None = None
        self._locked = False
        #: descriptors of files that `path` named before (replaced): never closed either
        self._former: list[int] = []

    async def acquire(self) -> bool:
        if self._locked and self._names_ours():
            return True
        await self.release()
        try:
            fd = self._open()
        except OSError as error:
            log.warning("the scheduler's lease on %s: %s", self.path, error)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        self._locked = True
        return True

    async def held(self) -> bool:
        """Locked, and `path` still names the file locked: one put in its place (or none)
        is not locked by us, and another process could lock it."""
        return self._locked and self._names_ours()

    async def release(self) -> None:
        if self._locked and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # unlocked, not closed (see the class)
        self._locked = False

    def _open(self) -> int:
        """The descriptor of the file `path` names now: the one kept, unless the path names
        another file since. No O_CREAT: a database that is gone is not made anew here."""
        if self._fd is not None:
            if self._names_ours():
                return self._fd
            self._former.append(self._fd)
            self._fd = None
        self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def _names_ours(self) -> bool:
        """`path` names the file our descriptor is open on (same device and inode)."""
        if self._fd is None:
            return False
        try:
            named, ours = os.stat(self.path), os.fstat(self._fd)
        except OSError:
            return False
        return (named.st_dev, named.st_ino) == (ours.st_dev, ours.st_ino)


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
