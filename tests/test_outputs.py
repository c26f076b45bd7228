"""outputs.py and responses.py: the published folder's files are sent as they are; bodies
rendered on demand are rendered once per publish, bounded, and a large one is sent from its
file, as the same bytes."""

from __future__ import annotations

import asyncio
import gc
import gzip
import hashlib

import pytest

from aggregator import outputs as outputs_module
from aggregator import responses
from aggregator.outputs import Outputs
from aggregator.published import Folder
from aggregator.responses import Body
from aggregator.web import OUTPUTS, YOUNG_OBJECTS, _freeze_heap, make_app
from tests.conftest import NOW, make_settings
from tests.test_web import demo  # noqa: F401  (the fixture)

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")


class Published:
    """A store with what Outputs reads: the data version."""

    def __init__(self) -> None:
        self.version = 1

    async def data_version(self) -> int:
        return self.version


def outputs_of(store, tmp_path, poll_every: float) -> Outputs:
    return Outputs(
        store, make_settings(tmp_path, []), Folder(tmp_path / "published"), poll_every=poll_every
    )


async def test_a_body_is_rendered_once_per_publish(tmp_path):
    store = Published()
    outputs = outputs_of(store, tmp_path, poll_every=0.0)
    renders: list[int] = []

    async def render() -> Body:
        renders.append(store.version)
        return Body.of(b"calendar %d" % store.version, "text/calendar")

    assert (await outputs.body("calendar.ics", render)).data == b"calendar 1"
    assert (await outputs.body("calendar.ics", render)).data == b"calendar 1"
    assert renders == [1]
    # a publish of this process: it tells the outputs at once, and bumps the data version
    store.version = 2
    outputs.invalidate()
    outputs.poll_every = 3600.0  # the request after it comes before the next poll
    assert (await outputs.body("calendar.ics", render)).data == b"calendar 2"
    # the version the poll finds is that of the render: not rendered again
    outputs.poll_every = 0.0
    outputs._polled = float("-inf")
    assert (await outputs.body("calendar.ics", render)).data == b"calendar 2"
    assert renders == [1, 2]
    # a publish by another process is seen by the poll
    store.version = 3
    assert (await outputs.body("calendar.ics", render)).data == b"calendar 3"
    assert renders == [1, 2, 3]


async def test_the_kept_bodies_are_bounded_in_number_and_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs_module, "KEPT_BODIES", 5)
    outputs = outputs_of(Published(), tmp_path, poll_every=3600.0)
    outputs.memory_budget = 3000
    for n in range(20):

        async def render(n: int = n) -> Body:
            return Body.of(bytes(range(256)) * 4 + b"%d" % n, "text/plain")

        await outputs.body(f"filter {n}", render)
    kept = outputs._bodies
    assert 0 < len(kept) <= 5
    assert sum(b.plain.size + b.gzipped.size for b in kept.values()) <= 3000
    assert list(kept)[-1] == "filter 19"  # the newest stays


@pytest.fixture
def in_files(monkeypatch):
    """Every kept body in a file, as a large network's calendar is."""
    monkeypatch.setattr(responses, "IN_MEMORY", 0)


async def test_a_published_file_is_sent_from_the_folder_as_the_same_bytes(
    aiohttp_client,
    demo,  # noqa: F811
):
    app = make_app(demo, clock=lambda: NOW, scheduler=False)
    client = await aiohttp_client(app)
    identity = {"Accept-Encoding": "identity"}
    plain = await client.get("/calendar.ics", headers=identity)
    body = await plain.read()
    assert plain.status == 200 and body.startswith(b"BEGIN:VCALENDAR")
    published = app[OUTPUTS].published("calendar.ics")
    assert published.plain.data is None and published.plain.file is not None  # not in memory
    folder = app[OUTPUTS].current
    assert body == (folder / "calendar.ics").read_bytes()
    assert int(plain.headers["Content-Length"]) == len(body)
    assert plain.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert plain.headers["X-Content-Type-Options"] == "nosniff"
    zipped = await client.get(
        "/calendar.ics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert await zipped.read() == (folder / "calendar.ics.gz").read_bytes()
    assert gzip.decompress((folder / "calendar.ics.gz").read_bytes()) == body
    etag = plain.headers["ETag"]
    assert etag == '"' + hashlib.sha256(body).hexdigest()[:32] + '"'  # of the content
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


async def test_serve_freezes_what_it_holds_once_started(aiohttp_client, demo):  # noqa: F811
    app = make_app(demo, clock=lambda: NOW, scheduler=False)
    await aiohttp_client(app)
    threshold = gc.get_threshold()
    try:
        await _freeze_heap(app)
        assert gc.get_freeze_count() > 0 and gc.isenabled()
        assert gc.get_threshold()[0] == YOUNG_OBJECTS
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def test_a_large_body_is_served_as_it_was_until_its_new_render_is_done(
    tmp_path,
    in_files,
):
    store = Published()
    outputs = outputs_of(store, tmp_path, poll_every=3600.0)
    go = asyncio.Event()

    async def render() -> Body:
        await go.wait()  # a large network's calendar takes a while
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
    await asyncio.shield(outputs._jobs["calendar.ics"].task)
    assert (await outputs.body("calendar.ics", render)).data == b"calendar 2"


async def test_a_small_body_waits_for_its_new_render(tmp_path):
    store = Published()
    outputs = outputs_of(store, tmp_path, poll_every=3600.0)

    async def render() -> Body:
        return Body.of(b"page %d" % store.version, "text/html")

    assert (await outputs.body("index.html", render)).data == b"page 1"
    store.version = 2
    outputs.invalidate()
    assert (await outputs.body("index.html", render)).data == b"page 2"


async def test_a_render_that_fails_is_tried_again_by_the_next_request(tmp_path, caplog):
    outputs = outputs_of(Published(), tmp_path, poll_every=3600.0)
    calls = []

    async def render() -> Body:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("a bug")
        return Body.of(b"calendar", "text/calendar")

    with pytest.raises(ValueError):
        await outputs.body("calendar.ics", render)
    assert "rendering calendar.ics failed" in caplog.text
    assert (await outputs.body("calendar.ics", render)).data == b"calendar"
