"""Issue 15's "done when", measured side by side: a network of N members on this machine.

    .venv/bin/python bench/scale.py --members 100,300,1000 --events 200 [--serve [SIZES]]
                                    [--rounds 2] [--keep DIR] [--wrk-seconds S]
                                    [--databases sqlite,postgresql] [--pg-statements N]

For each size, in a fresh folder (a temporary one unless --keep), bench/generate.py writes the
network (local files and their sources.yaml); then, each in its own process, only through the
command line and the database file (never aggregator's own functions, which change meanwhile):

- baseline: bare icalendar.Calendar.from_ical of the same files (one process, one core);
- cold: `aggregator refresh` into an empty database; the ratio cold / baseline;
- warm: `aggregator refresh` again, nothing changed;
- one change: one member changes 3 events (edit_member), `aggregator refresh`, then a refresh
  in which nothing changed; the difference, per round (--rounds);
- one member: another member changes, `aggregator refresh ID` of that member alone;
- storage: the database (and its -wal), rows in `occurrences`, bytes per occurrence;
- --serve (the largest size unless SIZES are given): `aggregator serve` while wrk sends
  conditional requests (If-None-Match: *, gzip accepted) to /calendar.ics and the scheduler
  reads every source, one of them changed (every source is made due in the database once
  the server answers): the latency of 304s while the cycle and its publish run.

With --databases sqlite,postgresql each size is measured on both, from the same feeds (restored
before each database's run) and the same baseline: SQLite a file in the size's folder,
PostgreSQL a database of a private throwaway cluster this run starts (tests/postgres.py's
Postgres, with production's durability: fsync and synchronous_commit on, shared_buffers
256MB, 127.0.0.1 on a free port), given as AGGREGATOR_DATABASE_URL=postgresql://...; its
size is pg_database_size (no WAL), and pg_stat_statements' top statements of the cold
refresh and of the rest are printed (--pg-statements N, 0 for none).

Memory is the peak of the child's process tree (bench/measure.py: ru_maxrss, and the sum over
the tree sampled every 50 ms); on PostgreSQL also the peak of the server's process tree (its
RSS counts the shared buffers once per backend that touched them; PSS splits them).

Each figure is printed next to the issue's target, and a markdown table of all sizes (and
databases) closes the run (for the README). Timings taken while other
programs run are noisy: compare the ratios, taken in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import measure
from generate import edit_member, write_network
from measure import MB, Measured, TreeSampler, descendants, run_measured

ROOT = Path(__file__).resolve().parent.parent

#: the issue's targets (for 1,000 members)
COLD_RATIO, COLD_MB, CHANGE_S, CHANGE_MB, WARM_S, P99_MS, BYTES = 0.6, 1024, 1, 300, 3, 50, 2048
#: the benchmark's PostgreSQL: durable as in production (tests/postgres.py's suite turns
#: fsync off), pg_stat_statements loaded to say where the time goes
PG_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "100",
    "shared_buffers": "256MB",
    "listen_addresses": "127.0.0.1",
    "shared_preload_libraries": "pg_stat_statements",
}
#: how often the PostgreSQL server's process tree is sampled (seconds)
SERVER_INTERVAL = 1.0
#: the scheduler's pace (aggregator/schedule.py: TICK, STARTS_PER_TICK): a cycle of N due
#: sources takes about N / 20 ticks of 10 s
TICK_S, STARTS_PER_TICK = 10, 20

BASELINE = """
import pathlib, sys, time
from icalendar import Calendar
started = time.perf_counter()
files = sorted(pathlib.Path(sys.argv[1]).glob("*.ics"))
for path in files:
    Calendar.from_ical(path.read_bytes())
print(f"{len(files)} files parsed in {time.perf_counter() - started:.2f} s")
"""

WRK_SCRIPT = """
-- If-None-Match: * (RFC 9110 13.1.2: any current calendar) asks for a 304 whatever the
-- publishes meanwhile: the latency measured is that of 304s, not of the connections that
-- download a new calendar after a publish (which a calendar app does once, at its next poll)
init = function(args) s200, s304, sother = 0, 0, 0 end
request = function()
  return wrk.format("GET", nil, {["If-None-Match"] = "*", ["Accept-Encoding"] = "gzip"})
