"""`aggregator serve` from the published folder, measured side by side with a bare aiohttp handler.

    .venv/bin/python bench/serve.py NETWORK_DIR [--port 8097] [--requests 10000]
                                    [--wrk-seconds 10] [--connections 32] [--concurrency 12]
                                    [--rounds 2] [--seed 1] [--access-log both]

NETWORK_DIR holds sources.yaml and the database a.db, already refreshed and its folder
already written (bench/generate.py, then `aggregator migrate` and `aggregator refresh` with
AGGREGATOR_DATABASE_URL=sqlite:////NETWORK_DIR/a.db). The published folder is
NETWORK_DIR/published, or $AGGREGATOR_PUBLISHED (relative to NETWORK_DIR) when set. Only the
command line, HTTP and /proc are used (never aggregator's own functions):

1. start: `aggregator serve --no-scheduler` at the settings a new user gets (no
   AGGREGATOR_ACCESS_LOG: the access log on, written to serve's log file); seconds from the
   spawn to the first 200 of /calendar.ics, polled with short-timeout requests;
2. sizes: / and the first page of /events.json as sent plain (identity), /calendar.ics plain
   and gzipped, the events on the first JSON page;
3. memory: --requests requests of a seeded mix of every output (plain and gzip, 304s,
   windows, months, searches, pages of events.json, single events, sources), --concurrency at
   a time; the statuses (all must be 200 or 304), VmRSS before and after, VmHWM;
4. speed: wrk -t2 -c CONNECTIONS -d WRK_SECONDS on /calendar.ics, gzip accepted: (a) a 304
   (If-None-Match: the gzip ETag), (b) the gzipped body; the same against a bare aiohttp
   handler holding those bytes in memory, in its own process; each in turn (--rounds
   times, each round starting with the next), the best of each, and the ratio ours / bare.
   With --access-log both (the default) a second `aggregator serve` with
   AGGREGATOR_ACCESS_LOG=0 is measured beside them ("ours, log off"), after the same mix;
   --access-log off measures only that one, default only the first. The access log's lines
   written and dropped are counted in serve's log;
5. a summary of the targets, PASS or FAIL.

Timings taken while other programs run are noisy: compare the ratios, taken in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from multidict import CIMultiDict

KB, MB = 1024, 1024 * 1024
#: the targets
START_S, PAGE_BYTES, JSON_BYTES, RSS_MB, RATIO = 2.0, 300 * KB, 1 * MB, 200, 0.8
#: the start is polled with requests of this timeout, this far apart
POLL_TIMEOUT_S, POLL_PAUSE_S, START_GIVE_UP_S = 0.25, 0.01, 120
#: the mix: windows of /calendar.ics?days=, next links followed, words searched
DAYS = (7, 30, 90, 365)
NEXT_PAGES = 3
WORDS = 40
#: the exceptions in serve's log
ERROR = re.compile(r"^\w*(?:Error|Exception)\b.*$", re.MULTILINE)
#: a line of serve's access log, and the lines it dropped (aggregator/accesslog.py)
ACCESS_LINE = " INFO aiohttp.access: "
DROPPED = re.compile(r" (\d+) lines dropped: ")

#: a bare aiohttp handler: the same gzip bytes and ETag, in memory
BARE = """
import sys
from aiohttp import web

port, path, etag, content_type = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with open(path, "rb") as f:
    gz = f.read()
headers = {"ETag": etag, "Content-Encoding": "gzip", "Content-Type": content_type}


async def calendar(request):
    if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(body=gz, headers=headers)


app = web.Application()
app.router.add_get("/calendar.ics", calendar)
web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
"""


@dataclass
class Server:
    """A server process of the bench and its log."""

    name: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Sizes:
    """Step 2's figures, and what the mix is made of."""

    page: int
    page_en: int
    events_json: int
    json_events: int
    calendar: int
    calendar_gz: int
    etag: str
    etag_gz: str
    ids: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    next_links: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


