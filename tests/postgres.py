"""A real PostgreSQL server for the tests: Debian's `postgresql`, a cluster made by `initdb`
in a temporary folder and run by `pg_ctl` as a non-root user (`postgres` when the suite runs
as root), on a free port of 127.0.0.1. Each test that asks gets a database of its own,
dropped when it ends."""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

#: how the suite's server runs: no fsync (a crashed test server is thrown away anyway)
_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "listen_addresses": "127.0.0.1",
}


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else Debian's newest
    /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _blocking(coroutine):
    """Run a coroutine to its end from sync code, whether or not an event loop runs here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class Postgres:
    def __init__(self, bindir: Path, settings: dict[str, str] | None = None) -> None:
        self.bindir = bindir
        #: the server's settings (`-c name=value`): the suite's unless given
        self.settings = _SETTINGS if settings is None else settings
        self.root = Path(tempfile.mkdtemp(prefix="aggregator-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "postgres"
        self._names = itertools.count(1)
        self._as: list[str] = []
        #: the database each test's is a copy of (make_template)
        self.template: str | None = None
        self._head: list = []
        self._tables: set[str] = set()
        #: emptied databases a test gave back, for the next
        self._free: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}\n{done.stderr}")

    def start(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        options += f" -p {self.port} -c unix_socket_directories={self.root}"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    async def connect(self, database: str = "postgres") -> asyncpg.Connection:
        """A plain asyncpg connection to `database` of this server, as its superuser."""
        return await asyncpg.connect(
            host="127.0.0.1", port=self.port, user=self.user, database=database
        )

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t", template: str | None = None) -> str:
        """A new database, empty or a copy of `template`; its name."""
        name = f"{prefix}{next(self._names)}"
        copy = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
        _blocking(self._admin(f'CREATE DATABASE "{name}"{copy}'))
        return name

    def make_template(self) -> str:
        """A database migrated to the newest schema, which each test's database copies: the
        migrations run once here (0.6 s), not for every test."""
        from aggregator.store import Store  # noqa: PLC0415

        async def migrate(url: str) -> None:
            store = await Store.open(url)
            await store.close()

        name = self.create_database("head")
        _blocking(migrate(self.url(name)))
        self.template = name
        self._head, self._tables = _blocking(self._schema(name))
        return name

    async def _schema(self, name: str) -> tuple[list, set[str]]:
        conn = await self.connect(name)
        try:
            head = await conn.fetch("SELECT version_num FROM alembic_version")
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version'"
            )
            return head, {t[0] for t in tables}
        finally:
            await conn.close()

    def drop_database(self, name: str) -> None:
        _blocking(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def take(self) -> str:
        """A database at the newest schema with no rows: one a test gave back, else a new
        copy of the template (a copy takes 0.3 s, emptying one 0.07 s)."""
        if self._free:
            return self._free.pop()
        return self.create_database(template=self.template)

    def give_back(self, name: str) -> None:
        """Empty the database for the next test; one whose schema a test changed (a
        downgrade) is dropped instead."""
        if _blocking(self._empty(name)):
            self._free.append(name)
        else:
            self.drop_database(name)

    async def _empty(self, name: str) -> bool:
        admin = await self.connect("postgres")
        try:  # what a test's processes left connected
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        finally:
            await admin.close()
        conn = await self.connect(name)
        try:
            if await conn.fetch("SELECT version_num FROM alembic_version") != self._head:
                return False
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version'"
            )
            if {t[0] for t in tables} != self._tables:
                return False
            listed = ", ".join(f'"{t[0]}"' for t in tables)
            await conn.execute(f"TRUNCATE {listed} RESTART IDENTITY CASCADE")
            return True
        finally:
            await conn.close()

    async def _admin(self, statement: str) -> None:
        conn = await self.connect("postgres")
        try:
            await conn.execute(statement)
        finally:
            await conn.close()


@dataclass
class Database:
    """The database of a test's run: a SQLite file in its folder, or a PostgreSQL database
    made for it (one per name asked)."""

    kind: str
    server: Postgres | None = None
    made: dict[str, str] = field(default_factory=dict)

    def url(
        self, folder: Path, name: str = "test", driver: bool = True, empty: bool = False
    ) -> str:
        """The database `name` of this test: at the newest schema, or with `empty` one with
        no tables yet (for a test of the migrations). A SQLite file is made by its first
        open, so there both are the same."""
        if self.server is None:
            return f"sqlite{'+aiosqlite' if driver else ''}:///{folder / f'{name}.db'}"
        key = f"{folder}/{name}"
        if key not in self.made:
            self.made[key] = self.server.create_database() if empty else self.server.take()
        return self.server.url(self.made[key], "postgresql+asyncpg" if driver else "postgresql")

    def drop(self) -> None:
        for made in self.made.values():
            self.server.give_back(made)


class _Active:
    """The database of the running test: SQLite unless it asked for `database` (here, not
    in conftest, which the tests also import under a second name)."""

    database = Database("sqlite")


ACTIVE = _Active()