end
response = function(status, headers, body)
  if status == 304 then s304 = s304 + 1
  elseif status == 200 then s200 = s200 + 1
  else sother = sother + 1 end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("s200"); b = b + t:get("s304"); c = c + t:get("sother")
  end
  io.write(string.format("statuses: 200=%d 304=%d other=%d\\n", a, b, c))
end
"""


@dataclass
class Serving:
    """What wrk saw while the scheduler read every source."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    requests_per_s: float
    statuses: str
    seconds: int
    #: sources read during the run, of all
    read: int
    server: Measured | None = None


@dataclass
class Size:
    """The figures of one network size."""

    members: int
    database: str = "sqlite"
    vevents: int = 0
    feeds_mb: float = 0
    baseline: Measured | None = None
    cold: Measured | None = None
    warm: Measured | None = None
    #: per round: (refresh after one change, refresh after it with nothing changed)
    changes: list[tuple[Measured, Measured]] = field(default_factory=list)
    one_member: Measured | None = None
    db_bytes: int = 0
    occurrences: int = 0
    serving: Serving | None = None
    #: PostgreSQL's server process tree: peak RSS and PSS over the steps, RSS at the end (MB)
    server_rss: float = 0
    server_pss: float = 0
    server_idle_rss: float = 0
    target: Target | None = None

    @property
    def ratio(self) -> float:
        return self.cold.wall / self.baseline.wall

    @property
    def change_cost(self) -> float:
        """One change's refresh minus the nothing-changed one after it (median of rounds)."""
        return statistics.median(c.wall - n.wall for c, n in self.changes)

    @property
    def change_mb(self) -> float:
        return max(c.peak for c, _ in self.changes)

    @property
    def per_occurrence(self) -> float:
        return self.db_bytes / max(self.occurrences, 1)


def aggregator(*args: str) -> list[str]:
    return [sys.executable, "-m", "aggregator", *args]


class ServerSampler(TreeSampler):
    """TreeSampler of the PostgreSQL server, once a second: its memory changes slowly, and
    reading smaps_rollup of backends that map the shared buffers every 50 ms took most of a
    core of this 2-core machine away from the refresh measured."""

    def run(self) -> None:
        while not self._done.is_set():
            sums = [measure.memory(pid) for pid in descendants(self.root)]
            self.peak_rss = max(self.peak_rss, sum(r for r, _ in sums))
            self.peak_pss = max(self.peak_pss, sum(p for _, p in sums))
            self._done.wait(SERVER_INTERVAL)