@dataclass
class Kind:
    """What one kind of request of the mix got."""

    statuses: collections.Counter = field(default_factory=collections.Counter)
    size: int = 0
    seconds: list[float] = field(default_factory=list)

    def add(self, status: int, size: int, seconds: float) -> None:
        self.statuses[status] += 1
        self.size += size
        self.seconds.append(seconds)

    def line(self, name: str) -> str:
        n, p50 = len(self.seconds), statistics.median(self.seconds)
        statuses = ", ".join(f"{s}: {c:,}" for s, c in sorted(self.statuses.items()))
        return (
            f"             {name:<18} {n:6,} requests ({statuses}), "
            f"{self.size / n / KB:9,.1f} KB each, p50 {p50 * 1000:6,.1f} ms, "
            f"slowest {max(self.seconds) * 1000:7,.0f} ms"
        )


@dataclass
class Rate:
    """One wrk run."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    transfer: str
    bad: int
    errors: str


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB (/proc/PID/status)."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0])
    return figures


def memory(pid: int) -> str:
    status = proc_status(pid)
    return f"VmRSS {status['VmRSS'] / KB:,.1f} MB, VmHWM {status['VmHWM'] / KB:,.1f} MB"


def port_free(port: int) -> bool:
    """Whether nothing listens on the port (connections of an earlier run may linger)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(network: Path, published: Path, access_log: bool = True) -> dict[str, str]:
    """serve's environment: the network's files; the access log as a new user has it (on),
    or off (AGGREGATOR_ACCESS_LOG=0)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    env["AGGREGATOR_CONFIG"] = str(network / "sources.yaml")
    env["AGGREGATOR_DATABASE_URL"] = f"sqlite:///{network / 'a.db'}"
    env["AGGREGATOR_PUBLISHED"] = str(published)
    if not access_log:
        env["AGGREGATOR_ACCESS_LOG"] = "0"
    return env


def spawn(name: str, command: list[str], env: dict[str, str], logs: Path) -> Server:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(name, process, log)


def first_200(server: Server, port: int, path: str, started: float) -> float:
    """Seconds from `started` to the first 200 of `path` (its status line and headers)."""
    while time.perf_counter() - started < START_GIVE_UP_S:
        if server.process.poll() is not None:
            sys.exit(f"{server.name} exited with {server.process.returncode}:\n{server.tail()}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=POLL_TIMEOUT_S)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            if response.status == 200:
                seconds = time.perf_counter() - started
                response.read()
                return seconds
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(POLL_PAUSE_S)
    sys.exit(f"{server.name} did not answer {path} in {START_GIVE_UP_S} s:\n{server.tail()}")


async def get(
    session: aiohttp.ClientSession, base: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    async with session.get(base + path, headers=headers or {}) as response:
        return response.status, response.headers.copy(), await response.read()


def client(address: str | None = None) -> aiohttp.ClientSession:
    """A session that shows bodies as sent (no decompression) and asks for no encoding
    unless told; from `address` (a loopback address) when given."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(address, 0)) if address else None,
        auto_decompress=False,
        headers={"Accept-Encoding": "identity"},
        timeout=aiohttp.ClientTimeout(total=300),
    )


async def sizes(base: str, seed: int) -> Sizes:
    """Step 2: the sizes as sent, and the ids, words, next links and sources of the mix."""
    gzip = {"Accept-Encoding": "gzip"}
    async with client() as session:

        async def plain(path: str) -> tuple[CIMultiDict[str], bytes]:
            status, headers, body = await get(session, base, path)
            if status != 200 or "Content-Encoding" in headers:
                sys.exit(f"{path}: {status} {headers.get('Content-Encoding')}, expected plain 200")
            return headers, body

        _, page = await plain("/")
        _, page_en = await plain("/?lang=en")
        _, data = await plain("/events.json")
        first = json.loads(data)
        headers_ics, calendar = await plain("/calendar.ics")
        _, headers_gz, calendar_gz = await get(session, base, "/calendar.ics", gzip)
        if headers_gz.get("Content-Encoding") != "gzip":
            sys.exit("/calendar.ics with Accept-Encoding: gzip came back not gzipped")
        found = Sizes(
            page=len(page),
            page_en=len(page_en),
            events_json=len(data),
            json_events=len(first["events"]),
            calendar=len(calendar),
            calendar_gz=len(calendar_gz),
            etag=headers_ics["ETag"],
            etag_gz=headers_gz["ETag"],
        )
        events = list(first["events"])
        following = first.get("next")
        while following and len(found.next_links) < NEXT_PAGES:
            found.next_links.append(following)
            _, _, data = await get(session, base, following)
            more = json.loads(data)
            events += more["events"]
            following = more.get("next")
        found.ids = [e["id"] for e in events]
        words = sorted({w for e in events for w in re.findall(r"\w{4,}", e["title"].lower())})
        found.words = random.Random(seed).sample(words, min(WORDS, len(words)))
        _, _, data = await get(session, base, "/sources", {"Accept": "application/json"})
        found.sources = [s["id"] for s in json.loads(data)["sources"]]
    return found


