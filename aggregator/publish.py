"""The publish stage: every source's occurrences -> the network events subscribers get.

    occurrences, ids = store.load_occurrences(), store.known_ids()
    events = merge(occurrences, sources, ids)                # in a thread: seconds at scale
    events = retained(events, now, retention)                # rule 7
    store.write_publication(known ->                         # one write turn
        rendered(version(events, known, render_key, now),    # SEQUENCE, moved from, change
                 render_vevent))                             # an event that fails is skipped
    warn the members whose events could not be rendered

Merge, retention and versioning are pure (merge.py, versioning.py); the store only writes
what it is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from aggregator.merge import merge
from aggregator.model import MergedEvent, Network, Publication, PublishedVersion, Settings, Status
from aggregator.normalise import instant
from aggregator.render import render_key
from aggregator.render.ics import render_vevent
from aggregator.store import Store
from aggregator.versioning import prepare_publication

log = logging.getLogger(__name__)


async def publish(store: Store, settings: Settings, now: datetime) -> bool:
    """Merge every source's occurrences and publish the network events that changed.

    Cancelled and postponed events stay until their date has passed by the retention time
    (rule 7); then they leave every output. Returns whether anything changed.
    """
    occurrences, known_ids = await store.load_occurrences(), await store.known_ids()
    # seconds for a large network: in a thread, so the server keeps answering meanwhile
    events = await asyncio.to_thread(
        merge, occurrences, settings.sources, settings.merging, known_ids
    )
    merged = retained(events, now, timedelta(days=settings.limits.retention_days))
    render = _Renderer(settings.network)
    key = render_key(settings.network)

    async def plan(known: dict[str, PublishedVersion]) -> Publication:
        # versioning and rendering are CPU work on every changed event: in a thread, so
        # the server keeps answering during a large publish (the write turn is held)
        return await asyncio.to_thread(prepare_publication, merged, known, render, key, now)

    changed = await store.write_publication(plan)
    for source_id, warnings in render.unrenderable.items():
        await store.add_source_warnings(source_id, warnings)
    return changed


def retained(
    events: Iterable[MergedEvent], now: datetime, retention: timedelta
) -> list[MergedEvent]:
    """The events still shown: a cancelled or postponed one only until its end (an all-day
    one's end date at midnight UTC) has passed by `retention` (rule 7)."""
    gone = (Status.CANCELLED, Status.POSTPONED)
    return [
        event
        for event in events
        if not (event.status in gone and instant(event.end) + retention < now)
    ]


class _Renderer:
    """render_vevent for one publish, keeping the members' warnings of what it could not
    render: member text that icalendar cannot write costs that event, never the publish."""

    def __init__(self, network: Network) -> None:
        self.network = network
        #: source id -> warnings for its member, in the order met
        self.unrenderable: dict[str, list[str]] = {}

    def __call__(
        self, event: MergedEvent, sequence: int, created: datetime, modified: datetime
    ) -> bytes | None:
        try:
            return render_vevent(event, sequence, created, modified, network=self.network)
        except Exception as e:  # noqa: BLE001  (whatever the library raises on a value)
            log.warning("event %s could not be rendered: %r", event.id, e)
            for source_id in event.source_ids:
                self.unrenderable.setdefault(source_id, []).append(
                    f"event '{event.title}' could not be written to the calendar and was "
                    f"left out ({type(e).__name__}: {str(e)[:120]}); check its text and links"
                )
            return None