class Cluster:
    """The run's private PostgreSQL server: tests/postgres.py's Postgres (initdb and pg_ctl in
    a temporary folder, as user postgres when root, on a free port of 127.0.0.1) with
    PG_SETTINGS; one empty database per size."""

    def __init__(self, overrides: dict[str, str]) -> None:
        sys.path.insert(0, str(ROOT))
        from tests.postgres import Postgres, binaries  # noqa: PLC0415

        bindir = binaries()
        if bindir is None:
            sys.exit("--databases postgresql: no initdb (Debian: apt-get install -y postgresql)")
        settings = {**PG_SETTINGS, **overrides}
        self.server = Postgres(bindir, settings=settings)
        self.server.start()
        self.pid = int((self.server.data / "postmaster.pid").read_text().split()[0])
        asyncio.run(self._execute("postgres", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        version = asyncio.run(self._fetchval("postgres", "SHOW server_version"))
        print(
            f"PostgreSQL {version} on 127.0.0.1:{self.server.port} ({self.server.root}), "
            + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "listen_addresses"),
            flush=True,
        )

    def url(self, name: str) -> str:
        return self.server.url(name, "postgresql")

    async def _execute(self, name: str, statement: str, *params) -> None:
        conn = await asyncpg.connect(self.url(name))
        try:
            await conn.execute(statement, *params)
        finally:
            await conn.close()

    async def _fetchval(self, name: str, query: str, *params):
        conn = await asyncpg.connect(self.url(name))
        try:
            return await conn.fetchval(query, *params)
        finally:
            await conn.close()

    async def _fetch(self, name: str, query: str, *params) -> list:
        conn = await asyncpg.connect(self.url(name))
        try:
            return await conn.fetch(query, *params)
        finally:
            await conn.close()

    def memory(self) -> tuple[float, float]:
        """The server's process tree now: summed RSS and PSS in MB."""
        sums = [measure.memory(pid) for pid in descendants(self.pid)]
        return sum(r for r, _ in sums) / MB, sum(p for _, p in sums) / MB

    def reset_statements(self) -> None:
        asyncio.run(self._execute("postgres", "SELECT pg_stat_statements_reset()"))

    def print_statements(self, database: str, what: str, top: int) -> None:
        """pg_stat_statements' top statements of one database by total time since the reset."""
        rows = asyncio.run(
            self._fetch(
                "postgres",
                "SELECT calls, total_exec_time, rows, query, "
                " sum(total_exec_time) OVER () AS everything,"
                " sum(calls) OVER () AS all_calls"
                " FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)"
                " ORDER BY total_exec_time DESC",
                database,
            )
        )
        if not rows:
            return
        print(
            f"  pg_stat_statements, {what}: {rows[0]['everything'] / 1000:.2f} s in the server "
            f"over {rows[0]['all_calls']:,} calls of {len(rows)} statements; the top {top}:"
        )
        for r in rows[:top]:
            query = " ".join(r["query"].split())
            print(
                f"  {r['total_exec_time'] / 1000:8.2f} s {r['calls']:9,} calls "
                f"{r['total_exec_time'] / max(r['calls'], 1):8.3f} ms/call {r['rows']:10,} rows  "
                f"{query[:150]}"
            )
        sys.stdout.flush()

    def stop(self) -> None:
        self.server.stop()


@dataclass
class Target:
    """Where one run's refreshes store: a SQLite file in the size's folder, or a database of
    the run's PostgreSQL cluster."""

    kind: str
    #: the SQLite file
    file: Path | None = None
    cluster: Cluster | None = None
    #: the PostgreSQL database's name
    name: str = ""

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
        if self.cluster is None:
            env["AGGREGATOR_DATABASE_URL"] = f"sqlite+aiosqlite:///{self.file}"
        else:
            env["AGGREGATOR_DATABASE_URL"] = self.cluster.url(self.name)
            # the SQLite run's folder stays its own: a publish compares with what is there
            env["AGGREGATOR_PUBLISHED"] = f"published-{self.kind}"
        return env

    def fetchval(self, query: str, *params):
        """The first value of a query written with ? parameters."""
        if self.cluster is None:
            with sqlite3.connect(f"file:{self.file}?mode=ro", uri=True, timeout=60) as conn:
                return conn.execute(query, params).fetchone()[0]
        numbered = iter(range(1, len(params) + 1))
        query = re.sub(r"\?", lambda _: f"${next(numbered)}", query)
        return asyncio.run(self.cluster._fetchval(self.name, query, *params))

    def execute(self, statement: str, *params) -> None:
        if self.cluster is None:
            with sqlite3.connect(self.file, timeout=60) as conn:
                conn.execute(statement, params)
            return
        numbered = iter(range(1, len(params) + 1))
        statement = re.sub(r"\?", lambda _: f"${next(numbered)}", statement)
        asyncio.run(self.cluster._execute(self.name, statement, *params))


def environment(db: Path) -> dict[str, str]:
    return Target("sqlite", file=db).environment()


def step(
    what: str, command: list[str], env: dict[str, str], folder: Path, size: Size | None = None
) -> Measured:
    """Run one measured step; stop the bench when it fails (its figure would mean nothing).
    On PostgreSQL the server's process tree is sampled meanwhile, its peaks kept in size."""
    print(f"  {what} ...", end=" ", flush=True)
    cluster = size.target.cluster if size is not None and size.target else None
    sampler = ServerSampler(cluster.pid) if cluster else None
    if sampler:
        sampler.start()
    measured = run_measured(command, env, folder)
    if sampler:
        sampler.stop()
        size.server_rss = max(size.server_rss, sampler.peak_rss / MB)
        size.server_pss = max(size.server_pss, sampler.peak_pss / MB)
        print(
            f"{measured.wall:.2f} s (PostgreSQL's tree peak RSS "
            f"{sampler.peak_rss / MB:,.0f} MB, PSS {sampler.peak_pss / MB:,.0f})",
            flush=True,
        )
    else:
        print(f"{measured.wall:.2f} s", flush=True)
    if measured.returncode != 0:
        sys.exit(f"{what} failed (exit {measured.returncode}):\n{measured.output[-3000:]}")
    return measured


def storage(target: Target) -> tuple[int, int]:
    """The database's bytes (SQLite: with its -wal; PostgreSQL: pg_database_size, without
    the cluster's WAL) and its rows in `occurrences`."""
    rows = target.fetchval("SELECT count(*) FROM occurrences")
    if target.cluster is None:
        db = target.file
        return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists()), rows
    return target.fetchval("SELECT pg_database_size(current_database())"), rows