def months(count: int) -> list[tuple[date, date]]:
    """The first and last day of this month and the next count - 1."""
    day, spans = date.today().replace(day=1), []
    for _ in range(count):
        following = (day + timedelta(days=32)).replace(day=1)
        spans.append((day, following - timedelta(days=1)))
        day = following
    return spans


def mix(found: Sizes, count: int, seed: int) -> list[tuple[str, str, dict[str, str]]]:
    """`count` requests (kind, path, headers) drawn with the seed, weighted like a network's
    traffic: calendar apps polling first, then the page, the feed, the API, the rest."""
    draw = random.Random(seed)
    gzip = {"Accept-Encoding": "gzip"}
    ahead = months(12)

    def pick(items):
        return draw.choice(items)

    def calendar_window():
        first, last = pick(ahead)
        return f"/calendar.ics?{urlencode({'from': first, 'to': last})}"

    kinds = (
        (10, "calendar plain", lambda: ("/calendar.ics", {})),
        (15, "calendar gzip", lambda: ("/calendar.ics", gzip)),
        (10, "calendar 304", lambda: ("/calendar.ics", {"If-None-Match": found.etag})),
        (
            25,
            "calendar gzip 304",
            lambda: ("/calendar.ics", {**gzip, "If-None-Match": found.etag_gz}),
        ),
        (8, "page", lambda: (f"/?lang={pick(('da', 'en'))}", pick((gzip, {})))),
        (4, "page month", lambda: (f"/?month={pick(ahead)[0]:%Y-%m}", gzip)),
        (3, "page search", lambda: (f"/?{urlencode({'q': pick(found.words)})}", gzip)),
        (3, "calendar days", lambda: (f"/calendar.ics?days={pick(DAYS)}", gzip)),
        (3, "calendar from-to", lambda: (calendar_window(), gzip)),
        (4, "feed", lambda: ("/feed.atom", pick((gzip, {})))),
        (3, "events.json", lambda: (pick(["/events.json", *found.next_links]), gzip)),
        (1, "events.json 5000", lambda: ("/events.json?limit=5000", gzip)),
        (3, "event page", lambda: (f"/events/{pick(found.ids)}", gzip)),
        (2, "event ics", lambda: (f"/events/{pick(found.ids)}.ics", {})),
        (2, "event json", lambda: (f"/events/{pick(found.ids)}.json", gzip)),
        (1, "sources", lambda: ("/sources", {})),
        (1, "source", lambda: (f"/sources/{pick(found.sources)}", {})),
        (2, "healthz", lambda: ("/healthz", {})),
    )
    weights = [w for w, _, _ in kinds]
    requests = []
    for _, kind, make in draw.choices(kinds, weights, k=count):
        path, headers = make()
        requests.append((kind, path, headers))
    return requests


async def run_mix(base: str, requests, concurrency: int) -> tuple[dict[str, Kind], list[str]]:
    """Every request, `concurrency` at a time; what each kind of request got, and the first
    answers that were neither 200 nor 304."""
    kinds: dict[str, Kind] = collections.defaultdict(Kind)
    unexpected: list[str] = []
    queue = iter(requests)

    async def worker(session: aiohttp.ClientSession) -> None:
        for kind, path, headers in queue:
            started = time.perf_counter()
            try:
                status, _, body = await get(session, base, path, headers)
            except (aiohttp.ClientError, TimeoutError) as error:
                status, body = 0, repr(error).encode()
            kinds[kind].add(status, len(body), time.perf_counter() - started)
            if status not in (200, 304) and len(unexpected) < 20:
                unexpected.append(f"             {status} {path} {headers}: {body[:200]!r}")

    async def visitor(number: int) -> None:
        # each worker is one visitor with its own address, one request at a time: the
        # server bounds the renders of one client (outputs.client_renders), not of many
        async with client(f"127.0.0.{2 + number}") as session:
            await worker(session)

    await asyncio.gather(*(visitor(n) for n in range(concurrency)))
    return kinds, unexpected


