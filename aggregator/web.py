"""make_app(): the aiohttp application, its routes and the outputs it keeps.

Bodies are rendered once per change of the data and kept as bytes with a strong ETag
(outputs.py); requests are answered from those bytes (304 when they match). How an answer
is made is responses.py; what a request asks for (language, JSON or HTML, its client) is
request.py; the /check page is check_page.py; the pages themselves are render/html.py.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial

from aiohttp import web
from aiohttp.abc import AbstractResolver
from prometheus_client import CONTENT_TYPE_LATEST

from aggregator import __version__, metrics
from aggregator.check_page import Checker, answer_check
from aggregator.fetch import Fetcher, open_session
from aggregator.guard import Guard
from aggregator.model import NetworkEvent, Settings
from aggregator.outputs import Outputs
from aggregator.publish import publish
from aggregator.render.atom import render_atom
from aggregator.render.html import render_event_page, render_index, render_source, render_sources
from aggregator.render.ics import render_calendar
from aggregator.render.json import event_json, render_json
from aggregator.render.sources import health_json, source_health, source_json
from aggregator.render.views import refused_filter
from aggregator.request import Networks, page_language, trusted_proxies, wants_json
from aggregator.responses import (
    ATOM,
    FRAMED_POLICY,
    HTML,
    ICS,
    JSON,
    PAGE_POLICY,
    Body,
    answer,
    dumps,
    fresh_json,
    page,
    secure_headers,
)
from aggregator.schedule import Scheduler
from aggregator.selection import Selection, UnknownChoice
from aggregator.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: entries in the Atom feed (the newest changes, within 30 days)
FEED_ENTRIES = 200
CANCELLED_POLICIES = ("status", "prefix", "hide")


def system_clock() -> datetime:
    return datetime.now(UTC)


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
OUTPUTS = web.AppKey("outputs", Outputs)
CLOCK = web.AppKey("clock", Clock)
CHECKER = web.AppKey("checker", Checker)
#: allocations between two collections of the youngest objects (Python's default is 700)
YOUNG_OBJECTS = 10_000
#: network.trusted_proxies, parsed: peers whose X-Forwarded-For names the client
PROXIES = web.AppKey("proxies", Networks)


def serve(settings: Settings, host: str, port: int, scheduler: bool = True) -> None:
    """Run the web server (and the scheduler) until SIGINT or SIGTERM."""
    # merges and publishes run in threads; a thread that computes keeps the GIL for up to the
    # switch interval each time the event loop asks for it: 1 ms, not 5, keeps answers quick
    sys.setswitchinterval(0.001)
    app = make_app(settings, scheduler=scheduler)
    app.on_startup.append(_freeze_heap)
    web.run_app(
        app,
        host=host,
        port=port,
        print=lambda _: print(
            f"Serving {settings.network.name} on http://{host}:{port}/", flush=True
        ),
    )


async def _freeze_heap(app: web.Application) -> None:
    """Once started (modules imported, the store open, what was stored published), keep what
    the process holds for good out of the garbage collector's full collections.

    A full collection walks every tracked object, holding the GIL: the 140,000 objects of the
    imported modules alone took 0.27 s, and publishes and renders start a few such
    collections each. Frozen, those objects are not walked again (gc.freeze's documented
    use); garbage is still freed when its last reference goes."""
    gc.collect()
    gc.freeze()
    # and collect the young far less often: a publish or a render allocates millions of
    # objects that are freed by their reference counts, not by the collector (a full
    # collection during one freed 0 to 40 objects), and every 70,000 allocations the
    # collector weighed a full collection that walked the events being read
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])
    app[OUTPUTS].freeze_kept = True


def make_app(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Clock = system_clock,
    scheduler: bool = True,
    check_guard: Guard | None = None,
    check_resolver: AbstractResolver | None = None,
) -> web.Application:
    """The web application; with scheduler=True it also refreshes sources on their schedule.

    `check_guard` and `check_resolver` are for tests of /check: a guard that lets a local
    server play a public one, and a resolver that sends its name there.
    """
    app = web.Application(middlewares=[metrics.measured], client_max_size=settings.limits.max_bytes)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[PROXIES] = trusted_proxies(settings.network.trusted_proxies)
    app.on_response_prepare.append(secure_headers)
    app.cleanup_ctx.append(
        partial(
            _lifecycle,
            store=store,
            scheduler=scheduler,
            check_guard=check_guard or Guard(),
            check_resolver=check_resolver,
        )
    )
    for path, handler in ROUTES:
        app.router.add_get(path, handler)
    app.router.add_post("/check", check_page)
    return app


async def _lifecycle(
    app: web.Application,
    *,
    store: Store | None,
    scheduler: bool,
    check_guard: Guard,
    check_resolver: AbstractResolver | None,
) -> AsyncIterator[None]:
    """The store, the sessions and the scheduler: set up before the first request, torn
    down after the last (app.cleanup_ctx)."""
    settings, clock = app[SETTINGS], app[CLOCK]
    own_store = store is None
    app[STORE] = store or await Store.open(settings.database_url)
    await app[STORE].sync_sources(
        settings.sources, now=clock(), allow_removals=settings.allow_removals
    )
    # a changed configuration (base URL, languages) re-renders what is published; a bug
    # there must not stop the start: what was published before is served meanwhile
    try:
        await publish(app[STORE], settings, clock())
    except Exception:
        log.exception("publishing at start failed; serving what was published before")
    app[OUTPUTS] = Outputs(app[STORE], settings)
    session = open_session(settings.network, settings.limits)
    check_session = open_session(
        settings.network, settings.limits, check_guard.resolver(check_resolver)
    )
    app[CHECKER] = Checker(check_guard, check_session)
    jobs = None
    if scheduler:
        fetcher = Fetcher(session, settings.limits)
        jobs = Scheduler(app[STORE], fetcher, settings, clock, app[OUTPUTS].invalidate)
        await jobs.start()
    yield
    if jobs is not None:
        await jobs.stop()
        await fetcher.close()
    await session.close()
    await app[CHECKER].session.close()
    if own_store:
        await app[STORE].close()


async def check_page(request: web.Request) -> web.Response:
    """/check (GET and POST): see check_page.answer_check."""
    app = request.app
    return await answer_check(request, app[SETTINGS], app[CHECKER], app[CLOCK](), app[PROXIES])


async def healthz(request: web.Request) -> web.Response:
    counts = await request.app[STORE].counts()
    return web.Response(
        body=dumps({"status": "ok", "version": __version__, **counts}),
        content_type=JSON,
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


async def metrics_text(request: web.Request) -> web.Response:
    """Prometheus text format; each member source's occurrences and state read now."""
    states = await request.app[STORE].source_states()
    events = len(await request.app[OUTPUTS].events())
    return web.Response(
        body=metrics.exposition(request.app[SETTINGS], states, events),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )


