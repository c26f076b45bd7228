"""The network's change feed: one Atom entry per change subscribers saw, newest first,
written by feedgen (RFC 4287)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from feedgen.feed import FeedGenerator

from aggregator.model import ChangeKind, ChangeRecord, Network
from aggregator.normalise import from_iso
from aggregator.render import event_url
from aggregator.render.text import label, short_when

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def change_title(change: ChangeRecord, network: Network) -> str:
    """'Aflyst / Cancelled: Koncert', 'Flyttet / Moved: Foredrag fra/from ... til/to ...'."""
    kind, title = change.kind, change.title
    if kind is ChangeKind.REMOVED:
        return f"{label(network, 'cancelled')}: {title} ({label(network, 'removed')})"
    if kind is ChangeKind.MOVED and change.before:
        before = short_when(from_iso(change.before["start"]), network)
        after = short_when(from_iso(change.after["start"]), network)
        return (
            f"{label(network, 'rescheduled')}: {title} {label(network, 'from', '/')} {before} "
            f"{label(network, 'to', '/')} {after}"
        )
    return f"{label(network, kind)}: {title}"


def render_atom(changes: Sequence[ChangeRecord], network: Network) -> bytes:
    """Same changes, same bytes: every timestamp comes from the data, none from the clock."""
    feed = FeedGenerator()
    feed.id(f"{network.base_url}/feed.atom")
    feed.title(network.name)
    feed.subtitle(network.description or network.name)
    feed.author({"name": network.name, "uri": network.base_url})
    feed.link(href=f"{network.base_url}/feed.atom", rel="self", type="application/atom+xml")
    feed.link(href=f"{network.base_url}/", rel="alternate", type="text/html")
    feed.language(network.languages[0])
    feed.updated(changes[0].at if changes else _EPOCH)
    for change in changes:
        entry = feed.add_entry(order="append")
        # stable: the change's own number, never reused
        entry.id(f"{network.base_url}/changes/{change.id}")
        entry.title(change_title(change, network))
        entry.updated(change.at)
        entry.link(href=event_url(network, change.event_id), rel="alternate")
        after = change.after
        start = short_when(from_iso(after["start"]), network)
        summary = [start]
        if after.get("location"):
            summary.append(after["location"])
        if change.kind is ChangeKind.UPDATED and after.get("fields"):
            summary.append(", ".join(after["fields"]))
        entry.summary(" · ".join(summary))
    return feed.atom_str(pretty=True)
