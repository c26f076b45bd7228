"""Anonymous clients cannot stall, fill or poison the server (issue 25): renders admitted per
client and cancelled when nobody waits, disk and memory budgets that hold, answers that a
client must read or let go, only known parameters in keys and links, saved filters in use
kept, a manifest not to be trusted treated as none."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import os
import re
import socket
import tempfile
import time
import weakref
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aggregator import outputs as outputs_module
from aggregator import responses
from aggregator import web as web_module
from aggregator.outputs import Asker, Gone, Outputs, Refused
from aggregator.published import Folder, stale
from aggregator.render.views import network_zone
from aggregator.responses import (
    SEND_TIMEOUT_KEY,
    Body,
    BodyWriter,
    Budget,
    Held,
    KeptFile,
    OverBudget,
    Payload,
    Stalled,
    answer,
)
from aggregator.selection import Selection
from aggregator.store import Store
from aggregator.store import filters as filters_module
from aggregator.web import (
    CALENDAR_PARAMETERS,
    EVENT_PARAMETERS,
    EVENTS_PARAMETERS,
    FEED_PARAMETERS,
    OUTPUTS,
    PAGE_PARAMETERS,
    STORE,
    WRITER,
    make_app,
)
from tests.conftest import NOW, make_settings, source
from tests.test_web import demo  # noqa: F401  (the fixture)

pytestmark = pytest.mark.usefixtures("database")


class Published:
    """A store with what Outputs reads: the data version."""

    def __init__(self) -> None:
        self.version = 1

    async def data_version(self) -> int:
        return self.version


def outputs_for(tmp_path: Path, **limits) -> Outputs:
    settings = make_settings(tmp_path, [])
    settings = replace(settings, outputs=replace(settings.outputs, **limits))
    return Outputs(Published(), settings, Folder(tmp_path / "published"), poll_every=3600.0)


class Gate:
    """Renders that wait until let go: which started, which were cancelled."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.go = asyncio.Event()
        self._changed = asyncio.Event()

    def render(self, name: str, data: bytes = b"body"):
        async def render() -> Body:
            self.started.append(name)
            self._changed.set()
            try:
                await self.go.wait()
            except asyncio.CancelledError:
                self.cancelled.append(name)
                self._changed.set()
                raise
            return Body.of(data + name.encode(), "text/plain")

        return render

    async def until(self, done, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not done():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


# renders: shared, bounded, fair, cancelled


async def test_identical_requests_share_one_render(tmp_path):
    outputs, gate = outputs_for(tmp_path), Gate()
    asks = [
        asyncio.create_task(outputs.body("w", gate.render("w"), Asker(f"10.0.0.{n}")))
        for n in range(5)
    ]
    await gate.until(lambda: gate.started)
    gate.go.set()
    bodies = await asyncio.gather(*asks)
    assert gate.started == ["w"]
    assert {b.data for b in bodies} == {b"bodyw"}


async def test_one_clients_renders_leave_a_slot_for_another(tmp_path):
    outputs, gate = outputs_for(tmp_path, renders=2), Gate()
    storm = [
        asyncio.create_task(outputs.body(f"w{n}", gate.render(f"w{n}"), Asker("storm")))
        for n in range(3)
    ]
    await gate.until(lambda: gate.started)
    await asyncio.sleep(0)  # the others had their chance to start, and did not
    assert gate.started == ["w0"] and outputs.slots.waiting == 2
    # a stranger's render starts at once, beside the storm's one
    other = asyncio.create_task(outputs.body("mine", gate.render("mine"), Asker("member")))
    await gate.until(lambda: "mine" in gate.started)
    assert gate.started == ["w0", "mine"]
    gate.go.set()
    await asyncio.gather(*storm, other)
    assert sorted(gate.started) == ["mine", "w0", "w1", "w2"]
    assert not outputs.slots.running and not outputs._per_client


async def test_a_client_waiting_on_too_many_renders_is_told_when_to_come_back(tmp_path):
    outputs, gate = outputs_for(tmp_path, renders=1, client_renders=3), Gate()
    asks = [
        asyncio.create_task(outputs.body(f"w{n}", gate.render(f"w{n}"), Asker("storm")))
        for n in range(3)
    ]
    await gate.until(lambda: gate.started)
    with pytest.raises(Refused) as refused:
        await outputs.body("w3", gate.render("w3"), Asker("storm"))
    assert refused.value.status == 429 and refused.value.retry_after > 0
    # the same render again is no more work: it joins the one under way
    again = asyncio.create_task(outputs.body("w0", gate.render("w0"), Asker("storm")))
    # and another client is not limited by this one
    other = asyncio.create_task(outputs.body("x", gate.render("x"), Asker("member")))
    gate.go.set()
    await asyncio.gather(*asks, again, other)
    assert "w3" not in gate.started


async def test_when_every_queue_is_full_a_new_render_is_a_503(tmp_path):
    outputs, gate = outputs_for(tmp_path, renders=1, queued_renders=2), Gate()
    asks = [
        asyncio.create_task(outputs.body(f"w{n}", gate.render(f"w{n}"), Asker(f"c{n}")))
        for n in range(3)
    ]
    await gate.until(lambda: gate.started)
    await asyncio.sleep(0)
    with pytest.raises(Refused) as refused:
        await outputs.body("late", gate.render("late"), Asker("late"))
    assert refused.value.status == 503
    gate.go.set()
    await asyncio.gather(*asks)


async def test_a_render_whose_clients_have_all_gone_is_cancelled(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs_module, "LOOK_EVERY", 0.01)
    outputs, gate = outputs_for(tmp_path), Gate()
    left = {"a": False, "b": False}
    a = asyncio.create_task(outputs.body("w", gate.render("w"), Asker("a", lambda: left["a"])))
    b = asyncio.create_task(outputs.body("w", gate.render("w"), Asker("b", lambda: left["b"])))
    await gate.until(lambda: gate.started)
    left["a"] = True
    with pytest.raises(Gone):
        await a
    assert not gate.cancelled  # b still waits for it
    left["b"] = True
    with pytest.raises(Gone):
        await b
    await gate.until(lambda: gate.cancelled)
    assert gate.cancelled == ["w"]
    assert not outputs.slots.running and not outputs._per_client and not outputs._jobs


async def test_one_events_render_takes_no_slot(tmp_path):
    outputs, gate = outputs_for(tmp_path, renders=1), Gate()
    busy = asyncio.create_task(outputs.body("w", gate.render("w"), Asker("storm")))
    await gate.until(lambda: gate.started)

    async def event() -> Body:
        return Body.of(b"one event", "text/html")

    body = await asyncio.wait_for(outputs.body("events/e1", event, Asker("m"), cheap=True), 5)
    assert body.data == b"one event"
    gate.go.set()
    await busy


# budgets


def held_on_disk() -> int:
    """Bytes of this process's unlinked temporary files (bodies), as the kernel has them."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(tempfile.gettempdir()) and target.endswith(" (deleted)"):
                total += os.stat(f"/proc/self/fd/{fd}").st_size
        except OSError:
            continue
    return total


@pytest.fixture
def in_files(monkeypatch):
    """Every kept body in a file, as a large network's calendar is."""
    monkeypatch.setattr(responses, "IN_MEMORY", 0)


async def test_every_body_on_disk_counts_against_the_budget_those_of_before_a_publish_too(
    tmp_path,
    in_files,
):
    size = 100_000
    outputs = outputs_for(tmp_path, disk_budget=5 * size)
    gc.collect()
    before = held_on_disk()  # other tests' bodies, not yet collected
    data = os.urandom(size // 2 - 100)  # its gzip is as large: a body of about `size`

    async def render() -> Body:
        return await asyncio.to_thread(Body.of, data, "text/calendar")

    for _publish in range(4):
        for n in range(4):
            await outputs.body(f"window {n}", render, Asker("storm"))
            gc.collect()
            assert outputs.budget.held <= 5 * size
            assert held_on_disk() - before == outputs.budget.held
        outputs.invalidate()  # what was kept is now "of before": it still counts
        outputs._version = None
        outputs.store.version += 1
    assert outputs._previous  # the newest of before are still served while rendered again


async def test_a_render_that_would_outgrow_the_budget_fails_and_lets_go_of_its_files(tmp_path):
    outputs = outputs_for(tmp_path, disk_budget=1_000_000)
    gc.collect()
    before = held_on_disk()  # other tests' bodies, not yet collected

    async def huge() -> Body:
        out = BodyWriter.temporary("text/calendar")
        for _ in range(100):
            await asyncio.to_thread(out.write, os.urandom(50_000))
        return out.body()

    refused = None
    try:
        await outputs.body("year", huge, Asker("storm"))
    except OverBudget as error:
        refused = str(error)
    assert refused and "disk budget" in refused
    gc.collect()
    assert outputs.budget.held == 0 and held_on_disk() == before


async def test_a_render_over_the_budget_answers_503_with_retry_after(
    aiohttp_client,
    demo,  # noqa: F811
    in_files,
):
    settings = replace(demo, outputs=replace(demo.outputs, disk_budget=1000))
    client = await aiohttp_client(make_app(settings, clock=lambda: NOW, scheduler=False))
    response = await client.get("/calendar.ics", params={"days": "30"})
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0
    # the folder's files are not the budget's: the plain calendar is served
    assert (await client.get("/calendar.ics")).status == 200


# answers a client must read, or let go


async def serve_body(
    kept: list[Body], timeout: float, stalled: Stalled | None = None
) -> tuple[TestServer, asyncio.Event]:
    """A server of `kept[0]` at /big (the test may drop it once asked: then only the answer
    holds it), and an event set when it was asked for."""
    app = web.Application()
    app[SEND_TIMEOUT_KEY] = timeout
    asked = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if stalled is not None:
            stalled.watch(request.transport)
        asked.set()
        return answer(request, kept[0])

    app.router.add_get("/big", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, asked


def never_reading_client(port: int) -> socket.socket:
    """A client that asks for /big and never reads a byte of the answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n")
    return sock


async def test_a_client_that_never_reads_a_file_is_let_go_and_the_file_with_it(monkeypatch):
    monkeypatch.setattr(responses, "SEND_PIECE", 256 * 1024)
    size = 32 * 1024 * 1024  # more than the kernel's buffers hold
    kept = KeptFile(b"x" * size)
    gone = asyncio.Event()
    weakref.finalize(kept, gone.set)
    body = Body("text/calendar", '"e"', Payload(size, file=kept), Payload(size, file=kept))
    del kept
    held = [body]
    del body
    server, asked = await serve_body(held, timeout=0.5)
    sock = never_reading_client(server.port)
    try:
        await asyncio.wait_for(asked.wait(), 10)
        held.clear()
        # the file is held by the answer being sent, and only until the client is let go
        await asyncio.wait_for(gone.wait(), 20)
    finally:
        sock.close()
        await server.close()


async def test_an_answer_in_memory_that_nobody_reads_is_aborted_by_the_sweep():
    stalled = Stalled(timeout=0.0)
    body = Body.of(os.urandom(100 * 1024), "text/plain")  # a kept body in memory
    assert not body.large
    # many of them on one connection: pipelined requests fill the buffers
    server, _ = await serve_body([body], timeout=60.0, stalled=stalled)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n" * 300)
    try:

        async def aborted() -> None:
            while True:
                stalled.sweep()
                await asyncio.sleep(0.05)
                if not len(stalled):  # aborted, or never waited (it is)
                    return

        await asyncio.wait_for(aborted(), 20)
        assert not server.runner.server.connections or all(
            c.transport is None or c.transport.is_closing()
            for c in server.runner.server.connections
        )
    finally:
        sock.close()
        await server.close()


# only known parameters


async def test_unknown_parameters_reach_no_link_nor_another_clients_answer(
    aiohttp_client,
    demo,  # noqa: F811
):
    client = await aiohttp_client(make_app(demo, clock=lambda: NOW, scheduler=False))
    junk = "x" * 6000
    poisoned = await client.get("/events.json", params={"limit": "2", "junk": junk})
    assert poisoned.status == 200
    assert junk not in poisoned.headers["Link"]
    assert junk not in (await poisoned.text())
    clean = await client.get("/events.json", params={"limit": "2"})
    assert clean.headers["Link"] == poisoned.headers["Link"]
    assert clean.headers["ETag"] == poisoned.headers["ETag"]
    assert "junk" not in clean.headers["Link"]


async def test_a_plain_output_asked_with_junk_is_the_folders_file_not_a_render(
    aiohttp_client,
    demo,  # noqa: F811
):
    app = make_app(demo, clock=lambda: NOW, scheduler=False)
    client = await aiohttp_client(app)
    for path in ("/calendar.ics", "/feed.atom", "/events.json", "/"):
        plain = await client.get(path)
        for n in range(3):
            junked = await client.get(path, params={"junk": str(n), "utm_source": "x"})
            assert junked.status == 200
            assert junked.headers["ETag"] == plain.headers["ETag"], path
    # the default asked for in so many words is the plain one too
    defaulted = await client.get("/calendar.ics", params={"cancelled": "status"})
    plain = await client.get("/calendar.ics")
    assert defaulted.headers["ETag"] == plain.headers["ETag"]
    assert not app[OUTPUTS]._bodies  # nothing was rendered on demand


async def test_a_filter_value_beyond_any_real_one_is_a_400_that_names_it(
    aiohttp_client,
    demo,  # noqa: F811
):
    client = await aiohttp_client(make_app(demo, clock=lambda: NOW, scheduler=False))
    for path in ("/calendar.ics", "/feed.atom", "/events.json"):
        response = await client.get(path, params={"category": "c" * 6000})
        assert response.status == 400
        assert "category=" in await response.text()


async def test_the_next_link_is_the_canonical_window_and_selection(
    aiohttp_client,
    demo,  # noqa: F811
):
    client = await aiohttp_client(make_app(demo, clock=lambda: NOW, scheduler=False))
    response = await client.get(
        "/events.json", params={"limit": "1", "days": "400", "category": "Koncert,MØDE"}
    )
    link = response.headers.get("Link")
    if link is None:  # the demo has no two such events: a wider selection then
        response = await client.get("/events.json", params={"limit": "1", "days": "400"})
        link = response.headers["Link"]
    assert "from=2026-11-25" in link and "to=2027-12-29" in link and "days=" not in link
    body = json.loads(await response.text())
    assert f"<{body['next']}>" in link


def proxy_cached_parameters() -> tuple[set[str], re.Pattern[str]]:
    """deploy/nginx.conf's map of the requests it may store: the parameter names it lists, and
    its pattern (as Python reads it: nginx's PCRE and Python agree on this one)."""
    conf = (Path(__file__).parent.parent / "deploy" / "nginx.conf").read_text()
    block = re.search(r"map \$args \$aggregator_uncached \{(.*?)\}", conf, re.S)
    assert block, "nginx.conf stores only requests of known parameters"
    pattern = re.search(r'"~(\^.*\$)"\s+0;', block[1])[1]
    names = re.search(r"\(\?:([a-z|]+)\)=", pattern)[1]
    return set(names.split("|")), re.compile(pattern)


def test_the_proxy_stores_only_requests_of_the_parameters_the_app_reads():
    names, stored = proxy_cached_parameters()
    known = {
        *PAGE_PARAMETERS,
        *CALENDAR_PARAMETERS,
        *FEED_PARAMETERS,
        *EVENTS_PARAMETERS,
        *EVENT_PARAMETERS,
    }
    assert names == known
    for query in ("from=2027-01-01&days=30", "source=a&source=b&cancelled=hide", "q=", "f=abc"):
        assert stored.match(query), query
    for query in ("junk=1", "from=2027-01-01&junk=1", "junk=1&days=3", "fromx=1", "days"):
        assert not stored.match(query), query


# saved filters


async def test_a_saved_filter_a_subscriber_uses_is_never_pushed_out(store, monkeypatch):
    monkeypatch.setattr(filters_module, "MAX_UNUSED", 3)
    used = await store.save_filter('{"category": ["subscribed"]}', NOW)
    assert await store.saved_filter(used, NOW, subscribed=True)
    for n in range(20):  # anybody's pages
        assert await store.save_filter(json.dumps({"category": [f"junk {n}"]}), NOW)
    assert await store.saved_filter(used, NOW) == '{"category": ["subscribed"]}'
    kept = [await store.filter_saved(json.dumps({"category": [f"junk {n}"]})) for n in range(20)]
    assert sum(k is not None for k in kept) == 3  # the newest of those nobody fetched


async def test_no_new_key_is_made_when_the_room_for_keys_in_use_is_full(store, monkeypatch):
    monkeypatch.setattr(filters_module, "MAX_FETCHED", 2)
    keys = [await store.save_filter(json.dumps({"category": [f"c{n}"]}), NOW) for n in range(2)]
    for key in keys:
        await store.saved_filter(key, NOW, subscribed=True)
    assert await store.save_filter('{"category": ["one more"]}', NOW) is None
    for key in keys:
        assert await store.saved_filter(key, NOW) is not None


async def test_a_client_makes_a_few_saved_filters_then_its_page_links_the_selection_whole(
    aiohttp_client,
    demo,  # noqa: F811
    monkeypatch,
):
    monkeypatch.setattr(web_module, "SAVES", 2)
    app = make_app(demo, clock=lambda: NOW, scheduler=False)
    client = await aiohttp_client(app)
    made = []
    for n in range(3):
        long = [f"kategori nummer {n} med et langt navn {m}" for m in range(6)]
        page = await (await client.get("/", params={"category": ",".join(long)})).text()
        made.append("calendar.ics?f=" in page)
    assert made == [True, True, False]


async def test_a_calendar_fetched_by_its_saved_key_marks_the_key_in_use(
    aiohttp_client,
    demo,  # noqa: F811
):
    app = make_app(demo, clock=lambda: NOW, scheduler=False)
    client = await aiohttp_client(app)
    long = ",".join(f"kategori nummer {m} med et langt navn" for m in range(6))
    page = await (await client.get("/", params={"category": long})).text()
    key = page.split("calendar.ics?f=", 1)[1][:12]
    assert (await client.get("/calendar.ics", params={"f": key})).status == 200
    store = await Store.open(demo.database_url)
    try:
        async with store.engine.connect() as conn:
            fetched = (
                await conn.exec_driver_sql("SELECT fetched_at FROM saved_filters")
            ).scalar_one()
    finally:
        await store.close()
    assert fetched is not None


# the published folder's manifest


MANIFESTS = {
    "empty": lambda m: {},
    "not an object": lambda m: [m],
    "without written": lambda m: {k: v for k, v in m.items() if k != "written"},
    "a wrong size": lambda m: {
        **m,
        "files": {
            n: {**e, "size": e["size"] + 1} if n == "calendar.ics" else e
            for n, e in m["files"].items()
        },
    },
    "counts not numbers": lambda m: {**m, "counts": {"sources": "many"}},
    "a file outside": lambda m: {**m, "files": {"../../etc/passwd": m["files"]["feed.atom"]}},
}


@pytest.mark.parametrize("wrong", MANIFESTS)
async def test_a_manifest_of_the_wrong_shape_is_as_good_as_none(
    aiohttp_client,
    demo,  # noqa: F811
    tmp_path,
    wrong,
):
    folder = tmp_path / "folder"
    settings = replace(demo, outputs=replace(demo.outputs, folder=folder))
    store = await Store.open(settings.database_url)
    try:
        version = await Folder(folder).write(store, settings, NOW)
        data_version = await store.data_version()
    finally:
        await store.close()
    manifest = json.loads((version / "manifest.json").read_text())
    (version / "manifest.json").write_text(json.dumps(MANIFESTS[wrong](manifest)))
    assert Folder(folder).manifest() is None
    tz = network_zone(settings.network)
    assert stale(Folder(folder).manifest(), data_version, NOW, tz) == "all"
    # serve starts, answers, and writes the folder again
    app = make_app(settings, clock=lambda: NOW, scheduler=False)
    client = await aiohttp_client(app)
    assert (await client.get("/healthz")).status == 200
    calendar = await client.get("/calendar.ics")
    assert calendar.status == 200 and (await calendar.read()).startswith(b"BEGIN:VCALENDAR")
    if app[WRITER].writing is not None:
        await app[WRITER].writing
    assert Folder(folder).manifest() is not None
    assert app[OUTPUTS].current != version


# the held bytes, counted where they are written


def test_a_held_body_gives_its_bytes_back_when_nothing_refers_to_it():
    budget = Budget(1000)
    held = Held(budget)
    kept = KeptFile(b"x" * 600, held=held)
    del held
    assert budget.held == 600
    with pytest.raises(OverBudget):
        KeptFile(b"y" * 600, held=Held(budget))
    assert budget.held == 600
    del kept
    gc.collect()
    assert budget.held == 0


# a scheduled publish


async def test_a_scheduled_publish_is_served_at_once_not_at_the_next_poll(
    aiohttp_client, tmp_path, feed_server
):
    feed = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        "UID:scheduled@test\r\nDTSTAMP:20261101T000000Z\r\n"
        "DTSTART;TZID=Europe/Copenhagen:20261205T190000\r\n"
        "DTEND;TZID=Europe/Copenhagen:20261205T210000\r\n"
        "SUMMARY:Planlagt aften\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    url = feed_server.serve("/f.ics", feed)
    settings = make_settings(tmp_path, [source("f", url)])
    settings = replace(settings, outputs=replace(settings.outputs, folder=tmp_path / "published"))
    app = make_app(settings, clock=lambda: NOW, scheduler=True)
    written = asyncio.Event()
    client = await aiohttp_client(app)
    # the outputs look at the store no more (an hour): only the publish's own call tells them
    app[OUTPUTS].poll_every = 3600.0
    app[OUTPUTS]._polled = time.monotonic()
    reload = app[WRITER].on_written

    def on_written() -> None:
        reload()
        if app[OUTPUTS].manifest.get("events"):
            written.set()

    app[WRITER].on_written = on_written
    if not app[OUTPUTS].manifest.get("events"):  # the scheduler's first round still runs
        await asyncio.wait_for(written.wait(), 15)
    assert await app[STORE].data_version() == app[OUTPUTS].manifest["data_version"]
    body = await (await client.get("/calendar.ics")).text()
    assert "Planlagt aften" in body


# a member's calendar reads its own rows


async def test_a_members_events_read_by_its_rows_are_exactly_those_the_filter_admits(
    demo,  # noqa: F811
):
    store = await Store.open(demo.database_url)
    try:
        everything = await store.published_events()
        for member in demo.sources:
            chosen = Selection(sources=frozenset({member.id}))
            read = await store.published_events(sources=chosen.sources)
            assert [e.event.id for e in read if chosen.admits(e.event)] == [
                e.event.id for e in everything if chosen.admits(e.event)
            ]
            assert any(chosen.admits(e.event) for e in read), member.id
        co_hosted = [e for e in everything if len(e.event.source_ids) > 1]
        assert co_hosted  # the demo merges co-hosts: each member's reading finds them
    finally:
        await store.close()


async def test_a_calendars_scratch_file_counts_against_the_disk_budget_too(
    aiohttp_client,
    demo,  # noqa: F811
    in_files,
):
    # the events of a calendar go to a scratch file first (its VTIMEZONEs come before them):
    # with room for the body but not for the body and its scratch, the render is refused
    client = await aiohttp_client(make_app(demo, clock=lambda: NOW, scheduler=False))
    body = await (await client.get("/calendar.ics", params={"days": "400"})).read()
    plain = len(body)
    gzipped = len(gzip.compress(body))
    settings = replace(demo, outputs=replace(demo.outputs, disk_budget=plain + gzipped + 100))
    client = await aiohttp_client(make_app(settings, clock=lambda: NOW, scheduler=False))
    assert (await client.get("/calendar.ics", params={"days": "400"})).status == 503
    roomy = replace(demo, outputs=replace(demo.outputs, disk_budget=3 * (plain + gzipped)))
    client = await aiohttp_client(make_app(roomy, clock=lambda: NOW, scheduler=False))
    assert (await client.get("/calendar.ics", params={"days": "400"})).status == 200
