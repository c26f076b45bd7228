"""A storm of renders from one client, and what the others get meanwhile (issue 25).

    .venv/bin/python bench/storm.py NETWORK_DIR [--seconds 240] [--windows 40] [--feeds 12]
                                    [--requests 120] [--storm-timeout 90] [--refused-pause 0.25]
                                    [--port 8098] [--budget-mb MB] [--no-access-log] [--seed 1]
                                    [--switch-interval S]

NETWORK_DIR is prepared as for bench/serve.py: sources.yaml, the database a.db refreshed
(`aggregator migrate`, `aggregator refresh` with AGGREGATOR_DATABASE_URL=sqlite:////NETWORK_DIR/a.db)
and its published folder written (`aggregator export`, which writes it first; refresh does
not): NETWORK_DIR/published, or $AGGREGATOR_PUBLISHED relative to it (bench/README.md has the
commands). Only the command line, HTTP and /proc are used (never aggregator's own functions):

1. `aggregator serve --no-scheduler` on 127.0.0.1 with the default settings (the access log
   on, as a new user has it; --no-access-log turns it off; --budget-mb sets
   outputs.disk_budget_mb in a copy of sources.yaml beside it, removed at the end;
   --switch-interval S runs the same command line with sys.setswitchinterval(S), an
   experiment on how long the event loop waits for the GIL);
2. the probes, each from its own client address (its sockets bound to 127.0.0.2, .3, .4,
   .5: the whole of 127/8 is local on Linux), sequential, --requests of each at a steady
   pace over --seconds: (a) an event page /events/{id} (ids from /events.json), (b) a
   member's calendar /calendar.ics?source=ID, (c) a 304 of /calendar.ics (If-None-Match:
   its gzip ETag), and (d) /healthz (answered from memory: how long the event loop keeps a
   request waiting; no target). Each id and member is asked once in the whole run, so every
   (a) and (b) is a render, none a kept body;
3. baseline: the probes alone;
4. storm: the probes again while one client (127.0.0.1, its own process) keeps --windows
   distinct /calendar.ics?from=...&days=... of 200 to 550 days and --feeds
   /feed.atom?category=RANDOM (a new random category at every request: a filter that admits
   nothing reads every change of 30 days, and is never a kept body) under way at once,
   each request given up (its connection closed) after --storm-timeout seconds, and
   fired again as soon as it ends (after about --refused-pause seconds when refused: a
   client that ignores Retry-After); the storm's statuses are counted;
5. throughout, every 0.25 s: the disk held by serve's process (the sizes of its open files
   that are deleted, each file once: its unlinked temporary bodies and scratch files, which
   the kernel keeps while they are open; the files of a published folder's version replaced
   meanwhile are shown apart, the budget does not count the folder), its VmRSS and CPU time;
6. a summary: p50/p95/p99/max of each probe, baseline and storm side by side, against
   500 ms (PASS only when every answer was the status expected, too: for the 304 probe a
   200 with a new ETag is allowed, the folder's hourly rewrite may change it, and it is
   counted apart), the disk held against outputs.disk_budget_mb, memory. When /healthz
   showed the folder written again during a phase, it says so: that write's CPU is in
   the phase's figures.

The machine's load is printed with the figures: timings taken while others run are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import http.client
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import yaml
from serve import Server, memory, port_free, proc_status

KB, MB = 1024, 1024 * 1024
#: the target of every probe's p99, in seconds
P99_S = 0.5
#: outputs.disk_budget_mb when sources.yaml gives none (config.OutputsConfig)
DEFAULT_BUDGET_MB = 2048
#: the storm's client, and each probe's own
STORM_ADDRESS = "127.0.0.1"
PROBE_ADDRESSES = {
    "event page": "127.0.0.2",
    "member calendar": "127.0.0.3",
    "calendar 304": "127.0.0.4",
    "healthz": "127.0.0.5",
}
#: the probes with a target (/healthz is there to tell a blocked event loop)
TARGETED = ("event page", "member calendar", "calendar 304")
#: serve's command line with another GIL switch interval (--switch-interval)
SWITCHED = (
    "import sys; sys.setswitchinterval({}); from aggregator.cli import main; sys.exit(main())"
)
#: the 304 probe's answer when the folder was written again meanwhile (a new ETag)
NEW_ETAG = "200 new ETag"
#: a probe's request is given up after this many seconds (counted as that long)
PROBE_TIMEOUT_S = 60.0
#: the disk, memory and CPU of serve are looked at this often
SAMPLE_EVERY_S = 0.25
#: serve is given this long to answer its first 200
START_GIVE_UP_S = 180.0
#: event ids read from this many pages of /events.json
ID_PAGES = 6
#: the exceptions and warnings in serve's log
LOGGED = re.compile(r"^.*\b(?:ERROR|WARNING|Error|Exception)\b.*$", re.MULTILINE)
GZIP = {"Accept-Encoding": "gzip"}
TICKS = os.sysconf("SC_CLK_TCK")


# serve's process, as /proc shows it


@dataclass
class Held:
    """What the sampler saw of serve during one phase."""

    disk_max: int = 0
    disk_files_max: int = 0
    #: the sizes of the largest files at the sample of disk_max
    disk_peak: list[int] = field(default_factory=list)
    #: files of the published folder's versions replaced since they were opened (not
    #: counted: the folder is the operator's disk, not the budget's)
    folder_max: int = 0
    rss_max: int = 0
    samples: int = 0
    disk_last: int = 0

    def add(self, sizes: list[int], folder: int, rss: int) -> None:
        disk, files = sum(sizes), len(sizes)
        self.folder_max = max(self.folder_max, folder)
        self.samples += 1
        self.disk_last = disk
        if disk > self.disk_max:
            self.disk_max, self.disk_peak = disk, sorted(sizes, reverse=True)[:8]
        self.disk_files_max = max(self.disk_files_max, files)
        self.rss_max = max(self.rss_max, rss)


def deleted_files(pid: int, published: Path) -> tuple[list[int], int]:
    """The sizes of the deleted files a process holds open, each file once, but those of
    the published folder; and the bytes of those (a version replaced while its files were
    open). A TemporaryFile is made with O_TMPFILE: its link reads '/tmp/#INODE (deleted)',
    with no name to tell a body's file from a render's scratch file."""
    seen: dict[tuple[int, int], tuple[int, bool]] = {}
    folder, prefix = f"/proc/{pid}/fd", str(published.resolve()) + "/"
    try:
        fds = os.listdir(folder)
    except FileNotFoundError:
        return [], 0
    for fd in fds:
        path = f"{folder}/{fd}"
        try:
            target = os.readlink(path)
            if not (target.endswith(" (deleted)") or "aggregator-body" in target):
                continue
            stat = os.stat(path)
        except OSError:  # closed meanwhile
            continue
        seen[(stat.st_dev, stat.st_ino)] = (stat.st_size, target.startswith(prefix))
    counted = [size for size, in_folder in seen.values() if not in_folder]
    return counted, sum(size for size, in_folder in seen.values() if in_folder)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Sampler(threading.Thread):
    """Looks at serve every SAMPLE_EVERY_S seconds; `phase` names where a sample goes."""

    def __init__(self, pid: int, published: Path) -> None:
        super().__init__(daemon=True)
        self.pid, self.published = pid, published
        self.phase = "start"
        self.held: dict[str, Held] = collections.defaultdict(Held)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_EVERY_S):
            try:
                sizes, folder = deleted_files(self.pid, self.published)
                rss = proc_status(self.pid)["VmRSS"] * KB
            except (FileNotFoundError, ProcessLookupError):
                return
            self.held[self.phase].add(sizes, folder, rss)


# the server


def configuration(network: Path, budget_mb: int | None) -> tuple[Path, int, bool]:
    """The sources.yaml to serve (a copy beside it with outputs.disk_budget_mb when a
    budget is given: its relative paths mean the same there), the budget in MB, and
    whether the file is the bench's own (removed at the end)."""
    path = network / "sources.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if budget_mb is None:
        return path, (data.get("outputs") or {}).get("disk_budget_mb", DEFAULT_BUDGET_MB), False
    data.setdefault("outputs", {})["disk_budget_mb"] = budget_mb
    copy = network / f"storm-{os.getpid()}.yaml"
    copy.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return copy, budget_mb, True


