"""make_app(): the aiohttp application, its routes and the outputs it keeps.

Bodies are rendered once per change of the data and kept as bytes with a strong ETag
(outputs.py); requests are answered from those bytes (304 when they match). How an answer
is made is responses.py; what a request asks for (language, JSON or HTML, its client) is
request.py; the /check page is check_page.py; the pages themselves are render/html.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from pathlib import Path
from urllib.parse import quote, urlencode

from aiohttp import web
from aiohttp.abc import AbstractResolver
from aiohttp.web_log import AccessLogger
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from multidict import MultiDict, MultiMapping
from prometheus_client import CONTENT_TYPE_LATEST

from aggregator import __version__, metrics, published
from aggregator.accesslog import AccessLog, LeanAccessLogger
from aggregator.check_page import Checker, answer_check
from aggregator.fetch import Fetcher, open_session
from aggregator.guard import Guard
from aggregator.lease import Candidate
from aggregator.model import NetworkEvent, Settings
from aggregator.outputs import Asker, Gone, Outputs, Refused
from aggregator.publish import publish
from aggregator.published import (
    CANCELLED_POLICIES,
    EVERYTHING,
    MAX_LIMIT,
    Folder,
    FolderWriter,
    render_page,
    write_calendar,
    write_events_page,
    write_feed,
)
from aggregator.quota import Quota
from aggregator.render.html import render_event_page, render_source, render_sources
from aggregator.render.ics import render_calendar
from aggregator.render.json import event_json
from aggregator.render.sources import health_json, source_health, source_json
from aggregator.render.views import network_zone, refused_filter
from aggregator.request import (
    Networks,
    client_address,
    page_language,
    trusted_proxies,
    wants_json,
)
from aggregator.responses import (
    ATOM,
    FRAMED_POLICY,
    HTML,
    ICS,
    JSON,
    PAGE_POLICY,
    SEND_TIMEOUT_KEY,
    Body,
    BodyWriter,
    OverBudget,
    Stalled,
    answer,
    dumps,
    fresh_json,
    page,
    secure_headers,
)
from aggregator.schedule import Scheduler
from aggregator.search import query_words
from aggregator.selection import Selection, UnknownChoice
from aggregator.store import Store
from aggregator.store.lease import Listener, lease_for
from aggregator.windows import Window, asked_window, calendar_window, decode_cursor

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
OUTPUTS = web.AppKey("outputs", Outputs)
WRITER = web.AppKey("writer", FolderWriter)
CLOCK = web.AppKey("clock", Clock)
CHECKER = web.AppKey("checker", Checker)
CANDIDATE = web.AppKey("candidate", Candidate)
#: allocations between two collections of the youngest objects (Python's default is 700)
YOUNG_OBJECTS = 10_000
#: network.trusted_proxies, parsed: peers whose X-Forwarded-For names the client
PROXIES = web.AppKey("proxies", Networks)
#: the connections whose answers wait to be read (let go when they stop moving)
STALLED = web.AppKey("stalled", Stalled)
#: how many new saved filters each client makes (SAVES an hour)
SAVING = web.AppKey("saving", Quota)


def serve(settings: Settings, host: str, port: int, scheduler: bool = True) -> None:
    """Run the web server (and the scheduler) until SIGINT or SIGTERM. It answers from the
    published folder at once; the store's catching up (sources, a publish, the folder) runs
    behind it."""
    # merges and publishes run in threads; a thread that computes keeps the GIL for up to the
    # switch interval each time the event loop asks for it: 1 ms, not 5, keeps answers quick
    sys.setswitchinterval(0.001)
    app = make_app(settings, scheduler=scheduler, catch_up=True)
    app.on_startup.append(_freeze_heap)
    # the access log: lean lines made in batches, written by a thread (accesslog.py);
    # aiohttp's own logger cost more than half the time of a 304
    lines = AccessLog() if settings.outputs.access_log else None
    try:
        web.run_app(
            app,
            host=host,
            port=port,
            access_log=logging.getLogger("aiohttp.access") if lines is not None else None,
            access_log_class=AccessLogger if lines is None else LeanAccessLogger.writing_to(lines),
            print=lambda _: print(
                f"Serving {settings.network.name} on http://{host}:{port}/", flush=True
            ),
        )
    finally:
        if lines is not None:
            lines.close()


def schedule(settings: Settings, host: str, port: int) -> None:
    """Refresh the sources on schedule, without the outputs (`aggregator schedule`): one of
    any number of such processes, of which the one holding the lease fetches. /healthz and
    /metrics answer on `port`. The processes that serve hear of its publishes (PostgreSQL's
    NOTIFY, or the store's version on one machine) and write the published folder."""
    sys.setswitchinterval(0.001)
    web.run_app(
        make_scheduler_app(settings),
        host=host,
        port=port,
        access_log=None,
        print=lambda _: print(
            f"Scheduling {settings.network.name}; /healthz and /metrics on http://{host}:{port}/",
            flush=True,
        ),
    )


def make_scheduler_app(settings: Settings, *, clock: Clock = system_clock) -> web.Application:
    """`aggregator schedule`'s application: the scheduler while it holds the lease, and
    /healthz and /metrics."""
    app = web.Application()
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app.on_response_prepare.append(_prepared)
    app.cleanup_ctx.append(_schedule_lifecycle)
    app.router.add_get("/healthz", scheduler_healthz)
    app.router.add_get("/metrics", metrics_text)
    return app


async def _schedule_lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[STORE] = await Store.open(settings.database_url)
    session = open_session(settings.network, settings.limits)
    fetcher = Fetcher(session, settings.limits)

    async def lead() -> Callable[[], Awaitable[None]]:
        await _owed(app)
        return await _scheduling(app, fetcher, lambda: None)

    lease = lease_for(settings.database_url, settings.scheduler.lease_seconds)
    app[CANDIDATE] = Candidate(lease, settings.scheduler.lease_seconds, lead, store=app[STORE])
    await app[CANDIDATE].try_lead()
    app[CANDIDATE].run()
    yield
    await app[CANDIDATE].stop()
    await fetcher.close()
    await session.close()
    await app[STORE].close()


async def scheduler_healthz(request: web.Request) -> web.Response:
    """Alive; whether this process fetches (holds the lease), and the data's version."""
    body = dumps(
        {
            "status": "ok",
            "version": __version__,
            "role": "scheduler",
            "fetching": request.app[CANDIDATE].leading,
            "data_version": await request.app[STORE].data_version(),
        }
    )
    return web.Response(
        body=body, content_type=JSON, charset="utf-8", headers={"Cache-Control": "no-store"}
    )


async def _freeze_heap(app: web.Application) -> None:
    """Once started (modules imported, the store open), keep what the process holds for good
    out of the garbage collector's full collections.

    A full collection walks every tracked object, holding the GIL: the 140,000 objects of the
    imported modules alone took 0.27 s, and publishes and renders start a few such
    collections each. Frozen, those objects are not walked again (gc.freeze's documented
    use); garbage is still freed when its last reference goes."""
    gc.collect()
    gc.freeze()
    # and collect the young far less often: a publish or a render allocates millions of
    # objects that are freed by their reference counts, not by the collector
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])


