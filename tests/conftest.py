"""Shared fixtures: a fixed clock, a real local feed server, real stores: SQLite files and
databases of a real PostgreSQL server that the suite starts (tests/postgres.py).

A test that asks for `database` (or `store`, which does) runs once on each: its
`make_settings` and `database_url` name the database of that run."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aggregator.fetch import Fetcher, open_session
from aggregator.model import Attempt, Limits, Network, Settings, Source, SourceKind, Validators
from aggregator.store import Store
from tests.postgres import ACTIVE, Database, Postgres, binaries

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
FEEDS = ROOT / "examples" / "feeds"
CORPUS = ROOT.parent / "shared" / "corpus"
#: the demo feeds are written for this day; every test uses this clock unless it says otherwise
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    return NOW


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: when set, the handler waits on it forever (a server that hangs)
    hang: bool = False
    #: misbehaviour no status or body can express: the handler takes over
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None


class FeedServer:
    """A real aiohttp server on 127.0.0.1 whose answers the test sets per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[web.Request] = []
        self.server: TestServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    def serve(self, path: str, body: bytes | str = b"", **kwargs) -> str:
        if isinstance(body, str):
            body = body.encode("utf-8")
        kwargs.setdefault("headers", {"Content-Type": "text/calendar; charset=utf-8"})
        self.routes[path] = Route(body=body, **kwargs)
        return self.url(path)

    def serve_file(self, path: str, file: Path, **kwargs) -> str:
        return self.serve(path, file.read_bytes(), **kwargs)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        route = self.routes.get(request.path)
        if route is None:
            return web.Response(status=404, text="not found")
        if route.handler is not None:
            return await route.handler(request)
        if route.hang:
            await asyncio.Event().wait()
        etag = route.headers.get("ETag")
        if etag and request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=route.body, status=route.status, headers=route.headers)


@pytest.fixture
async def feed_server() -> FeedServer:
    feeds = FeedServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", feeds.handle)
    feeds.server = TestServer(app, host="127.0.0.1")
    await feeds.server.start_server()
    yield feeds
    await feeds.server.close()


def database_url(folder: Path, name: str = "test", driver: bool = True, empty: bool = False) -> str:
    """The URL of the running test's database `name` (a file in `folder` on SQLite); with
    `empty`, one with no tables yet."""
    return ACTIVE.database.url(folder, name, driver, empty)


@pytest.fixture(scope="session")
def postgres_server():
    """The suite's PostgreSQL server, started on first use. Missing PostgreSQL skips its
    tests, but in CI (CI set) it fails them: `make test` installs it."""
    bindir = binaries()
    if bindir is None:
        message = "PostgreSQL (initdb, pg_ctl) is not installed: Debian package postgresql"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = Postgres(bindir)
    server.start()
    server.make_template()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request) -> Database:
    """Run the test on SQLite and on PostgreSQL."""
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    ACTIVE.database = Database(request.param, server)
    yield ACTIVE.database
    active, ACTIVE.database = ACTIVE.database, Database("sqlite")
    if server is not None:
        active.drop()


def make_settings(tmp_path: Path, sources: list[Source], **limits) -> Settings:
    return Settings(
        network=Network(
            name="Testnetværket",
            description="Test network",
            timezone="Europe/Copenhagen",
            base_url="http://events.test",
        ),
        sources=tuple(sources),
        limits=replace(Limits(total_timeout=2.0, connect_timeout=1.0), **limits),
        database_url=database_url(tmp_path),
    )


def source(id: str, url: str, name: str | None = None, **kwargs) -> Source:
    kwargs.setdefault("kind", SourceKind.ICAL)
    return Source(id=id, name=name or id.title(), url=url, **kwargs)


@pytest.fixture
async def store(tmp_path: Path, database: Database) -> Store:
    opened = await Store.open(database.url(tmp_path))
    yield opened
    await opened.close()


def demo_sources() -> list[Source]:
    """The bundled demo network, from the shipped sources.yaml."""
    from aggregator.config import load_config

    return list(load_config(ROOT / "sources.yaml", environ={}).sources)


def ical_js(path: Path) -> dict:
    """Parse an .ics file with ical.js (Thunderbird's parser) under node."""
    node = shutil.which("node")
    assert node, "node is needed for the ical.js client tests"
    script = Path(__file__).parent / "js" / "parse.mjs"
    done = subprocess.run(
        [node, str(script), str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@asynccontextmanager
async def fetching(settings: Settings, sleeps: list[float] | None = None):
    """A Fetcher with a real session whose retry waits are recorded, not slept."""

    async def no_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    async with open_session(settings.network, settings.limits) as session:
        async with Fetcher(session, settings.limits, sleep=no_sleep, jitter=lambda: 0.5) as f:
            yield f


async def put_snapshot(
    store: Store,
    source_id: str,
    occurrences,
    now: datetime,
    *,
    validators: Validators | None = None,
    warnings=(),
) -> None:
    """Store a good snapshot for a source, as a successful fetch would."""
    attempt = Attempt(
        at=now,
        outcome="updated",
        message="test",
        next_check_at=now,
        validators=validators or Validators(),
    )
    await store.record_attempt(
        source_id, attempt, list(occurrences), content_hash="test", warnings=warnings
    )
