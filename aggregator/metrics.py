"""What /metrics exposes (prometheus-client): fetches, renders, requests, 304s, and per
source its occurrences and state. One registry for the process, not the client's global
one, so that tests can make many apps. `count_request` counts the requests."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from aggregator.model import Settings, SourceState

REGISTRY = CollectorRegistry(auto_describe=True)

FETCHES = Counter(
    "aggregator_fetches",
    "Fetches of member sources, by source and outcome "
    "(updated, unchanged, not modified, held, failed).",
    ["source", "outcome"],
    registry=REGISTRY,
)
FETCH_SECONDS = Histogram(
    "aggregator_fetch_duration_seconds",
    "How long fetching a member source took.",
    ["source"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
RENDER_SECONDS = Histogram(
    "aggregator_render_duration_seconds",
    "How long rendering an output took (once per change of the data).",
    ["output"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
    registry=REGISTRY,
)
REQUESTS = Counter(
    "aggregator_requests",
    "HTTP requests, by route and status.",
    ["route", "status"],
    registry=REGISTRY,
)
NOT_MODIFIED = Counter(
    "aggregator_not_modified",
    "Requests answered 304 Not Modified from a matching ETag (cache hits).",
    ["route"],
    registry=REGISTRY,
)
OCCURRENCES = Gauge(
    "aggregator_source_occurrences",
    "Occurrences a member source has now, by source and state (ok, failing, drop held, gone).",
    ["source", "state"],
    registry=REGISTRY,
)
EVENTS = Gauge(
    "aggregator_events",
    "Network events published.",
    registry=REGISTRY,
)


def output_name(name: str) -> str:
    """A rendered body's name as a label: without its query, one label for all events."""
    path = name.split("?", 1)[0]
    if path.startswith("events/"):
        return "events/{id}" + path[path.rfind(".") :] if "." in path else "events/{id}"
    return path


def exposition(settings: Settings, states: Mapping[str, SourceState], events: int) -> bytes:
    """The Prometheus text format, with each member source's occurrences and state as
    `states` has them and the number of network `events` published."""
    OCCURRENCES.clear()
    for source in settings.sources:
        state = states.get(source.id)
        health = state.health if state else "never fetched"
        count = state.occurrence_count if state else 0
        OCCURRENCES.labels(source.id, health).set(count)
    EVENTS.set(events)
    return generate_latest(REGISTRY)


def count_request(request: web.BaseRequest, status: int) -> None:
    """A response is sent: count it by route (its pattern, not the path: /events/{id}) and
    status, and a 304. Called as each response is prepared (web.py), the 500 that aiohttp
    answers for a handler that raised too: no middleware, which cost a 304 a tenth."""
    match_info = getattr(request, "match_info", None)
    resource = match_info.route.resource if match_info is not None else None
    _count(resource.canonical if resource is not None else "unmatched", status)


#: the counters of each (route, status) met: labels() takes a lock and builds its key each
#: time, a tenth of the time of a whole 304
_COUNTERS: dict[tuple[str, int], tuple] = {}


def _count(route: str, status: int) -> None:
    counters = _COUNTERS.get((route, status))
    if counters is None:
        counters = (REQUESTS.labels(route, str(status)),)
        if status == 304:
            counters += (NOT_MODIFIED.labels(route),)
        _COUNTERS[route, status] = counters
    for counter in counters:
        counter.inc()
