"""The access log (accesslog.py): one line per request with its fields, made on the loop in
batches and written by a thread; a client's text cannot forge a line; a stream that takes
nothing never holds up the event loop (lines are dropped and counted); the lines held are
written at shutdown. Real servers: aiohttp's AppRunner on 127.0.0.1 with the access logger
`serve` uses, and `aggregator serve` itself at its default settings."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request, unused_port

from aggregator.accesslog import MAX_PATH, AccessLog, LeanAccessLogger
from aggregator.responses import Body, KeptFile, Payload, answer
from tests.conftest import ROOT
from tests.waiting import get_json, until

#: time, client, method, path with query, status, bytes, milliseconds
LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO aiohttp\.access: "
    r"(?P<client>\S+) (?P<method>\S+) (?P<path>\S+) (?P<status>\d{3}) (?P<bytes>\d+) "
    r"(?P<ms>\d+\.\d\d)ms$"
)


#: a kept body in a file, sent with sendfile (responses.SentFile)
FILE_BYTES = 3 * 1024 * 1024


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello\n")


@asynccontextmanager
async def server(lines: AccessLog) -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1 whose access log goes to `lines`; its base URL. /file
    answers a kept body of FILE_BYTES from its file, everything else "hello"."""
    kept = KeptFile(b"x" * FILE_BYTES)
    body = Body("text/plain", '"f"', Payload(FILE_BYTES, file=kept), Payload(1, file=kept))

    async def file(request: web.Request) -> web.StreamResponse:
        return answer(request, body)

    app = web.Application()
    app.router.add_get("/file", file)
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log_class=LeanAccessLogger.writing_to(lines))
    await runner.setup()
    port = unused_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class StuckStream(io.StringIO):
    """A stream whose writes wait until `go` is set, as stderr does when nobody reads the
    pipe; `entered` once the writer is stuck in one."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.go.wait(30)
        return super().write(text)


async def test_a_request_makes_one_line_with_its_fields():
    out = io.StringIO()
    lines = AccessLog(out, interval=0.01)
    async with server(lines) as base, aiohttp.ClientSession() as client:
        async with client.get(f"{base}/calendar.ics?days=7&lang=da") as response:
            assert await response.text() == "hello\n"
    lines.close()
    (line,) = out.getvalue().splitlines()
    fields = LINE.match(line)
    assert fields, line
    assert fields["client"] == "127.0.0.1"
    assert (fields["method"], fields["path"]) == ("GET", "/calendar.ics?days=7&lang=da")
    assert fields["status"] == "200"
    assert int(fields["bytes"]) > len("hello\n")  # as aiohttp counts them: headers and body
    assert 0 < float(fields["ms"]) < 10_000


async def test_a_file_sent_with_sendfile_is_logged_with_its_bytes():
    out = io.StringIO()
    lines = AccessLog(out, interval=0.01)
    async with server(lines) as base, aiohttp.ClientSession() as client:
        async with client.get(f"{base}/file", headers={"Accept-Encoding": "identity"}) as r:
            assert len(await r.read()) == FILE_BYTES
    lines.close()
    (line,) = out.getvalue().splitlines()
    assert FILE_BYTES < int(LINE.match(line)["bytes"]) < FILE_BYTES + 1000, line


async def test_the_fields_are_read_where_this_aiohttp_keeps_them():
    # the fast path's self-check passes with the aiohttp installed: were it to fail (an
    # upgrade moved them), every line would be read through the slower public properties
    LeanAccessLogger.fast = None
    out = io.StringIO()
    lines = AccessLog(out, interval=0.01)
    async with server(lines) as base, aiohttp.ClientSession() as client:
        async with client.get(f"{base}/x?y=1") as response:
            await response.read()
    lines.close()
    assert LeanAccessLogger.fast is True
    assert LINE.match(out.getvalue().splitlines()[0])["path"] == "/x?y=1"


def test_a_path_with_a_line_break_cannot_make_two_lines():
    # aiohttp's parser refuses a raw CR or LF in the request line: the request is made
    # as another server (or a later aiohttp) might hand it over
    forged = "/a\r\n2026-01-01 00:00:00,000 INFO aiohttp.access: 6.6.6.6 GET /admin 200 0 0.10ms"
    out = io.StringIO()
    lines = AccessLog(out, interval=3600)
    logger = LeanAccessLogger.writing_to(lines)(None, "")
    for path in (forged, "/b\x1b[2J\u2028c\x85d e\\x0a", "/" + "x" * 5000):
        logger.log(make_mocked_request("GET", path), web.Response(status=404), 0.001)
    # a client's address from a proxy's header (a request cloned with it) is text too
    proxied = make_mocked_request("GET", "/").clone(remote="6.6.6.6\n2026-01-01")
    LeanAccessLogger.writing_to(lines)(None, "").log(proxied, web.Response(), 0.001)
    lines.close()
    written = out.getvalue().splitlines()
    assert len(written) == 4, written
    assert all(LINE.match(line) for line in written), written
    assert "/a\\x0d\\x0a2026-01-01\\x2000:00:00,000\\x20INFO" in written[0]
    assert "/b\\x1b[2J\\u2028c\\x85d\\x20e\\x5cx0a 404" in written[1]
    assert len(written[2]) < MAX_PATH + 100 and "x..." in written[2]
    assert " 6.6.6.6\\x0a2026-01-01 GET / 200 " in written[3]


async def test_a_stuck_stream_never_holds_up_the_loop_and_drops_are_counted():
    stream = StuckStream()
    lines = AccessLog(stream, limit=50, interval=0.01)
    async with server(lines) as base, aiohttp.ClientSession() as client:
        async with client.get(f"{base}/first") as response:
            await response.read()
        assert await asyncio.to_thread(stream.entered.wait, 10), "the writer never wrote"
        # the writer is stuck in the stream's write with the first line: 300 more requests
        # are answered, 50 of their lines wait and the rest are dropped
        started = time.monotonic()
        for n in range(300):
            async with client.get(f"{base}/more/{n}") as response:
                assert response.status == 200
        answered = time.monotonic() - started
    assert answered < 20
    assert lines.dropped == 250
    stream.go.set()
    lines.close()
    written = stream.getvalue().splitlines()
    assert [line for line in written if "/more/" in line] == [
        line for line in written if LINE.match(line) and "/more/" in line
    ]
    assert len([line for line in written if "/more/" in line]) == 50
    assert written[-1].endswith(
        "aggregator.accesslog: 250 lines dropped: the log's stream did not keep up"
    )


async def test_the_lines_that_wait_are_written_at_shutdown():
    out = io.StringIO()
    lines = AccessLog(out, interval=3600)  # the thread's next batch: in an hour
    async with server(lines) as base, aiohttp.ClientSession() as client:
        for n in range(5):
            async with client.get(f"{base}/late/{n}") as response:
                await response.read()
    await asyncio.sleep(0.05)
    assert out.getvalue() == ""
    lines.close()
    written = out.getvalue().splitlines()
    assert [LINE.match(line)["path"] for line in written] == [f"/late/{n}" for n in range(5)]


async def test_serve_logs_each_request_by_default(tmp_path: Path):
    config = tmp_path / "sources.yaml"
    config.write_text("network:\n  name: Log test\n  base_url: http://events.test\nsources: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    env["AGGREGATOR_DATABASE_URL"] = f"sqlite:///{tmp_path / 'a.db'}"
    port = unused_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        serve = subprocess.Popen(
            [sys.executable, "-m", "aggregator", "serve", "--no-scheduler", "--config"]
            + [str(config), "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        async with aiohttp.ClientSession() as client:

            async def up():
                assert serve.poll() is None, log.read_text()
                return await get_json(client, f"http://127.0.0.1:{port}/healthz?from=test")

            await until(up, 60, "serve answering /healthz", every=0.1)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
    lines = [LINE.match(line) for line in log.read_text().splitlines()]
    logged = [m for m in lines if m and m["path"] == "/healthz?from=test"]
    assert [(m["method"], m["status"]) for m in logged] == [("GET", "200")], log.read_text()
