"""outputs.py and responses.py: kept bodies are rendered off the event loop, rendered once per
publish, and a large one is sent from its file, as the same bytes."""

from __future__ import annotations

import asyncio
import gc
import gzip
import threading

import pytest

from aggregator import responses
from aggregator.outputs import Outputs
from aggregator.responses import Body
from aggregator.web import OUTPUTS, YOUNG_OBJECTS, _freeze_heap, make_app
from tests.conftest import NOW, make_settings
from tests.test_web import demo  # noqa: F401  (the fixture)


class Published:
    """A store with what Outputs reads: the data version and the published events."""

    def __init__(self) -> None:
        self.version = 1

    async def data_version(self) -> int:
        return self.version

    async def published_events(self) -> list:
        return []


async def test_a_render_runs_in_a_thread_and_once_per_publish(tmp_path):
    store = Published()
    outputs = Outputs(store, make_settings(tmp_path, []), poll_every=0.0)
    threads: list[int] = []

    def render(events) -> Body:
        threads.append(threading.get_ident())
        return Body.of(b"calendar %d" % store.version, "text/calendar")

    assert (await outputs.body("calendar.ics", render)).data == b"calendar 1"
    assert threads and threading.get_ident() not in threads  # not on the event loop
    # a publish of this process: it tells the outputs at once, and bumps the data version
    store.version = 2
    outputs.invalidate()
    outputs.poll_every = 3600.0  # the request after it comes before the next poll
    assert (await outputs.body("calendar.ics", render)).data == b"calendar 2"
    # the version the poll finds is the one read with the events: not rendered again
    outputs.poll_every = 0.0
    assert (await outputs.body("calendar.ics", render)).data == b"calendar 2"
    assert len(threads) == 2
    # a publish by another process is seen by the poll
    store.version = 3
    assert (await outputs.body("calendar.ics", render)).data == b"calendar 3"
    assert len(threads) == 3


@pytest.fixture
def in_files(monkeypatch):
    """Every kept body in a file, as a large network's calendar is."""
    monkeypatch.setattr(responses, "IN_MEMORY", 0)


async def test_a_large_body_is_sent_from_its_file_as_the_same_bytes(
    aiohttp_client,
    demo,  # noqa: F811
    in_files,
):
    app = make_app(demo, clock=lambda: NOW, scheduler=False)
    client = await aiohttp_client(app)
    identity = {"Accept-Encoding": "identity"}
    plain = await client.get("/calendar.ics", headers=identity)
    body = await plain.read()
    assert plain.status == 200 and body.startswith(b"BEGIN:VCALENDAR")
    kept = app[OUTPUTS]._bodies[next(iter(app[OUTPUTS]._bodies))]
    assert kept.plain.data is None and kept.plain.file is not None  # not in memory
    assert int(plain.headers["Content-Length"]) == len(body) == len(kept.data)
    assert plain.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert plain.headers["X-Content-Type-Options"] == "nosniff"
    zipped = await client.get(
        "/calendar.ics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await zipped.read()) == body
    etag = plain.headers["ETag"]
    assert (await client.get("/calendar.ics", headers={"If-None-Match": etag})).status == 304
    head = await client.head("/calendar.ics", headers=identity)
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(body)
    assert await head.read() == b""

    # many at once, one file: each response reads its own part of it
    async def read() -> bytes:
        return await (await client.get("/calendar.ics", headers=identity)).read()

    assert await asyncio.gather(*(read() for _ in range(5))) == [body] * 5


async def test_a_body_sent_without_sendfile_is_the_same_bytes(
    aiohttp_client,
    demo,  # noqa: F811
    in_files,
    monkeypatch,
):
    client = await aiohttp_client(make_app(demo, clock=lambda: NOW, scheduler=False))
    sent = await (await client.get("/calendar.ics")).read()
    monkeypatch.setattr(responses, "CHUNK", 1000)  # several chunks

    asked = []

    async def no_sendfile(*args, **kwargs):
        asked.append(args)
        raise NotImplementedError  # as on a transport without it (TLS)

    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", no_sendfile)
    assert await (await client.get("/calendar.ics")).read() == sent
    assert asked


class Slow(Published):
    """Published events that take a while to read: two reads overlap."""

    async def published_events(self) -> list:
        await asyncio.sleep(0.01)
        return [object() for _ in range(1000)]


async def test_serve_reads_the_events_with_the_collector_paused_and_freezes_them(tmp_path):
    outputs = Outputs(Slow(), make_settings(tmp_path, []), poll_every=0.0)
    outputs.freeze_kept = True  # as web.serve sets it
    before = gc.get_freeze_count()
    try:
        paused = []

        async def read() -> list:
            task = asyncio.create_task(outputs.events())
            await asyncio.sleep(0.005)
            paused.append(gc.isenabled())
            return await task

        first, second = await asyncio.gather(read(), read())
        assert paused == [False, False]  # while either read went on
        assert gc.isenabled()  # and on again once both were done
        assert gc.get_freeze_count() >= before + len(first)  # the events kept, frozen
    finally:
        gc.enable()
        gc.unfreeze()


async def test_serve_freezes_what_it_holds_once_started(aiohttp_client, demo):  # noqa: F811
    app = make_app(demo, clock=lambda: NOW, scheduler=False)
    await aiohttp_client(app)
    threshold = gc.get_threshold()
    try:
        await _freeze_heap(app)
        assert gc.get_freeze_count() > 0 and app[OUTPUTS].freeze_kept
        assert gc.get_threshold()[0] == YOUNG_OBJECTS
        assert (await app[OUTPUTS].events()) and gc.isenabled()
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def test_a_large_body_is_served_as_it_was_until_its_new_render_is_done(
    tmp_path,
    in_files,
):
    store = Published()
    outputs = Outputs(store, make_settings(tmp_path, []), poll_every=3600.0)
    go = threading.Event()

    def render(events) -> Body:
        go.wait(5)  # a large network's calendar takes a while
        return Body.of(b"calendar %d" % store.version, "text/calendar")

    go.set()
    assert (await outputs.body("calendar.ics", render)).data == b"calendar 1"
    go.clear()
    store.version = 2
    outputs.invalidate()  # a publish
    # while the new one renders, each request gets the calendar of before at once
    for _ in range(3):
        assert (await outputs.body("calendar.ics", render)).data == b"calendar 1"
    go.set()
    while (await outputs.body("calendar.ics", render)).data == b"calendar 1":
        await asyncio.sleep(0.01)
    assert (await outputs.body("calendar.ics", render)).data == b"calendar 2"


async def test_a_small_body_waits_for_its_new_render(tmp_path):
    store = Published()
    outputs = Outputs(store, make_settings(tmp_path, []), poll_every=3600.0)

    def render(events) -> Body:
        return Body.of(b"page %d" % store.version, "text/html")

    assert (await outputs.body("index.html", render)).data == b"page 1"
    store.version = 2
    outputs.invalidate()
    assert (await outputs.body("index.html", render)).data == b"page 2"


async def test_a_render_that_fails_is_tried_again_by_the_next_request(tmp_path, caplog):
    outputs = Outputs(Published(), make_settings(tmp_path, []), poll_every=3600.0)
    calls = []

    def render(events) -> Body:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("a bug")
        return Body.of(b"calendar", "text/calendar")

    with pytest.raises(ValueError):
        await outputs.body("calendar.ics", render)
    assert "rendering calendar.ics failed" in caplog.text
    assert (await outputs.body("calendar.ics", render)).data == b"calendar"