def selection(request: web.Request) -> Selection:
    """The ?source=&category=&status= of a filtered output; 400 with the reason if wrong."""
    try:
        return Selection.from_query(request.query, (s.id for s in request.app[SETTINGS].sources))
    except ValueError as error:
        raise web.HTTPBadRequest(text=f"{error}\n") from None


def language(request: web.Request) -> str:
    """The page's language (request.page_language) among the network's."""
    return page_language(request, request.app[SETTINGS].network.languages)


async def index(request: web.Request) -> web.Response:
    """The embeddable page: ?lang=, ?source=, ?category=, ?status=, ?embed=1 (render/index.py).
    The filter is read as the feeds read it, and keys the kept page by its normalised form:
    however a filter is written, it is one entry, and a value cannot spell another's."""
    settings = request.app[SETTINGS]
    lang = language(request)
    try:
        chosen = Selection.from_query(request.query, (s.id for s in settings.sources))
    except UnknownChoice as error:
        raise web.HTTPBadRequest(text=f"{refused_filter(error, lang)}\n") from None
    embed = request.query.get("embed") == "1"
    now = request.app[CLOCK]()

    def render(events: list[NetworkEvent]) -> Body:
        text = render_index(events, settings, lang=lang, now=now, filters=chosen, embed=embed)
        return Body.of(text.encode("utf-8"), HTML)

    # "upcoming" moves with the clock: a kept page lives at most until the hour turns
    name = f"index.html?lang={lang}&embed={embed}&hour={now:%Y%m%d%H}&{chosen.query()}"
    body = await request.app[OUTPUTS].body(name, render)
    # no frame-ancestors: the page is made to be embedded anywhere
    response = answer(request, body, cors=False, max_age=60, policy=PAGE_POLICY)
    response.headers["Vary"] = "Accept-Encoding, Accept-Language"
    return response


async def calendar(request: web.Request) -> web.Response:
    network = request.app[SETTINGS].network
    policy = request.query.get("cancelled", "status")
    if policy not in CANCELLED_POLICIES:
        raise web.HTTPBadRequest(
            text=f"cancelled={policy!r}: use one of {', '.join(CANCELLED_POLICIES)}\n"
        )
    chosen = selection(request)
    body = await request.app[OUTPUTS].body(
        f"calendar.ics?cancelled={policy}&{chosen.query()}",
        lambda events: Body.of(
            render_calendar([e for e in events if chosen.admits(e.event)], network, policy), ICS
        ),
    )
    response = answer(request, body)
    response.headers["Content-Disposition"] = 'inline; filename="calendar.ics"'
    return response