def wrk(url: str, headers: dict[str, str], seconds: int, connections: int) -> Rate:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout

    def found(pattern: str) -> str | None:
        match = re.search(pattern, out, re.MULTILINE)
        return match.group(1) if match else None

    bad = found(r"Non-2xx or 3xx responses: (\d+)")
    return Rate(
        requests_per_s=float(found(r"Requests/sec:\s+(\S+)") or math.nan),
        p50_ms=duration_ms(found(r"^\s+50%\s+(\S+)")),
        p99_ms=duration_ms(found(r"^\s+99%\s+(\S+)")),
        transfer=found(r"Transfer/sec:\s+(\S+)") or "?",
        bad=int(bad) if bad else 0,
        errors=found(r"(Socket errors: .*)") or "",
    )


def duration_ms(text: str | None) -> float:
    """wrk's '812.00us', '1.20ms', '2.01s', '1.00m' in milliseconds."""
    if text is None:
        return math.nan
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def check_answer(url: str, headers: dict[str, str], status: int, length: int | None) -> None:
    """Before wrk: one request with its headers gets the status (and gzip body) expected."""

    async def one() -> tuple[int, CIMultiDict[str], bytes]:
        async with client() as session:
            return await get(session, url, "", headers)

    got, answer, body = asyncio.run(one())
    if got != status or (length is not None and len(body) != length):
        sys.exit(f"{url} {headers}: {got} with {len(body)} bytes, expected {status} ({length})")
    if length is not None and answer.get("Content-Encoding") != "gzip":
        sys.exit(f"{url} {headers}: not gzipped")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("network", type=Path, help="holds sources.yaml and a.db")
    parser.add_argument("--port", type=int, default=8097, help="aggregator serve's port")
    parser.add_argument("--requests", type=int, default=10_000, help="requests of the mix")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=12,
        choices=range(1, 253),
        metavar="1-252",
        help="visitors of the mix, each from its own 127.0.0.x address",
    )
    parser.add_argument("--wrk-seconds", type=int, default=10, help="of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk's -c")
    parser.add_argument("--rounds", type=int, default=2, help="ours, bare alternately")
    parser.add_argument("--seed", type=int, default=1, help="of the mix")
    parser.add_argument(
        "--access-log",
        choices=("default", "off", "both"),
        default="both",
        help="serve at the default settings (the access log on), with the log off, or both",
    )
    args = parser.parse_args()
    network = args.network.resolve()
    published = network / os.environ.get("AGGREGATOR_PUBLISHED", "published")
    for needed in (network / "sources.yaml", network / "a.db", published / "current"):
        if not needed.exists():
            parser.error(f"{needed} is missing: refresh the network first (see --help)")
    if shutil.which("wrk") is None:
        parser.error("wrk is missing (Debian: apt-get install -y wrk)")
    if not port_free(args.port):
        parser.error(f"port {args.port} is taken: give another --port")
    logs = Path(tempfile.mkdtemp(prefix="aggregator-bench-serve-"))
    servers: list[Server] = []
    try:
        run(args, network, published, logs, servers)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(logs, ignore_errors=True)


