"""Network events -> an Atom feed, written by feedgen. Newest events first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from feedgen.feed import FeedGenerator

from aggregator.model import NetworkEvent, Status
from aggregator.render import event_url, organised_by
from aggregator.render.text import when

MAX_ENTRIES = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def render_atom(events: Sequence[NetworkEvent], network) -> bytes:
    """Same events, same bytes: every timestamp comes from the data, none from the clock."""
    feed = FeedGenerator()
    feed.id(f"{network.base_url}/")
    feed.title(network.name)
    feed.subtitle(network.description or network.name)
    feed.link(href=f"{network.base_url}/feed.atom", rel="self", type="application/atom+xml")
    feed.link(href=f"{network.base_url}/", rel="alternate", type="text/html")
    feed.language(network.languages[0])
    newest = sorted(events, key=lambda e: (e.last_modified, e.event.id), reverse=True)[:MAX_ENTRIES]
    feed.updated(newest[0].last_modified if newest else _EPOCH)
    for item in newest:
        event = item.event
        entry = feed.add_entry(order="append")
        entry.id(f"{event_url(network, event.id)}#{item.sequence}")
        title = event.title
        if event.status in (Status.CANCELLED, Status.POSTPONED):
            title = f"[{event.status.value}] {title}"
        entry.title(title)
        entry.updated(item.last_modified)
        entry.published(item.created)
        entry.link(href=event_url(network, event.id), rel="alternate")
        summary = [when(event, network.timezone)]
        if event.location:
            summary.append(event.location)
        summary.append(organised_by(network, event.organisers))
        entry.summary(" · ".join(summary))
        for category in event.categories:
            entry.category(term=category)
    return feed.atom_str(pretty=True)