def environment(config: Path, network: Path, published: Path, access_log: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    env["AGGREGATOR_CONFIG"] = str(config)
    env["AGGREGATOR_DATABASE_URL"] = f"sqlite:///{network / 'a.db'}"
    env["AGGREGATOR_PUBLISHED"] = str(published)
    if not access_log:
        env["AGGREGATOR_ACCESS_LOG"] = "0"
    return env


def start(command: list[str], env: dict[str, str], log: Path, port: int) -> tuple[Server, float]:
    """Spawn serve; it and the seconds to its first 200 of /calendar.ics (headers only)."""
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server("serve", process, log)
    while time.perf_counter() - started < START_GIVE_UP_S:
        if process.poll() is not None:
            sys.exit(f"serve exited with {process.returncode}:\n{server.tail()}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", "/calendar.ics", headers=GZIP)
            if connection.getresponse().status == 200:
                return server, time.perf_counter() - started
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(0.05)
    server.stop()
    sys.exit(f"serve did not answer /calendar.ics in {START_GIVE_UP_S:.0f} s:\n{server.tail()}")


# what the probes ask for


@dataclass
class Known:
    """Event ids, members and the calendar's gzip ETag, from the server itself."""

    ids: list[str]
    sources: list[str]
    etag_gz: str
    calendar_gz: int


def session(address: str, timeout: float | None) -> aiohttp.ClientSession:
    """A client whose sockets are bound to `address` (to the server, another client)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=0),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def known(base: str) -> Known:
    async with session("127.0.0.6", 300) as client:
        async with client.get(base + "/calendar.ics", headers=GZIP) as response:
            etag_gz, size = response.headers["ETag"], int(response.headers["Content-Length"])
        ids, following = [], "/events.json"
        for _ in range(ID_PAGES):
            async with client.get(base + following, headers=GZIP) as response:
                page = json.loads(await _json(response))
            ids += [e["id"] for e in page["events"]]
            following = page.get("next")
            if not following:
                break
        headers = {"Accept": "application/json"}
        async with client.get(base + "/sources", headers=headers) as response:
            sources = [s["id"] for s in json.loads(await response.read())["sources"]]
    return Known(ids, sources, etag_gz, size)


async def _json(response: aiohttp.ClientResponse) -> bytes:
    data = await response.read()
    return gzip.decompress(data) if response.headers.get("Content-Encoding") == "gzip" else data


@dataclass
class Probe:
    """What one probe got: statuses, seconds per answer (to its last byte)."""

    expected: int
    statuses: collections.Counter = field(default_factory=collections.Counter)
    seconds: list[float] = field(default_factory=list)
    size: int = 0
    #: the 304 probe: 200s with a new ETag (the folder written again), not in `seconds`
    changed: list[float] = field(default_factory=list)
    #: /healthz: the folder's versions seen (when each was written)
    published: set[str] = field(default_factory=set)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        if not ordered:
            return float("nan")
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]  # nearest rank

    @property
    def ok(self) -> bool:
        return (
            bool(self.seconds)
            and set(self.statuses) <= {self.expected, NEW_ETAG}
            and self.quantile(0.99) <= P99_S
        )

    def figures(self) -> str:
        if not self.seconds:
            return "no answers"
        statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(self.statuses.items(), key=str))
        changed = f"; the 200s took {ms(max(self.changed))} at most" if self.changed else ""
        return (
            f"{len(self.seconds):4,} ({statuses}), {self.size / len(self.seconds) / KB:7,.1f} KB, "
            f"p50 {ms(self.quantile(0.5))}, p95 {ms(self.quantile(0.95))}, "
            f"p99 {ms(self.quantile(0.99))}, max {ms(max(self.seconds))}{changed}"
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:7,.2f} ms"


async def probe(
    base: str, kind: str, paths: list[str], headers: dict[str, str], pace: float
) -> Probe:
    """Each path once, one after the other, one started every `pace` seconds (at once
    after a slower answer)."""
    found = Probe(304 if kind == "calendar 304" else 200)
    headers = dict(headers)
    async with session(PROBE_ADDRESSES[kind], PROBE_TIMEOUT_S) as client:
        due = time.perf_counter()
        for path in paths:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            due = max(due + pace, time.perf_counter())
            started = time.perf_counter()
            try:
                async with client.get(base + path, headers=headers) as response:
                    body = await response.read()
                    status = response.status
                    etag = response.headers.get("ETag")
            except TimeoutError:
                status, body = "timeout", b""
            except aiohttp.ClientError as error:
                status, body = type(error).__name__, b""
            took = time.perf_counter() - started
            if kind == "calendar 304" and status == 200 and etag != headers["If-None-Match"]:
                # the folder was written again (its hourly rewrite; the window's day turned):
                # a calendar app keeps the new ETag, and so does the probe
                headers["If-None-Match"] = etag
                found.changed.append(took)
                found.statuses[NEW_ETAG] += 1
                continue
            if kind == "healthz" and status == 200:
                found.published.add(str(json.loads(body).get("published")))
            found.seconds.append(took)
            found.statuses[status] += 1
            found.size += len(body)
    return found


def probe_paths(found: Known, count: int, seed: int) -> list[dict[str, list[str]]]:
    """Two sets of probe paths (baseline, storm) that share no event and no member: every
    event page and member calendar asked is a render, none a body kept from before."""
    draw = random.Random(seed)
    ids, sources = found.ids[:], found.sources[:]
    draw.shuffle(ids)
    draw.shuffle(sources)
    if len(ids) < 2 * count or len(sources) < 2 * count:
        print(
            f"           note: {len(ids):,} event ids and {len(sources):,} members for "
            f"2 x {count} probes: some are asked twice (a kept body the second time)"
        )
    phases = []
    for phase in range(2):

        def take(items: list[str], phase: int = phase) -> list[str]:
            return [items[(phase * count + i) % len(items)] for i in range(count)]

        phases.append(
            {
                "event page": [f"/events/{i}" for i in take(ids)],
                "member calendar": [
                    "/calendar.ics?" + urlencode({"source": s}) for s in take(sources)
                ],
                "calendar 304": ["/calendar.ics"] * count,
                "healthz": ["/healthz"] * count,
            }
        )
    return phases


async def run_probes(
    base: str, paths: dict[str, list[str]], etag_gz: str, seconds: float
) -> dict[str, Probe]:
    headers = {
        "event page": {**GZIP, "Accept": "text/html"},
        "member calendar": GZIP,
        "calendar 304": {**GZIP, "If-None-Match": etag_gz},
        "healthz": {},
    }
    kinds = list(paths)
    results = await asyncio.gather(
        *(
            probe(base, kind, paths[kind], headers[kind], seconds / max(1, len(paths[kind])))
            for kind in kinds
        )
    )
    return dict(zip(kinds, results, strict=True))


# the storm, in its own process (its client's work is not the probes')


def storm_windows(count: int, today: date) -> list[str]:
    """`count` distinct windows of 200 to 550 days, from 30 to 110 days back."""
    paths = []
    for i in range(count):
        first = today - timedelta(days=30 + (i * 80) // max(1, count - 1))
        days = 200 + (i * 350) // max(1, count - 1) + i % 3
        paths.append("/calendar.ics?" + urlencode({"from": first.isoformat(), "days": days}))
    assert len(set(paths)) == count
    return paths


@dataclass
class StormCounts:
    statuses: collections.Counter = field(default_factory=collections.Counter)
    bytes: int = 0
    #: seconds to the last byte of each 200
    done: list[float] = field(default_factory=list)


async def storm(
    base: str,
    windows: list[str],
    feeds: int,
    timeout: float,
    pause: float,
    stop: multiprocessing.synchronize.Event,
    seed: int,
) -> dict[str, StormCounts]:
    counts = {"window": StormCounts(), "feed": StormCounts()}
    draw = random.Random(seed)

    def feed() -> str:
        category = "".join(draw.choices(string.ascii_lowercase, k=12))
        return "/feed.atom?" + urlencode({"category": category})

    async def fire(kind: str, make) -> None:
        count = counts[kind]
        while not stop.is_set():
            started = time.perf_counter()
            refused = False
            try:
                async with asyncio.timeout(timeout):
                    async with client.get(base + make(), headers=GZIP) as response:
                        async for chunk in response.content.iter_chunked(1 << 20):
                            count.bytes += len(chunk)
                        status = response.status
                count.statuses[status] += 1
                if status == 200:
                    count.done.append(time.perf_counter() - started)
                refused = status in (429, 503)
            except TimeoutError:  # given up: the connection is closed
                count.statuses["timeout"] += 1
            except aiohttp.ClientError as error:
                count.statuses[type(error).__name__] += 1
                refused = True
            if refused and pause:
                await asyncio.sleep(pause * draw.uniform(0.5, 1.5))

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.1)

    # fired in a seeded order, so the windows are not always first to be admitted
    fired = [("window", lambda p=p: p) for p in windows] + [("feed", feed)] * feeds
    draw.shuffle(fired)
    async with session(STORM_ADDRESS, None) as client:
        tasks = [asyncio.create_task(fire(kind, make)) for kind, make in fired]
        await watch()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return counts


def storm_process(base, windows, feeds, timeout, pause, stop, seed, results) -> None:
    started = time.process_time()
    counts = asyncio.run(storm(base, windows, feeds, timeout, pause, stop, seed))
    results.put(({k: vars(v) for k, v in counts.items()}, time.process_time() - started))


# the run


@dataclass
class Phase:
    name: str
    probes: dict[str, Probe]
    seconds: float
    cpu: float
    load: tuple[float, float, float]
    held: Held


def run_phase(
    name: str,
    base: str,
    paths: dict[str, list[str]],
    etag_gz: str,
    seconds: float,
    server: Server,
    sampler: Sampler,
) -> Phase:
    sampler.phase = name
    cpu = cpu_seconds(server.pid)
    started = time.perf_counter()
    probes = asyncio.run(run_probes(base, paths, etag_gz, seconds))
    took = time.perf_counter() - started
    return Phase(
        name,
        probes,
        took,
        (cpu_seconds(server.pid) - cpu) / took,
        os.getloadavg(),
        sampler.held[name],
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("network", type=Path, help="holds sources.yaml, a.db and published/")
    parser.add_argument("--seconds", type=float, default=240, help="of each phase's probes")
    parser.add_argument("--requests", type=int, default=120, help="of each probe, each phase")
    parser.add_argument("--windows", type=int, default=40, help="distinct windows of the storm")
    parser.add_argument("--feeds", type=int, default=12, help="filtered feeds of the storm")
    parser.add_argument(
        "--storm-timeout", type=float, default=90, help="a storm request is given up after it"
    )
    parser.add_argument(
        "--refused-pause", type=float, default=0.25, help="after a 429/503 (seconds)"
    )
    parser.add_argument("--port", type=int, default=8098, help="aggregator serve's port")
    parser.add_argument("--budget-mb", type=int, help="outputs.disk_budget_mb (else the file's)")
    parser.add_argument("--no-access-log", action="store_true", help="AGGREGATOR_ACCESS_LOG=0")
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="an experiment: serve runs with sys.setswitchinterval(S) (Python's is 0.005)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    network = args.network.resolve()
    published = network / os.environ.get("AGGREGATOR_PUBLISHED", "published")
    for needed in (network / "sources.yaml", network / "a.db", published / "current"):
        if not needed.exists():
            parser.error(f"{needed} is missing: prepare the network first (see --help)")
    if not port_free(args.port):
        parser.error(f"port {args.port} is taken: give another --port")
    config, budget_mb, own = configuration(network, args.budget_mb)
    logs = Path(tempfile.mkdtemp(prefix="aggregator-bench-storm-"))
    server = None
    try:
        env = environment(config, network, published, not args.no_access_log)
        command = [sys.executable, "-m", "aggregator"]
        if args.switch_interval:  # the same command line, the GIL handed over more often
            command[1:] = ["-c", SWITCHED.format(args.switch_interval)]
        command += ["serve", "--no-scheduler", "--host", "127.0.0.1", "--port", str(args.port)]
        server, start_s = start(command, env, logs / "serve.log", args.port)
        run(args, server, start_s, budget_mb, published)
    finally:
        if server is not None:
            server.stop()
        if own:
            config.unlink(missing_ok=True)
        shutil.rmtree(logs, ignore_errors=True)


def run(
    args: argparse.Namespace, server: Server, start_s: float, budget_mb: int, published: Path
) -> None:
    base = f"http://127.0.0.1:{args.port}"
    load = os.getloadavg()
    print(
        f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, {os.cpu_count()} "
        f"cores, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.network}; "
        f"aggregator at {revision()}",
        flush=True,
    )
    access = "off" if args.no_access_log else "on"
    switch = f", switch interval {args.switch_interval} s" if args.switch_interval else ""
    print(
        f"serve      pid {server.pid}, first 200 after {start_s:.1f} s; default settings, "
        f"access log {access}, disk budget {budget_mb:,} MB{switch}; {memory(server.pid)}",
        flush=True,
    )
    sampler = Sampler(server.pid, published)
    sampler.start()
    found = asyncio.run(known(base))
    print(
        f"known      {len(found.ids):,} event ids from /events.json, {len(found.sources):,} "
        f"members; /calendar.ics {found.calendar_gz / MB:,.1f} MB gzipped, ETag {found.etag_gz}",
        flush=True,
    )
    paths = probe_paths(found, args.requests, args.seed)
    pace = args.seconds / args.requests
    print(
        f"probes     {args.requests} of each, one every {pace:.2f} s, from "
        + ", ".join(f"{k} {a}" for k, a in PROBE_ADDRESSES.items()),
        flush=True,
    )

    baseline = run_phase("baseline", base, paths[0], found.etag_gz, args.seconds, server, sampler)
    report_phase(baseline)

    windows = storm_windows(args.windows, date.today())
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    storm_args = (base, windows, args.feeds, args.storm_timeout, args.refused_pause, stop)
    child = context.Process(target=storm_process, args=(*storm_args, args.seed, results))
    print(
        f"storm      {args.windows} windows ({windows[0]} ... {windows[-1]}) and "
        f"{args.feeds} /feed.atom?category=RANDOM from {STORM_ADDRESS}, gzip, each given up "
        f"after {args.storm_timeout:.0f} s, again {args.refused_pause} s after a refusal",
        flush=True,
    )
    child.start()
    try:
        stormed = run_phase("storm", base, paths[1], found.etag_gz, args.seconds, server, sampler)
    finally:
        stop.set()
    counts, storm_cpu = results.get(timeout=120)
    child.join(timeout=30)
    sampler.phase = "after"
    time.sleep(5)
    report_phase(stormed)
    for kind, count in counts.items():
        statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(count["statuses"].items(), key=str))
        done = count["done"]
        took = f", 200s took p50 {statistics.median(done):.1f} s" if done else ""
        print(
            f"           storm {kind + 's':<8} {sum(count['statuses'].values()):6,} answers "
            f"({statuses}), {count['bytes'] / MB:,.0f} MB read{took}",
            flush=True,
        )
    print(
        f"           storm client CPU {storm_cpu:.1f} s over {stormed.seconds:.0f} s "
        f"({storm_cpu / stormed.seconds:.0%} of a core)",
        flush=True,
    )
    after = sampler.held["after"]
    sampler.stopped.set()
    status = proc_status(server.pid)
    text = server.log.read_text(errors="replace")
    shapes = (re.sub(r"\d[\d,]*", "N", line)[:160] for line in LOGGED.findall(text))
    logged = collections.Counter(shapes)
    for line, n in logged.most_common(8):
        print(f"           serve's log: {n:,}x {line}")
    for trace in tracebacks(text)[:2]:
        print("           " + "\n           ".join(trace))

    budget = budget_mb * MB
    print("\n| probe | baseline | storm | p99 <= 500 ms |\n| --- | --- | --- | --- |")
    for kind in (*TARGETED, "healthz"):
        ok = verdict(stormed.probes[kind].ok) if kind in TARGETED else "(no target)"
        print(
            f"| {kind} | {baseline.probes[kind].figures()} | "
            f"{stormed.probes[kind].figures()} | {ok} |"
        )
    peak = max((baseline.held, stormed.held, after), key=lambda h: h.disk_max)
    disk = peak.disk_max
    print(
        f"\ndisk held by serve (deleted files open): max {disk / MB:,.0f} MB against the budget "
        f"{budget_mb:,} MB [{verdict(disk <= budget)}]; the largest files then "
        + ", ".join(f"{size / MB:,.0f}" for size in peak.disk_peak)
        + f" MB ({stormed.held.disk_files_max} files at most); {after.disk_last / MB:,.0f} MB "
        "5 s after the storm"
    )
    folder = max(h.folder_max for h in (baseline.held, stormed.held, after))
    if folder:
        print(
            f"  and files of replaced versions of the published folder, not counted: "
            f"{folder / MB:,.0f} MB at most"
        )
    print(
        f"memory: VmRSS max {baseline.held.rss_max / MB:,.0f} MB (baseline), "
        f"{stormed.held.rss_max / MB:,.0f} MB (storm), {status['VmRSS'] / KB:,.0f} MB at the "
        f"end; VmHWM {status['VmHWM'] / KB:,.0f} MB"
    )
    print(
        f"serve's CPU: {baseline.cpu:.0%} of a core (baseline), {stormed.cpu:.0%} (storm); "
        f"load {baseline.load[0]:.2f} after the baseline, {stormed.load[0]:.2f} after the storm"
    )
    passed = all(stormed.probes[k].ok for k in TARGETED) and disk <= budget
    print(f"issue 25 under the storm: {verdict(passed)}")


def tracebacks(log: str) -> list[list[str]]:
    """The distinct tracebacks in serve's log (each to its last line), the first of each."""
    found, lines = {}, log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = i + 1
            while end < len(lines) and lines[end].startswith((" ", "\t")):
                end += 1
            trace = lines[max(0, i - 1) : end + 1]
            found.setdefault(trace[-1], trace[-24:])
    return list(found.values())


def revision() -> str:
    """The commit of the working tree the bench runs in, '-dirty' with changes."""
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def report_phase(phase: Phase) -> None:
    held = phase.held
    print(
        f"{phase.name:<10} {phase.seconds:.0f} s, load {phase.load[0]:.2f}, serve's CPU "
        f"{phase.cpu:.0%} of a core, disk held max {held.disk_max / MB:,.0f} MB, "
        f"VmRSS max {held.rss_max / MB:,.0f} MB",
        flush=True,
    )
    for kind, found in phase.probes.items():
        print(f"           {kind:<16} {found.figures()}", flush=True)
    versions = phase.probes["healthz"].published
    if len(versions) > 1:
        print(
            f"           the folder was written again meanwhile (its hourly rewrite): versions "
            f"written {', '.join(sorted(versions))}; its write is in these figures",
            flush=True,
        )


if __name__ == "__main__":
    main()
