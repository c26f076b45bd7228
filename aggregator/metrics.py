"""What /metrics exposes (prometheus-client): fetches, renders, requests, 304s, and per
source its occurrences and state. One registry for the process, not the client's global
one, so that tests can make many apps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