async def atom(request: web.Request) -> web.Response:
    network = request.app[SETTINGS].network
    store = request.app[STORE]
    chosen = selection(request)

    async def render(events) -> Body:
        if not chosen:
            changes = await store.recent_changes()
        else:
            # an event's changes are in when the event is (as it is now)
            wanted = {e.event.id for e in events if chosen.admits(e.event)}
            changes = [c for c in await store.recent_changes(None) if c.event_id in wanted]
            changes = changes[:FEED_ENTRIES]
        return await asyncio.to_thread(lambda: Body.of(render_atom(changes, network), ATOM))

    name = f"feed.atom?{chosen.query()}"
    return answer(request, await request.app[OUTPUTS].body(name, render))


async def events_json(request: web.Request) -> web.Response:
    network = request.app[SETTINGS].network
    store = request.app[STORE]
    chosen = selection(request)

    async def render(events) -> Body:
        history = await store.event_history()

        def rendered() -> Body:
            shown = [e for e in events if chosen.admits(e.event)]
            return Body.of(render_json(shown, network, history), JSON)

        return await asyncio.to_thread(rendered)

    name = f"events.json?{chosen.query()}"
    return answer(request, await request.app[OUTPUTS].body(name, render))


async def _find(request: web.Request) -> NetworkEvent:
    wanted = request.match_info["id"]
    for item in await request.app[OUTPUTS].events():
        if item.event.id == wanted:
            return item
    raise web.HTTPNotFound(text=f"no event with id {wanted!r}\n")


async def event_ics(request: web.Request) -> web.Response:
    item = await _find(request)
    network = request.app[SETTINGS].network
    body = await request.app[OUTPUTS].body(
        f"events/{item.event.id}.ics", lambda _: Body.of(render_calendar([item], network), ICS)
    )
    response = answer(request, body)
    response.headers["Content-Disposition"] = f'attachment; filename="{item.event.id}.ics"'
    return response


async def event_detail(request: web.Request) -> web.Response:
    item = await _find(request)
    network = request.app[SETTINGS].network
    store = request.app[STORE]

    async def render(_events) -> Body:
        history = (await store.event_history()).get(item.event.id, [])
        return Body.of(dumps(event_json(item, network, history)), JSON)

    return answer(request, await request.app[OUTPUTS].body(f"events/{item.event.id}.json", render))


async def event_page(request: web.Request) -> web.Response:
    """One event as HTML, with its member copies and its history; JSON when asked for it."""
    if wants_json(request, by_default=False):
        return await event_detail(request)
    item = await _find(request)
    settings = request.app[SETTINGS]
    store = request.app[STORE]
    lang = language(request)

    async def render(_events) -> Body:
        history = (await store.event_history()).get(item.event.id, [])
        text = render_event_page(item, settings, history, lang=lang)
        return Body.of(text.encode("utf-8"), HTML)

    body = await request.app[OUTPUTS].body(f"events/{item.event.id}.html?lang={lang}", render)
    response = answer(request, body, cors=False, max_age=60, policy=FRAMED_POLICY)
    response.headers["Vary"] = "Accept-Encoding, Accept-Language"
    return response


async def sources_page(request: web.Request) -> web.Response:
    """Every member source's health: what a member organisation looks at first."""
    settings = request.app[SETTINGS]
    states = await request.app[STORE].source_states()
    if wants_json(request, by_default=True):
        return fresh_json({"sources": [source_json(s, states.get(s.id)) for s in settings.sources]})
    return page(render_sources(settings, states, lang=language(request)))


async def source_page(request: web.Request) -> web.Response:
    """One source's health: state, what was read and skipped (with hints to fix it), what
    was merged with whom, and its fetches of the last 30 days (a timeline and a list)."""
    settings = request.app[SETTINGS]
    try:
        source = settings.source(request.match_info["id"])
    except KeyError:
        raise web.HTTPNotFound(text=f"no source {request.match_info['id']!r}\n") from None
    store = request.app[STORE]
    state = (await store.source_states()).get(source.id)
    lang = language(request)
    fetches = await store.fetch_history(source.id, limit=500)
    events = await request.app[OUTPUTS].events()
    occurrences = await store.load_occurrences(source.id)
    report = source_health(
        source, state, settings, occurrences=occurrences, events=events, fetches=fetches
    )
    if wants_json(request, by_default=True):
        return fresh_json(health_json(report, lang))
    now = request.app[CLOCK]()
    return page(render_source(report, settings, lang=lang, now=now))


#: GET routes; /check also takes POST (an uploaded file)
ROUTES = (
    ("/", index),
    ("/calendar.ics", calendar),
    ("/feed.atom", atom),
    ("/events.json", events_json),
    ("/events/{id}.ics", event_ics),
    ("/events/{id}.json", event_detail),
    ("/events/{id}", event_page),
    ("/sources", sources_page),
    ("/sources.json", sources_page),
    ("/sources/{id}.json", source_page),
    ("/sources/{id}", source_page),
    ("/healthz", healthz),
    ("/metrics", metrics_text),
    ("/check", check_page),
)