def measure_size(
    members: int, args: argparse.Namespace, folder: Path, serve: bool, cluster: Cluster | None
) -> list[Size]:
    """Every figure of one size on each database asked, in the folder given (emptied first)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    config = write_network(folder, members, args.events, args.seed)
    feeds = sorted((folder / "feeds").glob("*.ics"))
    vevents = sum(f.read_bytes().count(b"BEGIN:VEVENT") for f in feeds)
    feeds_mb = sum(f.stat().st_size for f in feeds) / MB
    print(
        f"\n== {members} members x {args.events} events: {vevents:,} VEVENTs, "
        f"{feeds_mb:.1f} MB of feeds (written in {time.perf_counter() - started:.1f} s) "
        f"in {folder}",
        flush=True,
    )
    baseline_command = [sys.executable, "-c", BASELINE, str(folder / "feeds")]
    baseline = step("baseline", baseline_command, environment(folder / "bench.db"), folder)
    several = len(args.databases) > 1
    if several:  # each database starts from the feeds as written
        shutil.copytree(folder / "feeds", folder / "feeds.written")
    done = []
    for kind in args.databases:
        if several:
            print(f"-- {members} members on {kind}", flush=True)
            shutil.rmtree(folder / "feeds")
            shutil.copytree(folder / "feeds.written", folder / "feeds")
        if kind == "sqlite":
            target = Target(kind, file=folder / "bench.db")
        else:
            name = cluster.server.create_database(f"m{members}_")
            target = Target(kind, cluster=cluster, name=name)
        size = Size(members, kind, vevents, feeds_mb, baseline, target=target)
        measure_database(size, config, folder, args, serve)
        done.append(size)
    return done


def measure_database(
    size: Size, config: Path, folder: Path, args: argparse.Namespace, serve: bool
) -> None:
    """The figures of one size on one database (size.target), after the baseline."""
    members, target, cluster = size.members, size.target, size.target.cluster
    env, refresh = target.environment(), aggregator("refresh", "--config", str(config))
    step("migrate", aggregator("migrate", "--config", str(config)), env, folder, size)
    if cluster:
        cluster.reset_statements()
    size.cold = step("cold refresh", refresh, env, folder, size)
    if cluster:
        cluster.print_statements(target.name, "cold refresh", args.pg_statements)
        cluster.reset_statements()
    size.db_bytes, size.occurrences = storage(target)
    size.warm = step("warm refresh", refresh, env, folder, size)
    changed, other = members // 2 + 1, members // 3 + 1
    for round_ in range(args.rounds):
        edit_member(folder, changed, 3, seed=100 + round_)
        after = step("refresh after a change", refresh, env, folder, size)
        nothing = step("refresh with nothing changed", refresh, env, folder, size)
        size.changes.append((after, nothing))
    edit_member(folder, other, 3, seed=200)
    one = aggregator("refresh", "--config", str(config), f"m{other:04d}")
    size.one_member = step("refresh of one member", one, env, folder, size)
    if cluster:
        cluster.print_statements(target.name, "warm, changes, one member", args.pg_statements)
        size.server_idle_rss = cluster.memory()[0]
    report(size)
    if serve:
        size.serving = serve_under_load(folder, config, target, env, members, changed, args)
        report_serving(size)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 1800) -> str:
    """The ETag of url once the server answers it (it publishes what is stored first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"aggregator serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.headers["ETag"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    sys.exit(f"aggregator serve did not answer {url} in {timeout:.0f} s")


def stamp(target: Target, when: datetime):
    """A naive UTC time as the store writes it: text on SQLite, a timestamp on PostgreSQL."""
    return when.strftime("%Y-%m-%d %H:%M:%S.%f") if target.cluster is None else when


def make_due(target: Target, changed: int) -> datetime:
    """Every source due in a second, the changed one first; the time written.

    The scheduler asks the store what is due (next_check_at) every tick and starts the
    longest waiting first; the column holds naive UTC as SQLAlchemy writes it."""
    due = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
    target.execute("UPDATE sources SET next_check_at = ?", stamp(target, due))
    first = stamp(target, due - timedelta(seconds=1))
    target.execute("UPDATE sources SET next_check_at = ? WHERE id = ?", first, f"m{changed:04d}")
    return due - timedelta(seconds=2)


def sources_read_since(target: Target, since: datetime) -> int:
    query = "SELECT count(*) FROM sources WHERE last_fetch_at >= ?"
    return target.fetchval(query, stamp(target, since))


def serve_under_load(
    folder: Path, config: Path, target: Target, env: dict, members: int, changed: int, args
) -> Serving | None:
    """wrk on /calendar.ics (304s) while serve's scheduler reads every source, one changed."""
    if shutil.which("wrk") is None:
        print("serve: skipped, wrk is missing (Debian: apt-get install -y wrk)")
        return None
    edit_member(folder, changed, 3, seed=300)
    port = free_port()
    url = f"http://127.0.0.1:{port}/calendar.ics"
    command = aggregator("serve", "--config", str(config), "--port", str(port))
    log = (folder / "serve.log").open("wb")
    server = subprocess.Popen(command, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    sampler = TreeSampler(server.pid)
    sampler.start()
    try:
        started = time.perf_counter()
        etag = wait_ready(url, server)
        print(f"serve: answering after {time.perf_counter() - started:.1f} s, ETag {etag}")
        since = make_due(target, changed)
        # the first tick comes within TICK_S, then STARTS_PER_TICK sources per tick
        seconds = args.wrk_seconds or TICK_S * (math.ceil(members / STARTS_PER_TICK) + 2)
        serving = run_wrk(url, etag, seconds, folder)
        serving.read = sources_read_since(target, since)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        sampler.stop()
        log.close()
    serving.server = Measured(0, 0, sampler.peak_rss / MB, sampler.peak_pss / MB, 0, "")
    return serving


def run_wrk(url: str, etag: str, seconds: int, folder: Path) -> Serving:
    """One wrk run; its latency percentiles, rate and the statuses it got."""
    script = folder / "etag.lua"
    script.write_text(WRK_SCRIPT)
    command = ["wrk", f"-t{2}", f"-c{32}", f"-d{seconds}s", "--latency", "-s", str(script)]
    print(f"serve: {' '.join(command)} {url} -- {etag}", flush=True)
    out = subprocess.run([*command, url, "--", etag], capture_output=True, text=True).stdout

    def figure(pattern: str) -> float:
        found = re.search(pattern, out, re.MULTILINE)
        return duration_ms(found.group(1)) if found else math.nan

    rate = re.search(r"Requests/sec:\s+(\S+)", out)
    statuses = re.search(r"statuses: (.*)", out)
    return Serving(
        p50_ms=figure(r"^\s+50%\s+(\S+)"),
        p99_ms=figure(r"^\s+99%\s+(\S+)"),
        max_ms=figure(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)"),
        requests_per_s=float(rate.group(1)) if rate else math.nan,
        statuses=statuses.group(1) if statuses else out[-500:],
        seconds=seconds,
        read=0,
    )


def duration_ms(text: str) -> float:
    """wrk's '812.00us', '1.20ms', '2.01s', '1.00m' in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSES"


def memory(m: Measured) -> str:
    return (
        f"peak {m.peak:,.0f} MB (tree RSS {m.tree_rss:,.0f}, tree PSS {m.tree_pss:,.0f}, "
        f"ru_maxrss {m.maxrss:,.0f})"
    )


def report(s: Size) -> None:
    """One size's figures, each next to its target (the targets are for 1,000 members)."""
    print(f"baseline   from_ical      {s.baseline.wall:7.2f} s  {memory(s.baseline)}")
    print(f"           ({s.baseline.last_line()})")
    print(
        f"cold       refresh        {s.cold.wall:7.2f} s  {s.ratio:.2f}x baseline "
        f"[<= {COLD_RATIO}x: {verdict(s.ratio <= COLD_RATIO)}]  {memory(s.cold)} "
        f"[<= {COLD_MB} MB: {verdict(s.cold.peak <= COLD_MB)}]"
    )
    print(f"           ({s.cold.last_line()})")
    print(
        f"warm       refresh        {s.warm.wall:7.2f} s  [<= {WARM_S} s: "
        f"{verdict(s.warm.wall <= WARM_S)}]  {memory(s.warm)}"
    )
    for n, (after, nothing) in enumerate(s.changes, 1):
        cost = after.wall - nothing.wall
        print(
            f"one change round {n}: {after.wall:.2f} s, nothing changed {nothing.wall:.2f} s: "
            f"{cost:+.2f} s [<= +{CHANGE_S} s: {verdict(cost <= CHANGE_S)}]  {memory(after)} "
            f"[<= {CHANGE_MB} MB: {verdict(after.peak <= CHANGE_MB)}]"
        )
        print(f"           ({after.last_line()})")
    print(
        f"one member refresh ID   {s.one_member.wall:7.2f} s  {memory(s.one_member)}"
        f"\n           ({s.one_member.last_line()})"
    )
    if s.target and s.target.cluster:
        print(
            f"PostgreSQL server tree: peak RSS {s.server_rss:,.0f} MB, PSS {s.server_pss:,.0f} "
            f"MB over the steps; RSS {s.server_idle_rss:,.0f} MB after them"
        )
    where = "pg_database_size" if s.target and s.target.cluster else "with -wal"
    print(
        f"storage    {s.db_bytes / MB:,.1f} MB ({where}), {s.occurrences:,} occurrences: "
        f"{s.per_occurrence:,.0f} B/occurrence [<= {BYTES}: {verdict(s.per_occurrence <= BYTES)}]"
    )
    sys.stdout.flush()


def report_serving(s: Size) -> None:
    if not s.serving:
        return
    v = s.serving
    print(
        f"serve      304s under wrk for {v.seconds} s: p50 {v.p50_ms:.1f} ms, p99 "
        f"{v.p99_ms:.1f} ms [<= {P99_MS} ms: {verdict(v.p99_ms <= P99_MS)}], max "
        f"{v.max_ms:.1f} ms, {v.requests_per_s:,.0f} requests/s; {v.statuses}; "
        f"{v.read} of {s.members} sources read meanwhile; server peak tree RSS "
        f"{v.server.tree_rss:,.0f} MB (PSS {v.server.tree_pss:,.0f})",
        flush=True,
    )


def table(sizes: list[Size]) -> str:
    """The README's scaling table."""
    rows = [
        "| members | VEVENTs | occurrences | baseline | cold (ratio) | one change | warm "
        "| peak RSS (cold / change) | DB size | B/occurrence |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in sizes:
        rows.append(
            f"| {s.members:,} | {s.vevents:,} | {s.occurrences:,} | {s.baseline.wall:.1f} s "
            f"| {s.cold.wall:.1f} s ({s.ratio:.2f}x) | {s.change_cost:+.2f} s "
            f"| {s.warm.wall:.2f} s | {s.cold.peak:,.0f} / {s.change_mb:,.0f} MB "
            f"| {s.db_bytes / MB:,.0f} MB | {s.per_occurrence:,.0f} |"
        )
    return "\n".join(rows)


def table_databases(sizes: list[Size]) -> str:
    """The scaling table with one row per size and database, side by side."""
    rows = [
        "| members | database | VEVENTs | occurrences | baseline | cold (ratio) | one change "
        "| warm | one member | peak RSS aggregator (cold / change) | peak RSS (PSS) PostgreSQL "
        "| DB size | B/occurrence |",
        "| ---: | --- " + "| ---: " * 11 + "|",
    ]
    for s in sizes:
        server = (
            f"{s.server_rss:,.0f} ({s.server_pss:,.0f}) MB"
            if s.target and s.target.cluster
            else "–"
        )
        rows.append(
            f"| {s.members:,} | {s.database} | {s.vevents:,} | {s.occurrences:,} "
            f"| {s.baseline.wall:.1f} s | {s.cold.wall:.1f} s ({s.ratio:.2f}x) "
            f"| {s.change_cost:+.2f} s | {s.warm.wall:.2f} s | {s.one_member.wall:.2f} s "
            f"| {s.cold.peak:,.0f} / {s.change_mb:,.0f} MB | {server} "
            f"| {s.db_bytes / MB:,.0f} MB | {s.per_occurrence:,.0f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="100,300,1000", help="sizes, comma-separated")
    parser.add_argument("--events", type=int, default=200, help="VEVENTs per member (about)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="one-change rounds per size")
    parser.add_argument(
        "--serve", nargs="?", const="largest", help="sizes to measure serve at (default largest)"
    )
    parser.add_argument("--wrk-seconds", type=int, help="default: the scheduler's whole cycle")
    parser.add_argument("--keep", type=Path, help="keep the generated folders here")
    parser.add_argument(
        "--databases",
        default="sqlite",
        help="sqlite, postgresql or both, comma-separated: each size is measured on each",
    )
    parser.add_argument(
        "--pg-statements",
        type=int,
        default=8,
        help="PostgreSQL: print this many top statements (pg_stat_statements) per phase",
    )
    parser.add_argument(
        "--serve-only",
        action="store_true",
        help="only --serve, on the networks an earlier run kept in --keep (its database too)",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="PostgreSQL: a server setting over PG_SETTINGS (e.g. work_mem=64MB), repeatable",
    )
    args = parser.parse_args()
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    if not args.databases or set(args.databases) - {"sqlite", "postgresql"}:
        parser.error("--databases: sqlite, postgresql or both")
    if args.serve_only:
        if args.databases != ["sqlite"]:
            parser.error("--serve-only measures a kept SQLite database only")
        if args.keep is None:
            parser.error("--serve-only needs --keep: the folder of an earlier run")
        for n in [int(n) for n in args.members.split(",")]:
            folder = args.keep / f"{n}"
            target = Target("sqlite", file=folder / "bench.db")
            serving = serve_under_load(
                folder, folder / "sources.yaml", target, target.environment(), n, n // 2 + 1, args
            )
            report_serving(Size(n, serving=serving))
        return
    sizes = [int(n) for n in args.members.split(",")]
    serve_at = set()
    if args.serve:
        serve_at = (
            {max(sizes)} if args.serve == "largest" else {int(n) for n in args.serve.split(",")}
        )
    root = args.keep or Path(tempfile.mkdtemp(prefix="aggregator-scale-"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; targets are issue 15's")
    cluster = None
    try:
        if "postgresql" in args.databases:
            cluster = Cluster(dict(s.split("=", 1) for s in args.pg_setting))
        done = [
            size
            for n in sizes
            for size in measure_size(n, args, root / f"{n}", n in serve_at, cluster)
        ]
    finally:
        if cluster:
            cluster.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("\n" + (table(done) if args.databases == ["sqlite"] else table_databases(done)))


if __name__ == "__main__":
    main()
