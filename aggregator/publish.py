"""The publish stage: the members' occurrences -> the network events subscribers get.

    with store.merge_turn:                                   # no snapshot written meanwhile
        merged = remerge.merge_changes(...)                  # what the changes can reach
                 or remerge.merge_all(..., write)            # the configuration changed
        write(events, ids, merge state):
            events = retained(events, now, retention)        # rule 7
            store.write_publication(known ->                 # one write turn
                rendered(version(events, known, ...), render_vevent), merge state)

Merge, retention and versioning are pure (merge/, versioning.py); the store only writes
what it is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from aggregator.merge.incremental import config_key
from aggregator.model import MergedEvent, Network, Publication, PublishedVersion, Settings, Status
from aggregator.normalise import instant
from aggregator.remerge import merge_all, merge_changes
from aggregator.render import render_key
from aggregator.render.ics import render_vevent
from aggregator.store import Store
from aggregator.store.merging import MergeState
from aggregator.versioning import prepare_publication

log = logging.getLogger(__name__)


async def publish(store: Store, settings: Settings, now: datetime) -> bool:
    """Merge what changed and publish the network events that changed.

    Cancelled and postponed events stay until their date has passed by the retention time
    (rule 7); then they leave every output. Returns whether anything changed.
    """
    publisher = _Publisher(store, settings, now)
    config = config_key(settings.sources, settings.merging, publisher.key)
    async with store.merge_turn:
        if await store.merge_config() == config:
            merged = await merge_changes(store, settings, config)
            expired = await store.expired_events(now - publisher.retention)
            changed = await publisher.write(merged.events, merged.ids, merged.state, expired)
        else:
            changed = await merge_all(store, settings, config, publisher.write)
    for source_id, warnings in publisher.render.unrenderable.items():
        await store.add_source_warnings(source_id, warnings)
    return changed


class _Publisher:
    """Writes a publish, in one part or several: the versions of the events given."""

    def __init__(self, store: Store, settings: Settings, now: datetime) -> None:
        self.store, self.now = store, now
        self.key = render_key(settings.network)
        self.retention = timedelta(days=settings.limits.retention_days)
        self.render = _Renderer(settings.network)

    async def write(
        self,
        events: list[MergedEvent],
        ids: set[str] | None,
        state: MergeState | None,
        gone: Collection[str] = (),
    ) -> bool:
        """Version, render and write `events` against the published versions of `ids`;
        the published events among `ids` merged no more and those `gone` leave."""
        kept = retained(events, self.now, self.retention)

        async def plan(known: dict[str, PublishedVersion]) -> Publication:
            # versioning and rendering are CPU work on every changed event: in a thread, so
            # the server keeps answering during a large publish (the write turn is held)
            publication = await asyncio.to_thread(
                prepare_publication, kept, known, self.render, self.key, self.now
            )
            if gone:
                left = (set(publication.gone) | set(gone)) - {e.id for e in kept}
                publication = replace(publication, gone=tuple(sorted(left)))
            # every identity merged is remembered under its event's id, the events past
            # their retention too: the ids an identity claims are those of its event now
            mapped = {identity: e.id for e in events for identity in e.identities}
            return replace(publication, identities=mapped)

        return await self.store.write_publication(plan, ids, state)


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
