"""Several processes against one PostgreSQL database (issue 17), as real processes: two
`aggregator serve` with the scheduler on and two with `--no-scheduler`, sharing one
configuration and one published folder. The feeds come from the test's own server, which
counts every request."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp.test_utils import unused_port

from tests.conftest import ROOT
from tests.waiting import get_json, until

LEASE = 3.0
#: far longer than the test: a source fetched twice was fetched twice in one interval
INTERVAL = "1h"
SOURCES = ("alpha", "beta", "gamma")


def calendar(name: str, title: str) -> str:
    """One event ten days ahead of the real clock (serve's clock): in the plain calendar;
    each source's on a day of its own (at one time and place they would be merged)."""
    days = 10 + SOURCES.index(name)
    start = (datetime.now(UTC) + timedelta(days=days)).replace(hour=17, minute=0, second=0)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//roles//EN\r\n"
        f"BEGIN:VEVENT\r\nUID:{name}-1@roles.test\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{start + timedelta(hours=2):%Y%m%dT%H%M%SZ}\r\n"
        f"SUMMARY:{title}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


class Process:
    def __init__(self, name: str, args: list[str], config: Path, env: dict, folder: Path):
        self.name = name
        self.port = unused_port()
        self.log = folder / f"{name}.log"
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "aggregator", *args, "--config", str(config)]
            + ["--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


async def etag(client: aiohttp.ClientSession, process: Process) -> str | None:
    try:
        async with client.get(f"{process.base}/calendar.ics") as response:
            await response.read()
            return response.headers.get("ETag") if response.status == 200 else None
    except aiohttp.ClientError:
        return None


async def test_one_of_four_processes_fetches_another_takes_over_and_all_serve_one_etag(
    feed_server, postgres_server, tmp_path: Path
):
    for name in SOURCES:
        feed_server.serve(f"/{name}.ics", calendar(name, f"{name.title()} meets"))
    lines = [
        "network:",
        "  name: Roles test",
        "  base_url: http://events.test",
        f"  refresh_interval: {INTERVAL}",
        "scheduler:",
        f"  lease_seconds: {LEASE:g}",
        "limits:",
        "  retries: 0",
        "sources:",
    ]
    for name in SOURCES:
        lines += [f"  - id: {name}", f"    name: {name.title()}"]
        lines += [f"    url: {feed_server.url(f'/{name}.ics')}"]
    config = tmp_path / "sources.yaml"
    config.write_text("\n".join(lines) + "\n")
    database = postgres_server.take()
    env = {
        **os.environ,
        "AGGREGATOR_DATABASE_URL": postgres_server.url(database, "postgresql"),
        "AGGREGATOR_ACCESS_LOG": "0",
        "PYTHONUNBUFFERED": "1",
    }
    processes = [
        Process("serve1", ["serve"], config, env, tmp_path),
        Process("serve2", ["serve"], config, env, tmp_path),
        Process("web1", ["serve", "--no-scheduler"], config, env, tmp_path),
        Process("web2", ["serve", "--no-scheduler"], config, env, tmp_path),
    ]

    def fetched() -> dict[str, int]:
        counts = dict.fromkeys(SOURCES, 0)
        for request in feed_server.requests:
            counts[request.path.strip("/").removesuffix(".ics")] += 1
        return counts

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
            for process in processes:

                async def up(process=process):
                    assert process.alive(), process.output()
                    return await get_json(client, f"{process.base}/healthz")

                await until(up, 60, f"{process.name} answering /healthz", every=0.1)

            # every source read once, by one process, and what was read stored; all four
            # serve the same bytes
            await until(
                lambda: _recorded(postgres_server, database), 60, "every source read", every=0.1
            )

            async def one_etag(alive=processes):
                tags = {await etag(client, p) for p in alive}
                return tags.pop() if len(tags) == 1 and None not in tags else None

            first = await until(one_etag, 30, "one ETag from all four")
            leaders = [
                p
                for p in processes
                if (await get_json(client, f"{p.base}/healthz")).get("fetching")
            ]
            assert [p.name for p in leaders] in (["serve1"], ["serve2"])
            leader = leaders[0]

            # when each publish commits, as the database has it
            versions = asyncio.create_task(_versions(postgres_server, database, commits := []))

            # the member changes its feed; the fetching process dies; the source's
            # interval is over (as if an hour had passed for it)
            feed_server.serve("/alpha.ics", calendar("alpha", "Alpha meets elsewhere"))
            leader.popen.send_signal(signal.SIGKILL)
            leader.popen.wait(timeout=10)
            killed = time.monotonic()
            await _make_due(postgres_server, database, "alpha")

            await until(lambda: _true(fetched()["alpha"] == 2), LEASE + 5, "alpha fetched again")
            taken_over = time.monotonic() - killed
            assert taken_over <= LEASE, f"the next scheduler fetched after {taken_over:.2f} s"
            survivors = [p for p in processes if p is not leader]
            (new_leader,) = [
                p
                for p in survivors
                if (await get_json(client, f"{p.base}/healthz")).get("fetching")
            ]
            assert new_leader.name in ("serve1", "serve2")

            # the publish of alpha's change: every process answers its one new ETag
            async def all_new():
                tags = {await etag(client, p) for p in survivors}
                return tags.pop() if len(tags) == 1 and tags != {None} else None

            async def changed():
                return await all_new() not in (None, first)

            await until(changed, 20, "every process serving the new ETag", every=0.01)
            served = time.monotonic()
            versions.cancel()
            await asyncio.gather(versions, return_exceptions=True)
            # the publish that made the new bytes is the last commit before they were served
            published = max(at for at, _ in commits if at <= served)
            spread = served - published
            assert spread <= 1.0, f"every process served the publish {spread:.2f} s after it"
            print(f"taken over and fetched in {taken_over:.2f} s; one ETag {spread:.3f} s later")

            # once per interval, never twice: alpha's second read is that of its new interval
            assert fetched() == {"alpha": 2, "beta": 1, "gamma": 1}
            assert all(p.alive() for p in survivors), [p.output() for p in survivors]
    finally:
        for process in processes:
            if process.alive():
                process.popen.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.popen.kill()
        postgres_server.give_back(database)


async def _true(value: bool) -> bool:
    return value


async def _recorded(server, database: str) -> bool:
    """Every source's read is written (a read under way when its process dies is not, and
    is done again)."""
    conn = await server.connect(database)
    try:
        waiting = await conn.fetchval("SELECT count(*) FROM sources WHERE last_fetch_at IS NULL")
        return waiting == 0 and await conn.fetchval("SELECT count(*) FROM sources") == 3
    finally:
        await conn.close()


async def _versions(server, database: str, commits: list[tuple[float, int]]) -> None:
    """Note when the data's version changes (a publish committed), every 10 ms, until
    cancelled."""
    conn = await server.connect(database)
    try:
        last = None
        while True:
            version = await conn.fetchval("SELECT value FROM meta WHERE key = 'data_version'")
            if version != last:
                commits.append((time.monotonic(), version))
                last = version
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def _make_due(server, database: str, source_id: str) -> None:
    conn = await server.connect(database)
    try:
        past = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
        await conn.execute("UPDATE sources SET next_check_at = $1 WHERE id = $2", past, source_id)
    finally:
        await conn.close()


async def test_a_schedule_process_fetches_and_a_web_process_serves_what_it_published(
    feed_server, tmp_path: Path
):
    """One machine, SQLite: `aggregator schedule` (its /healthz and /metrics on a port of its
    own) beside `aggregator serve --no-scheduler`, which finds the publish by the store's
    version and writes the folder."""
    for name in SOURCES:
        feed_server.serve(f"/{name}.ics", calendar(name, f"{name.title()} meets"))
    lines = ["network:", "  name: Two roles", "  base_url: http://events.test", "sources:"]
    for name in SOURCES:
        lines += [f"  - id: {name}", f"    name: {name.title()}"]
        lines += [f"    url: {feed_server.url(f'/{name}.ics')}"]
    config = tmp_path / "sources.yaml"
    config.write_text("\n".join(lines) + "\n")
    env = {
        **os.environ,
        "AGGREGATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'roles.db'}",
        "PYTHONUNBUFFERED": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "aggregator", "migrate", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    scheduler = Process("schedule", ["schedule"], config, env, tmp_path)
    web = Process("web", ["serve", "--no-scheduler"], config, env, tmp_path)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:

            async def fetching():
                assert scheduler.alive(), scheduler.output()
                health = await get_json(client, f"{scheduler.base}/healthz")
                return health if health and health["fetching"] and health["data_version"] else None

            health = await until(fetching, 60, "the scheduler fetching and publishing", 0.1)
            assert health["role"] == "scheduler"
            async with client.get(f"{scheduler.base}/metrics") as response:
                assert response.status == 200
                exposed = await response.text()
            assert "aggregator_source_occurrences" in exposed
            assert "aggregator_scheduler_fetching 1.0" in exposed

            async def served():
                assert web.alive(), web.output()
                try:
                    async with client.get(f"{web.base}/calendar.ics") as response:
                        body = await response.text()
                except aiohttp.ClientError:
                    return False
                return all(f"{n.title()} meets" in body for n in SOURCES)

            await until(served, 30, "the web process serving every source's event", 0.1)
            web_health = await get_json(client, f"{web.base}/healthz")
            assert web_health["fetching"] is False
            async with client.get(f"{web.base}/metrics") as response:
                assert "aggregator_scheduler_fetching 0.0" in await response.text()
            assert sorted(r.path for r in feed_server.requests) == [f"/{n}.ics" for n in SOURCES]
    finally:
        for process in (scheduler, web):
            process.popen.send_signal(signal.SIGTERM)
        for process in (scheduler, web):
            process.popen.wait(timeout=30)