def run(
    args: argparse.Namespace, network: Path, published: Path, logs: Path, servers: list[Server]
) -> None:
    env = environment(network, published, access_log=args.access_log != "off")
    base = f"http://127.0.0.1:{args.port}"
    print(
        f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, {os.cpu_count()} "
        f"cores, load {os.getloadavg()[0]:.2f}; {network}, folder {published.resolve()}",
        flush=True,
    )

    # 1. start
    command = [sys.executable, "-m", "aggregator", "serve", "--no-scheduler"]
    command += ["--host", "127.0.0.1", "--port", str(args.port)]
    started = time.perf_counter()
    ours = spawn("serve", command, env, logs)
    servers.append(ours)
    start_s = first_200(ours, args.port, "/calendar.ics", started)
    print(
        f"start      first 200 of /calendar.ics after {start_s:.2f} s "
        f"[<= {START_S:.0f} s: {verdict(start_s <= START_S)}]; {memory(ours.pid)}",
        flush=True,
    )

    # 2. sizes
    found = asyncio.run(sizes(base, args.seed))
    print(
        f"sizes      / {found.page / KB:,.1f} KB plain [<= {PAGE_BYTES / KB:.0f} KB: "
        f"{verdict(found.page <= PAGE_BYTES)}] (/?lang=en {found.page_en / KB:,.1f} KB); "
        f"/events.json first page {found.events_json / KB:,.1f} KB plain, "
        f"{found.json_events:,} events ({found.events_json / max(found.json_events, 1):,.0f} "
        f"B/event) [<= {JSON_BYTES / KB:.0f} KB: {verdict(found.events_json <= JSON_BYTES)}]",
        flush=True,
    )
    print(
        f"           /calendar.ics {found.calendar / KB:,.1f} KB plain, "
        f"{found.calendar_gz / KB:,.1f} KB gzip ({found.calendar / found.calendar_gz:.1f}x); "
        f"{len(found.ids):,} event ids from {1 + len(found.next_links)} JSON pages, "
        f"{len(found.words)} words, {len(found.sources)} sources",
        flush=True,
    )

    # 3. memory
    before = proc_status(ours.pid)["VmRSS"]
    requests = mix(found, args.requests, args.seed)
    started = time.perf_counter()
    kinds, unexpected = asyncio.run(run_mix(base, requests, args.concurrency))
    seconds = time.perf_counter() - started
    statuses = sum((k.statuses for k in kinds.values()), collections.Counter())
    after = proc_status(ours.pid)
    all_ok = set(statuses) <= {200, 304}
    print(
        f"memory     {args.requests:,} mixed requests, {args.concurrency} at a time, in "
        f"{seconds:.1f} s ({args.requests / seconds:,.0f}/s); statuses "
        f"{', '.join(f'{s}: {n:,}' for s, n in sorted(statuses.items()))} "
        f"[all 200/304: {verdict(all_ok)}]",
        flush=True,
    )
    for line in unexpected:
        print(line)
    if unexpected:
        errors = collections.Counter(ERROR.findall(ours.log.read_text(errors="replace")))
        for error, n in errors.most_common(5):
            print(f"             serve's log: {n:,}x {error}")
    for name, kind in sorted(kinds.items(), key=lambda k: -max(k[1].seconds)):
        print(kind.line(name))
    print(
        f"           serve's VmRSS {before / KB:,.1f} MB before, {after['VmRSS'] / KB:,.1f} MB "
        f"after [<= {RSS_MB} MB: {verdict(after['VmRSS'] / KB <= RSS_MB)}], VmHWM (peak) "
        f"{after['VmHWM'] / KB:,.1f} MB",
        flush=True,
    )

    # 4. speed
    bare_port = free_port()
    gz_path = (published / "current" / "calendar.ics.gz").resolve()
    bare_command = [sys.executable, "-c", BARE, str(bare_port), str(gz_path), found.etag_gz]
    bare_command.append("text/calendar; charset=utf-8")
    bare = spawn("bare", bare_command, env, logs)
    servers.append(bare)
    first_200(bare, bare_port, "/calendar.ics", time.perf_counter())
    ours_name = "ours, log off" if args.access_log == "off" else "ours"
    targets = {ours_name: base}
    pids = [ours.pid]
    if args.access_log == "both":
        # the same server with the access log off, beside it: after the same mix (a server
        # that has served it answers a 304 more slowly than a fresh one)
        quiet_port = free_port()
        quiet_command = [*command[:-1], str(quiet_port)]
        quiet = spawn("serve-log-off", quiet_command, environment(network, published, False), logs)
        servers.append(quiet)
        first_200(quiet, quiet_port, "/calendar.ics", time.perf_counter())
        quiet_url = f"http://127.0.0.1:{quiet_port}"
        started = time.perf_counter()
        quiet_kinds, _ = asyncio.run(run_mix(quiet_url, requests, args.concurrency))
        quiet_statuses = sum((k.statuses for k in quiet_kinds.values()), collections.Counter())
        print(
            f"           the same mix from serve with the access log off (pid {quiet.pid}) in "
            f"{time.perf_counter() - started:.1f} s; statuses "
            f"{', '.join(f'{s}: {n:,}' for s, n in sorted(quiet_statuses.items()))}; "
            f"{memory(quiet.pid)}",
            flush=True,
        )
        targets["ours, log off"] = quiet_url
        pids.append(quiet.pid)
    targets["bare"] = f"http://127.0.0.1:{bare_port}"
    pids.append(bare.pid)
    gzip = {"Accept-Encoding": "gzip"}
    cases = {"304": {**gzip, "If-None-Match": found.etag_gz}, "gzip 200": gzip}
    for url in targets.values():
        check_answer(f"{url}/calendar.ics", cases["304"], 304, None)
        check_answer(f"{url}/calendar.ics", cases["gzip 200"], 200, found.calendar_gz)
    best: dict[tuple[str, str], Rate] = {}
    print(
        f"speed      wrk -t2 -c{args.connections} -d{args.wrk_seconds}s /calendar.ics, "
        f"{args.rounds} rounds of {', '.join(targets)} (pids {', '.join(map(str, pids))}), "
        "each round starting with the next",
        flush=True,
    )
    order = list(targets.items())
    for round_ in range(1, args.rounds + 1):
        # each round starts with the next server: none is always measured first, after the
        # mix or after another's gzipped bodies
        turn = (round_ - 1) % len(order)
        for name, url in order[turn:] + order[:turn]:
            for case, headers in cases.items():
                rate = wrk(f"{url}/calendar.ics", headers, args.wrk_seconds, args.connections)
                print(
                    f"             round {round_} {name:<13} {case:<8} "
                    f"{rate.requests_per_s:9,.0f} "
                    f"requests/s, p50 {rate.p50_ms:6.2f} ms, p99 {rate.p99_ms:6.2f} ms, "
                    f"{rate.transfer}/s"
                    + (f", {rate.bad:,} not 2xx/3xx" if rate.bad else "")
                    + (f", {rate.errors}" if rate.errors else ""),
                    flush=True,
                )
                kept = best.get((name, case))
                if kept is None or rate.requests_per_s > kept.requests_per_s:
                    best[(name, case)] = rate
    ratios: dict[tuple[str, str], float] = {}
    for name in targets:
        if name == "bare":
            continue
        for case in cases:
            ours_rate, bare_rate = best[(name, case)], best[("bare", case)]
            ratio = ratios[(name, case)] = ours_rate.requests_per_s / bare_rate.requests_per_s
            print(
                f"           {case:<8} best: {name} {ours_rate.requests_per_s:,.0f}/s, "
                f"bare {bare_rate.requests_per_s:,.0f}/s: {ratio:.2f}x "
                f"[>= {RATIO}: {verdict(ratio >= RATIO)}]",
                flush=True,
            )
    print(f"           serve after wrk: {memory(ours.pid)}")
    if args.access_log != "off":
        time.sleep(1.0)  # the access log's thread writes every 0.5 s
        text = ours.log.read_text(errors="replace")
        dropped = sum(int(n) for n in DROPPED.findall(text))
        print(
            f"           serve's access log: {text.count(ACCESS_LINE):,} lines written, "
            f"{dropped:,} dropped ({ours.log.stat().st_size / MB:,.1f} MB)",
            flush=True,
        )

    # 5. summary
    rss = after["VmRSS"] / KB
    rows = [
        (
            "start: first 200 of /calendar.ics",
            f"{start_s:.2f} s",
            f"<= {START_S:.0f} s",
            start_s <= START_S,
        ),
        (
            "/ plain",
            f"{found.page / KB:,.1f} KB",
            f"<= {PAGE_BYTES / KB:.0f} KB",
            found.page <= PAGE_BYTES,
        ),
        (
            "/events.json first page plain",
            f"{found.events_json / KB:,.1f} KB",
            f"<= {JSON_BYTES / KB:.0f} KB",
            found.events_json <= JSON_BYTES,
        ),
        ("mix: statuses", "all 200/304" if all_ok else "others", "200/304", all_ok),
        (
            f"RSS after {args.requests:,} requests",
            f"{rss:,.1f} MB",
            f"<= {RSS_MB} MB",
            rss <= RSS_MB,
        ),
    ]
    for (name, case), ratio in ratios.items():
        rows.append((f"wrk {case} {name}/bare", f"{ratio:.2f}x", f">= {RATIO}", ratio >= RATIO))
    print("\n| target | measured | wanted | |\n| --- | ---: | ---: | --- |")
    for what, measured, wanted, ok in rows:
        print(f"| {what} | {measured} | {wanted} | {verdict(ok)} |")


if __name__ == "__main__":
    main()
