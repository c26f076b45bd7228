"""Network events -> JSON. Stable: the same events give the same bytes."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aggregator.model import ChangeKind, ChangeRecord, Network, NetworkEvent, Status
from aggregator.normalise import iso
from aggregator.render import event_url

_SCHEMA_STATUS = {
    Status.SCHEDULED: "EventScheduled",
    Status.TENTATIVE: "EventScheduled",
    Status.CANCELLED: "EventCancelled",
    Status.POSTPONED: "EventPostponed",
    Status.RESCHEDULED: "EventRescheduled",
}


def event_json(
    item: NetworkEvent,
    network: Network,
    history: list[ChangeRecord] | None = None,
    *,
    brief: bool = False,
) -> dict:
    """One event as /events/{id}.json gives it. `brief` (a page of /events.json): each change
    of its history without the fields before and after (the event's page has them), only
    which fields an update changed and where a move came from."""
    event = item.event
    status = _SCHEMA_STATUS[event.status]
    if event.previous_start is not None and event.status in (Status.SCHEDULED, Status.TENTATIVE):
        status = "EventRescheduled"
    return {
        "id": event.id,
        "title": event.title,
        "start": iso(event.start),
        "end": iso(event.end),
        "all_day": event.all_day,
        "timezone": event.tzid,
        "status": event.status.value,
        "eventStatus": f"https://schema.org/{status}",
        "previousStartDate": iso(event.previous_start),
        "removed": event.removed,
        "location": event.location,
        "description": event.description,
        "url": event.url,
        "page": event_url(network, event.id),
        "categories": list(event.categories),
        "organisers": list(event.organisers),
        "sources": list(event.source_ids),
        "copies": [
            {"source": source, "title": title, "url": url} for source, title, url in event.copies
        ],
        "sequence": item.sequence,
        "created": iso(item.created),
        "last_modified": iso(item.last_modified),
        "history": [_change(change, brief) for change in history or ()],
    }


def render_json(
    events: Sequence[NetworkEvent],
    network: Network,
    history: dict[str, list[ChangeRecord]] | None = None,
) -> bytes:
    body = {
        "network": {
            "name": network.name,
            "description": network.description,
            "timezone": network.timezone,
            "url": network.base_url,
        },
        "events": [
            event_json(item, network, (history or {}).get(item.event.id)) for item in events
        ],
    }
    return json.dumps(body, ensure_ascii=False, indent=1, sort_keys=False).encode("utf-8") + b"\n"


def _change(change: ChangeRecord, brief: bool) -> dict:
    if not brief:
        return {
            "at": iso(change.at),
            "kind": change.kind.value,
            "before": change.before,
            "after": change.after,
        }
    summary = {"at": iso(change.at), "kind": change.kind.value}
    if change.after.get("fields"):
        summary["fields"] = change.after["fields"]
    if change.kind is ChangeKind.MOVED and change.before:
        summary["from"] = change.before.get("start")
    return summary
