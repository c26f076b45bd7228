"""Warm refresh cycle: N local sources with ~200 events each, nothing changed.

    .venv/bin/python bench/warm_cycle.py [--sources 1000] [--events 200] [--hosts 50]
                                         [--rounds 2] [--keep DIR]

A separate server process serves the feeds on 127.0.0.1 .. 127.0.0.<hosts> (so the per-host
limit sees many hosts, as in a real network). It prints, for the cold cycle (everything read
and stored) and the warm ones:

- `304` servers that honour If-None-Match: the conditional-GET path,
- `plain` servers that ignore validators and send the same body: the content-hash path,

the cycle time and requests per second, next to a baseline: bare aiohttp GETs of the same
URLs with the same concurrency, no store and no parse. With --keep the databases stay in DIR
and a later run with the same sources skips the cold cycle (minutes for 1,000 sources) and
measures only warm ones: to profile them, run it under `py-spy record`.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from aggregator.fetch import Fetcher, open_session
from aggregator.model import Limits, Network, Settings, Source, SourceKind
from aggregator.refresh import refresh_all
from aggregator.store import Store

PORT = 18431
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def calendar(n: int, events: int) -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:-//bench//source {n}//EN"]
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    for e in range(events):
        begin = start + timedelta(days=e % 400, hours=e % 9)
        lines += [
            "BEGIN:VEVENT",
            f"UID:bench-{n}-{e}@bench.test",
            "DTSTAMP:20261101T000000Z",
            f"DTSTART:{begin:%Y%m%dT%H%M%SZ}",
            f"DTEND:{begin + timedelta(hours=2):%Y%m%dT%H%M%SZ}",
            f"SUMMARY:Arrangement {e} hos medlem {n}",
            f"LOCATION:Fælledvej {e % 40}\\, 2200 København N",
            "DESCRIPTION:Et arrangement i netværket.\\nAlle er velkomne.",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def serve(sources: int, events: int, hosts: int) -> None:
    bodies = {n: calendar(n, events) for n in range(sources)}

    async def handle(request: web.Request) -> web.Response:
        mode, name = request.match_info["mode"], request.match_info["name"]
        n = int(name.removeprefix("s").removesuffix(".ics"))
        etag = f'"bench-{n}"'
        if mode == "etag" and request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if mode == "etag":
            headers["ETag"] = etag
        return web.Response(body=bodies[n], headers=headers)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{mode}/{name}", handle)
        app.router.add_get("/ready", lambda _: web.Response(text="ok"))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for host in range(1, hosts + 1):
            await web.TCPSite(runner, f"127.0.0.{host}", PORT).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def url(n: int, mode: str, hosts: int) -> str:
    return f"http://127.0.0.{n % hosts + 1}:{PORT}/{mode}/s{n}.ics"


async def baseline(urls: list[str], limits: Limits) -> float:
    """Bare GETs of the same URLs with the same limits: the floor of a cycle."""
    started = time.perf_counter()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limits.concurrency, limit_per_host=limits.per_host)
    ) as session:

        async def get(u: str) -> None:
            async with session.get(u) as response:
                await response.read()

        await asyncio.gather(*(get(u) for u in urls))
    return time.perf_counter() - started


async def cycles(mode: str, args, workdir: Path) -> None:
    limits = Limits()
    sources = [
        Source(id=f"s{n}", name=f"Member {n}", url=url(n, mode, args.hosts), kind=SourceKind.ICAL)
        for n in range(args.sources)
    ]
    settings = Settings(
        network=Network(name="Bench"),
        sources=tuple(sources),
        limits=limits,
        database_url=f"sqlite+aiosqlite:///{workdir / f'{mode}.db'}",
    )
    kept = (workdir / f"{mode}.db").exists()
    store = await Store.open(settings.database_url)
    try:
        async with open_session(settings.network, limits) as session:
            fetcher = Fetcher(session, limits)
            if not kept:
                await cold_cycle(store, fetcher, settings, mode)
            for round_ in range(args.rounds):
                started = time.perf_counter()
                reports, changed = await refresh_all(
                    store, fetcher, settings, NOW + timedelta(minutes=30 * (round_ + 1))
                )
                warm = time.perf_counter() - started
                outcomes = {r.outcome.value for r in reports}
                bare = await baseline([s.url for s in sources], limits)
                print(
                    f"{mode:>5} warm  {warm:8.2f} s {len(sources) / warm:9.0f} req/s   "
                    f"baseline {bare:6.2f} s {len(sources) / bare:7.0f} req/s   "
                    f"ratio {warm / bare:5.2f}   outcomes {sorted(outcomes)}, "
                    f"published: {changed}"
                )
    finally:
        await store.close()


async def cold_cycle(store: Store, fetcher: Fetcher, settings: Settings, mode: str) -> None:
    """Every source read and stored for the first time."""
    started = time.perf_counter()
    reports, _ = await refresh_all(store, fetcher, settings, NOW)
    cold = time.perf_counter() - started
    read = sum(r.occurrences for r in reports)
    print(
        f"{mode:>5} cold  {cold:8.2f} s {len(settings.sources) / cold:9.0f} req/s "
        f"({read:,} occurrences read and stored)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the databases here (and reuse them)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.sources, args.events, args.hosts)
        return
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            f"--sources={args.sources}",
            f"--events={args.events}",
            f"--hosts={args.hosts}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        print(
            f"{args.sources} sources x {args.events} events on {args.hosts} loopback hosts; "
            f"per-host limit {Limits().per_host}, concurrency {Limits().concurrency}"
        )
        with tempfile.TemporaryDirectory() as workdir:
            folder = args.keep or Path(workdir)
            folder.mkdir(parents=True, exist_ok=True)
            for mode in ("etag", "plain"):
                asyncio.run(cycles(mode, args, folder))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