def make_app(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Clock = system_clock,
    scheduler: bool = True,
    catch_up: bool = False,
    check_guard: Guard | None = None,
    check_resolver: AbstractResolver | None = None,
) -> web.Application:
    """The web application; with scheduler=True it also refreshes sources on their schedule.

    `catch_up`: answer at once from the published folder, while the sources are synced, what
    is owed published and the folder written (`serve`); without it that is done before the
    first request (tests). `check_guard` and `check_resolver` are for tests of /check: a
    guard that lets a local server play a public one, and a resolver that sends its name
    there.
    """
    app = web.Application(client_max_size=settings.limits.max_bytes)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[PROXIES] = trusted_proxies(settings.network.trusted_proxies)
    app[STALLED] = Stalled(settings.outputs.send_timeout)
    app[SEND_TIMEOUT_KEY] = settings.outputs.send_timeout
    app[SAVING] = Quota(SAVES, SAVES_PER)
    app.on_response_prepare.append(_answering)
    app.cleanup_ctx.append(
        partial(
            _lifecycle,
            store=store,
            scheduler=scheduler,
            catch_up=catch_up,
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
    catch_up: bool,
    check_guard: Guard,
    check_resolver: AbstractResolver | None,
) -> AsyncIterator[None]:
    """The store, the published folder, the sessions and the scheduler: set up before the
    first request (or, with `catch_up`, behind it), torn down after the last
    (app.cleanup_ctx)."""
    settings, clock = app[SETTINGS], app[CLOCK]
    own_store = store is None
    app[STORE] = store or await Store.open(settings.database_url)
    scratch = None
    root = settings.outputs.folder
    if root is None:  # settings made in code (tests): a folder of this process's own
        scratch = tempfile.TemporaryDirectory(prefix="aggregator-published-")
        root = Path(scratch.name)
    folder = Folder(root)
    app[OUTPUTS] = Outputs(app[STORE], settings, folder)
    app[OUTPUTS].reload()
    app[WRITER] = FolderWriter(folder, app[STORE], settings, clock, app[OUTPUTS].reload)
    app[OUTPUTS].on_behind = app[WRITER].request
    session = open_session(settings.network, settings.limits)
    check_session = open_session(
        settings.network, settings.limits, check_guard.resolver(check_resolver)
    )
    app[CHECKER] = Checker(check_guard, check_session)
    fetcher = Fetcher(session, settings.limits) if scheduler else None
    lease = lease_for(settings.database_url, settings.scheduler.lease_seconds)
    app[CANDIDATE] = Candidate(
        lease, settings.scheduler.lease_seconds, partial(_lead, app, fetcher), store=app[STORE]
    )
    # the page shows what is coming from now: the folder is written again at the turn of
    # every hour (by one of the processes sharing it; the others find it written)
    hourly = AsyncIOScheduler(timezone="UTC")
    hourly.add_job(
        _write_again, CronTrigger(minute=0, timezone="UTC"), args=[app[WRITER]], coalesce=True
    )
    # a client that stopped reading its answer is let go (responses.Stalled)
    hourly.add_job(
        _sweep, "interval", args=[app[STALLED]], seconds=max(1.0, settings.outputs.send_timeout / 4)
    )
    hourly.start()
    listener = None
    if app[STORE].engine.dialect.name == "postgresql":  # told of other processes' publishes
        listener = Listener(settings.database_url, app[OUTPUTS].told)
        listener.run()
    started = _catch_up(app, fetcher is not None)
    if catch_up:
        task = asyncio.create_task(started)
    else:
        await started
    yield
    if catch_up and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await app[CANDIDATE].stop()
    hourly.shutdown(wait=False)
    if listener is not None:
        await listener.stop()
    await app[WRITER].close()
    if fetcher is not None:
        await fetcher.close()
    await session.close()
    await app[CHECKER].session.close()
    if own_store:
        await app[STORE].close()
    if scratch is not None:
        scratch.cleanup()


async def _catch_up(app: web.Application, scheduler: bool) -> None:
    """What is owed (the sources synced with the configuration, a publish), done by the
    process that holds the scheduler's lease; then the folder written when it is not of
    this data, and a scheduler runs while this process holds the lease (or waits for it)."""
    candidate = app[CANDIDATE]
    if scheduler:
        await candidate.try_lead()
        candidate.run()
    else:
        # a process that only serves does what is owed when no scheduler holds the lease
        # (one machine, one process): never beside a scheduler, which does it
        async with candidate.lease.turn(app[STORE]) as ours:
            if ours:
                await _owed(app)
    await app[WRITER].request()  # when the folder is not of the data and the hour


async def _owed(app: web.Application) -> None:
    """Sync the sources with the configuration and publish what is owed: a changed
    configuration (base URL, languages) re-renders what is published. A bug there must not
    stop the start: what was published before is served meanwhile."""
    settings, clock, store = app[SETTINGS], app[CLOCK], app[STORE]
    await store.sync_sources(settings.sources, now=clock(), allow_removals=settings.allow_removals)
    try:
        if await publish(store, settings, clock()) and OUTPUTS in app:
            _published(app)
    except Exception:
        log.exception("publishing at start failed; serving what was published before")


async def _lead(app: web.Application, fetcher: Fetcher) -> Callable[[], Awaitable[None]]:
    """This process holds the scheduler's lease: catch up, then fetch on schedule (its
    publishes write the folder again); how to stop it when the lease is lost."""
    await _owed(app)
    return await _scheduling(app, fetcher, partial(_published, app))


def _published(app: web.Application) -> None:
    app[OUTPUTS].invalidate()
    app[WRITER].request()


async def _scheduling(
    app: web.Application, fetcher: Fetcher, published: Callable[[], None]
) -> Callable[[], Awaitable[None]]:
    job = Scheduler(app[STORE], fetcher, app[SETTINGS], app[CLOCK], published)
    await job.start()
    return job.stop


async def _sweep(stalled: Stalled) -> None:
    """A coroutine, so that APScheduler runs it on the event loop (the transports' own
    thread), not in its thread pool."""
    stalled.sweep()


async def _write_again(writer: FolderWriter) -> None:
    writer.request()


async def _prepared(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, as it is sent: the headers all carry, and the request counted."""
    secure_headers(response)
    metrics.count_request(request, response.status)


async def _answering(request: web.Request, response: web.StreamResponse) -> None:
    """_prepared, and the connection watched while its answer waits to be read (a 304 has
    no body to wait)."""
    secure_headers(response)
    metrics.count_request(request, response.status)
    if response.status != 304:
        request.app[STALLED].watch(request.transport)


async def check_page(request: web.Request) -> web.Response:
    """/check (GET and POST): see check_page.answer_check."""
    app = request.app
    return await answer_check(request, app[SETTINGS], app[CHECKER], app[CLOCK](), app[PROXIES])


async def healthz(request: web.Request) -> web.Response:
    """Alive, and what the published folder holds: from memory, no query to the store.
    `fetching`: this process holds the scheduler's lease (only one of them does)."""
    outputs = request.app[OUTPUTS]
    manifest = outputs.manifest
    body = dumps(
        {
            "status": "ok",
            "version": __version__,
            **manifest.get("counts", {}),
            "published": manifest.get("written"),
            "published_events": manifest.get("events"),
            "fetching": request.app[CANDIDATE].leading,
        }
    )
    return web.Response(
        body=body, content_type=JSON, charset="utf-8", headers={"Cache-Control": "no-store"}
    )


async def metrics_text(request: web.Request) -> web.Response:
    """Prometheus text format; each member source's occurrences and state read now."""
    states = await request.app[STORE].source_states()
    outputs = request.app.get(OUTPUTS)  # none in `aggregator schedule`
    events = (outputs and outputs.manifest.get("events")) or await request.app[
        STORE
    ].published_count()
    return web.Response(
        body=metrics.exposition(
            request.app[SETTINGS], states, events, request.app[CANDIDATE].leading
        ),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )


#: the parameters each output reads. Any other is ignored: it reaches no cache key, header or
#: link (and deploy/nginx.conf caches no request that has one)
SELECTION = ("f", "source", "category", "status")
WINDOW = ("from", "to", "days")
PAGE_PARAMETERS = ("lang", "embed", "month", "q", "after", *SELECTION)
CALENDAR_PARAMETERS = ("cancelled", *SELECTION, *WINDOW)
FEED_PARAMETERS = (*SELECTION, *WINDOW)
EVENTS_PARAMETERS = ("limit", "cursor", *SELECTION, *WINDOW)
EVENT_PARAMETERS = ("lang", "format")
#: new saved filters one client may make (SAVES in SAVES_PER seconds); beyond, its page links
#: the selection whole
SAVES, SAVES_PER = 20, 3600.0


async def selection(
    request: web.Request, lang: str | None = None, *, subscribed: bool = False
) -> Selection:
    """The ?source=&category=&status= of a filtered output, or the filter saved as ?f=KEY;
    400 with the reason if wrong (in the page's language when `lang` is given).
    `subscribed`: a calendar or feed asks for it (a saved key so fetched is in use: kept)."""
    app = request.app
    query: MultiMapping[str] = request.query
    key = query.get("f")
    if key:
        saved = await app[STORE].saved_filter(key.strip()[:16], app[CLOCK](), subscribed=subscribed)
        if saved is None:
            raise web.HTTPNotFound(text=f"f={key[:40]!r}: no such saved filter\n")
        query = MultiDict(
            (name, value) for name, values in json.loads(saved).items() for value in values
        )
    try:
        return Selection.from_query(query, (s.id for s in app[SETTINGS].sources))
    except UnknownChoice as error:
        text = refused_filter(error, lang) if lang else str(error)
        raise web.HTTPBadRequest(text=f"{text}\n") from None
    except ValueError as error:
        raise web.HTTPBadRequest(text=f"{error}\n") from None


def _saved_key(request: web.Request) -> str | None:
    """The ?f= key as the outputs name it (a saved filter's own key, at most 16 characters)."""
    key = request.query.get("f", "").strip()[:16]
    return key or None


def asked(request: web.Request) -> Window | None:
    """The window ?from=, ?to=, ?days= ask for; 400 with the reason if wrong."""
    tz = network_zone(request.app[SETTINGS].network)
    try:
        return asked_window(request.query, request.app[CLOCK]().astimezone(tz).date(), tz)
    except ValueError as error:
        raise web.HTTPBadRequest(text=f"{error}\n") from None


def window_parameters(window: Window | None, tz: tzinfo) -> list[tuple[str, str]]:
    """The window as ?from=&to= of whole days in the network's zone (its canonical form in a
    link: the same window, the same parameters)."""
    if window is None:
        return []
    found = []
    if window.start is not None:
        found.append(("from", window.start.astimezone(tz).date().isoformat()))
    if window.end is not None:
        last = window.end.astimezone(tz).date() - timedelta(days=1)
        found.append(("to", last.isoformat()))
    return found


def plain_window(request: web.Request) -> Window:
    """What the plain outputs hold (outputs.calendar_past_days and calendar_future_days)."""
    settings = request.app[SETTINGS]
    return calendar_window(settings.outputs, request.app[CLOCK](), network_zone(settings.network))


def language(request: web.Request) -> str:
    """The page's language (request.page_language) among the network's."""
    return page_language(request, request.app[SETTINGS].network.languages)


async def _folder_file(request: web.Request, name: str) -> Body | None:
    """The published folder's `name`, for a request that asks for nothing more."""
    outputs = request.app[OUTPUTS]
    return outputs.fresh(name) or await outputs.published_now(name)


def asker(request: web.Request) -> Asker:
    """Who asks (the client behind the proxies we trust), and how to tell it has gone."""
    return Asker(client_address(request, request.app[PROXIES]), partial(_gone, request))


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _kept(request: web.Request, name: str, render, *, cheap: bool = False) -> Body:
    """The body `name` kept or rendered on demand by `render` (outputs.Outputs.body): 429 or
    503 with Retry-After when its render is not admitted or would outgrow the disk budget."""
    try:
        return await request.app[OUTPUTS].body(name, render, asker(request), cheap=cheap)
    except Refused as refused:
        error = web.HTTPTooManyRequests if refused.status == 429 else web.HTTPServiceUnavailable
        raise error(
            headers={"Retry-After": str(refused.retry_after)}, text=f"{refused.reason}\n"
        ) from None
    except OverBudget:
        raise web.HTTPServiceUnavailable(
            headers={"Retry-After": "60"},
            text="the server holds as many rendered answers as it may: ask again later\n",
        ) from None
    except Gone:  # nobody reads this answer
        raise web.HTTPServiceUnavailable(text="the client left\n") from None


async def _rendered(request: web.Request, name: str, content_type: str, write) -> Body:
    """The body `name` rendered on demand by `write(out)` (kept: outputs.py)."""

    async def render() -> Body:
        out = BodyWriter.temporary(content_type)
        link = await write(out)
        body = await asyncio.to_thread(out.body)
        return replace(body, link=link) if link else body

    return await _kept(request, name, render)


async def index(request: web.Request) -> web.StreamResponse:
    """The embeddable page: the coming weeks, or ?month=YYYY-MM; ?q= searches; ?source=,
    ?category=, ?status= (or ?f=) filter; ?lang=, ?embed=1 (render/index.py). The plain
    page in each language is the published folder's, written within the hour. Only
    PAGE_PARAMETERS are read."""
    from aggregator.render.index import links_too_long, page_period  # noqa: PLC0415

    app = request.app
    settings, now = app[SETTINGS], app[CLOCK]()
    lang = language(request)
    query = request.query
    chosen = await selection(request, lang)
    embed = query.get("embed") == "1"
    month = query.get("month", "").strip() or None
    q = " ".join(query_words(query.get("q")))
    after = query.get("after", "").strip() or None
    if not (chosen or embed or month or q or after):
        body = await _folder_file(request, f"index.{lang}.html")
        written = app[OUTPUTS].written()
        if body is not None and written and f"{written:%Y%m%d%H}" == f"{now:%Y%m%d%H}":
            return _page_answer(request, body)
    try:
        page_period(now, network_zone(settings.network), month)
        if after:
            decode_cursor(after)
    except ValueError as error:
        raise web.HTTPBadRequest(text=f"{error}\n") from None
    saved = _saved_key(request)
    if chosen and not saved and links_too_long(settings.network.base_url, chosen.parameters()):
        saved = await _save_filter(request, chosen, now)

    async def render() -> Body:
        data = await render_page(
            app[STORE],
            settings,
            now,
            lang=lang,
            chosen=chosen,
            embed=embed,
            month=month,
            q=q,
            saved=saved,
            after=after,
        )
        return await asyncio.to_thread(Body.of, data, HTML)

    # "coming" moves with the clock: a kept page lives at most until the hour turns
    name = (
        f"index.html?lang={lang}&embed={embed}&hour={now:%Y%m%d%H}&month={month}"
        f"&q={quote(q)}&after={quote(after or '')}&saved={saved}&{chosen.query()}"
    )
    return _page_answer(request, await _kept(request, name, render))


async def _save_filter(request: web.Request, chosen: Selection, now: datetime) -> str | None:
    """The saved key of a selection too long for a link: the one it has, or a new one when
    this client has not made SAVES in the last hour (None: the page links it whole)."""
    store, query = request.app[STORE], _saved_query(chosen)
    known = await store.filter_saved(query)
    if known is not None:
        return known
    if request.app[SAVING].wait(client_address(request, request.app[PROXIES]), now):
        return None
    return await store.save_filter(query, now)


def _saved_query(chosen: Selection) -> str:
    return json.dumps(chosen.parameters(), sort_keys=True, ensure_ascii=False)


def _page_answer(request: web.Request, body: Body) -> web.StreamResponse:
    # no frame-ancestors: the page is made to be embedded anywhere
    return answer(request, body, cors=False, max_age=60, policy=PAGE_POLICY, extra=_BY_LANGUAGE)


_BY_LANGUAGE = {"Vary": "Accept-Encoding, Accept-Language"}


async def calendar(request: web.Request) -> web.StreamResponse:
    """The calendar: ?cancelled=status|prefix|hide, the filters, a window; plain (or asking
    only what the plain one is), the published folder's. Only CALENDAR_PARAMETERS are
    read."""
    if not request.query_string:
        body = await _folder_file(request, "calendar.ics")
        if body is not None:
            return _calendar_answer(request, body)
    policy = request.query.get("cancelled", "status").strip() or "status"
    if policy not in CANCELLED_POLICIES:
        raise web.HTTPBadRequest(
            text=f"cancelled={policy[:40]!r}: use one of {', '.join(CANCELLED_POLICIES)}\n"
        )
    chosen = await selection(request, subscribed=True)
    window = asked(request)
    if policy == "status" and not chosen and window is None:
        body = await _folder_file(request, "calendar.ics")
        if body is not None:
            return _calendar_answer(request, body)
    window = window or plain_window(request)
    store, settings = request.app[STORE], request.app[SETTINGS]

    async def write(out: BodyWriter) -> None:
        await write_calendar(store, settings, out, window, chosen, policy)

    name = f"calendar.ics?cancelled={policy}&{chosen.query()}&{window.query()}"
    return _calendar_answer(request, await _rendered(request, name, ICS, write))


def _calendar_answer(request: web.Request, body: Body) -> web.StreamResponse:
    return answer(request, body, extra=_INLINE_CALENDAR)


_INLINE_CALENDAR = {"Content-Disposition": 'inline; filename="calendar.ics"'}


async def atom(request: web.Request) -> web.StreamResponse:
    """The newest changes; those of the events in a window or a selection when asked. Only
    FEED_PARAMETERS are read."""
    chosen = await selection(request, subscribed=True) if request.query_string else EVERYTHING
    window = asked(request) if request.query_string else None
    if not chosen and window is None:
        body = await _folder_file(request, "feed.atom")
        if body is not None:
            return answer(request, body)
    store, settings = request.app[STORE], request.app[SETTINGS]

    async def write(out: BodyWriter) -> None:
        await write_feed(store, settings, out, window, chosen)

    name = f"feed.atom?{chosen.query()}&{window.query() if window else ''}"
    return answer(request, await _rendered(request, name, ATOM, write))


async def events_json(request: web.Request) -> web.StreamResponse:
    """A page of the events: ?limit= (PAGE_LIMIT, at most MAX_LIMIT) from ?cursor= (the
    previous page's "next"), in a window and a selection; `Link: <…>; rel="next"`. Only
    EVENTS_PARAMETERS are read, and the next page's address is made of their canonical
    form: a body is a function of its cache key alone."""
    query = request.query
    limit_asked = query.get("limit", "").strip()
    cursor = query.get("cursor", "").strip() or None
    chosen = await selection(request) if request.query_string else EVERYTHING
    window = asked(request) if request.query_string else None
    if not (limit_asked or cursor or chosen or window):
        body = await _folder_file(request, "events.json")
        if body is not None:
            return answer(request, body)
    try:
        limit = int(limit_asked or published.PAGE_LIMIT)
    except ValueError:
        raise web.HTTPBadRequest(text=f"limit={limit_asked[:40]!r}: give a number\n") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise web.HTTPBadRequest(text=f"limit={limit}: give 1 to {MAX_LIMIT}\n")
    try:
        after = decode_cursor(cursor) if cursor else None
    except ValueError as error:
        raise web.HTTPBadRequest(text=f"{error}\n") from None
    window = window or plain_window(request)
    store, settings = request.app[STORE], request.app[SETTINGS]
    saved = _saved_key(request)
    kept: list[tuple[str, str]] = [("limit", str(limit))] if limit != published.PAGE_LIMIT else []
    if saved:
        kept.append(("f", saved))
    else:
        kept += [(k, ",".join(v)) for k, v in chosen.parameters().items() if v]
    kept += window_parameters(window, network_zone(settings.network))

    def next_href(next_cursor: str) -> str:
        return "/events.json?" + urlencode([*kept, ("cursor", next_cursor)])

    async def write(out: BodyWriter) -> str | None:
        following = await write_events_page(
            store, settings, out, window, chosen, limit=limit, after=after, next_href=next_href
        )
        return f'<{following}>; rel="next"' if following else None

    name = (
        f"events.json?limit={limit}&cursor={quote(cursor or '')}&f={saved}&{chosen.query()}"
        f"&{window.query()}"
    )
    return answer(request, await _rendered(request, name, JSON, write))


async def _find(request: web.Request) -> NetworkEvent:
    wanted = request.match_info["id"]
    found = await request.app[STORE].published_events(ids=[wanted[:64]])
    if not found or found[0].event.id != wanted:
        raise web.HTTPNotFound(text=f"no event with id {wanted[:80]!r}\n")
    return found[0]


async def event_ics(request: web.Request) -> web.StreamResponse:
    item = await _find(request)
    network = request.app[SETTINGS].network

    async def render() -> Body:
        return Body.of(render_calendar([item], network), ICS)

    name = f"events/{item.event.id}.ics#{item.sequence}"
    body = await _kept(request, name, render, cheap=True)
    response = answer(request, body)
    response.headers["Content-Disposition"] = f'attachment; filename="{item.event.id}.ics"'
    return response


async def event_detail(request: web.Request) -> web.StreamResponse:
    item = await _find(request)
    network = request.app[SETTINGS].network
    store = request.app[STORE]

    async def render() -> Body:
        history = (await store.event_history([item.event.id])).get(item.event.id, [])
        return Body.of(dumps(event_json(item, network, history)), JSON)

    name = f"events/{item.event.id}.json#{item.sequence}"
    return answer(request, await _kept(request, name, render, cheap=True))


async def event_page(request: web.Request) -> web.StreamResponse:
    """One event as HTML, with its member copies and its history; JSON when asked for it
    (Accept: so both vary by it, for the caches between)."""
    if wants_json(request, by_default=False):
        response = await event_detail(request)
        response.headers["Vary"] = ", ".join(filter(None, (response.headers.get("Vary"), "Accept")))
        return response
    item = await _find(request)
    settings = request.app[SETTINGS]
    store = request.app[STORE]
    lang = language(request)

    async def render() -> Body:
        history = (await store.event_history([item.event.id])).get(item.event.id, [])
        text = render_event_page(item, settings, history, lang=lang)
        return Body.of(text.encode("utf-8"), HTML)

    name = f"events/{item.event.id}.html?lang={lang}#{item.sequence}"
    body = await _kept(request, name, render, cheap=True)
    response = answer(request, body, cors=False, max_age=60, policy=FRAMED_POLICY)
    response.headers["Vary"] = "Accept-Encoding, Accept-Language, Accept"
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
        raise web.HTTPNotFound(text=f"no source {request.match_info['id'][:80]!r}\n") from None
    store = request.app[STORE]
    state = (await store.source_states()).get(source.id)
    lang = language(request)
    fetches = await store.fetch_history(source.id, limit=500)
    events = await store.published_events(ids=await store.source_event_ids(source.id))
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
