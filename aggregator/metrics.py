"""What /metrics exposes (prometheus-client): fetches, renders, requests, 304s, and per
source its occurrences and state. One registry for the process, not the client's global
one, so that tests can make many apps. `count_request` counts the requests."""

from __future__ import annotations

import collections
from collections.abc import Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

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


class _Requests:
    """aggregator_requests (by route and status) and aggregator_not_modified (304s, by
    route): counted in plain integers and read at a scrape. prometheus-client's Counter
    takes a lock and checks its labels at each inc: a tenth of the time of a whole 304."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, int]] = collections.Counter()

    def collect(self):
        requests = CounterMetricFamily(
            "aggregator_requests", "HTTP requests, by route and status.", labels=["route", "status"]
        )
        not_modified = CounterMetricFamily(
            "aggregator_not_modified",
            "Requests answered 304 Not Modified from a matching ETag (cache hits).",
            labels=["route"],
        )
        for (route, status), count in sorted(self.counts.items()):
            requests.add_metric([route, str(status)], count)
            if status == 304:
                not_modified.add_metric([route], count)
        return [requests, not_modified]


REQUESTS = _Requests()
REGISTRY.register(REQUESTS)
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
FETCHING = Gauge(
    "aggregator_scheduler_fetching",
    "1 when this process holds the scheduler's lease and fetches; summed over the processes "
    "of one database, exactly 1.",
    registry=REGISTRY,
)


def output_name(name: str) -> str:
    """A rendered body's name as a label: without its query, one label for all events."""
    path = name.split("?", 1)[0]
    if path.startswith("events/"):
        return "events/{id}" + path[path.rfind(".") :] if "." in path else "events/{id}"
    return path


def exposition(
    settings: Settings, states: Mapping[str, SourceState], events: int, fetching: bool = False
) -> bytes:
    """The Prometheus text format, with each member source's occurrences and state as
    `states` has them, the number of network `events` published, and whether this process
    is the one `fetching`."""
    OCCURRENCES.clear()
    for source in settings.sources:
        state = states.get(source.id)
        health = state.health if state else "never fetched"
        count = state.occurrence_count if state else 0
        OCCURRENCES.labels(source.id, health).set(count)
    EVENTS.set(events)
    FETCHING.set(int(fetching))
    return generate_latest(REGISTRY)


def count_request(request: web.BaseRequest, status: int) -> None:
    """A response is sent: count it by route (its pattern, not the path: /events/{id}) and
    status, and a 304. Called as each response is prepared (web.py), the 500 that aiohttp
    answers for a handler that raised too: no middleware, which cost a 304 a tenth."""
    match_info = getattr(request, "match_info", None)
    resource = match_info.route.resource if match_info is not None else None
    _count(resource.canonical if resource is not None else "unmatched", status)


def _count(route: str, status: int) -> None:
    REQUESTS.counts[route, status] += 1
