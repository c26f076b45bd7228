"""The publish stage: the members' occurrences -> the network events subscribers get.

    with store.merge_turn:                                   # no snapshot written meanwhile
        the whole network, when the configuration changed (or there is no merge state):
            events = merge(store.load_occurrences(), ...)
        else only what the changes since the last publish can reach (merge/incremental.py):
            pending = store.pending_changes()                # keys added, changed, deleted
            seeds   = the changed occurrences, and those whose title probes changed
            part    = seeds + the events of the occurrences they may join, taken whole
            events  = merge(part, ..., vocabulary of the whole network)
        events = retained(events, now, retention)            # rule 7
        store.write_publication(known ->                     # one write turn
            rendered(version(events, known, ...), render_vevent), merge state)

A part no join crosses merges into what a full merge gives for it (test_incremental proves it
on random edits). Merge, retention and versioning are pure (merge/, versioning.py); the
store only writes what it is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from aggregator.merge import merge
from aggregator.merge.incremental import (
    changed_probes,
    config_key,
    count_changes,
    facts,
    near_enough,
    rarity_flips,
    reach,
    vocabulary_after,
    words_key,
)
from aggregator.merge.join import titles_of
from aggregator.merge.titles import Vocabulary
from aggregator.model import (
    MergedEvent,
    Network,
    Occurrence,
    Publication,
    PublishedVersion,
    Settings,
    Status,
)
from aggregator.normalise import instant, zone
from aggregator.reconcile import identity_of
from aggregator.render import render_key
from aggregator.render.ics import render_vevent
from aggregator.store import Store
from aggregator.store.merging import MergeState, Stored
from aggregator.versioning import prepare_publication

log = logging.getLogger(__name__)

_GONE = (Status.CANCELLED, Status.POSTPONED)


@dataclass(frozen=True)
class _Merged:
    """What a merge made: the events, the ids of the published events it may change (None:
    all) and the merge state to keep."""

    events: list[MergedEvent]
    ids: set[str] | None
    state: MergeState


async def publish(store: Store, settings: Settings, now: datetime) -> bool:
    """Merge what changed and publish the network events that changed.

    Cancelled and postponed events stay until their date has passed by the retention time
    (rule 7); then they leave every output. Returns whether anything changed.
    """
    key = render_key(settings.network)
    config = config_key(settings.sources, settings.merging, key)
    retention = timedelta(days=settings.limits.retention_days)
    render = _Renderer(settings.network)
    async with store.merge_turn:
        if await store.merge_config() == config:
            done = await _merge_changes(store, settings, config)
            expired = set(await store.expired_events(now - retention))
        else:
            done = await _merge_all(store, settings, config)
            expired = set()
        events = retained(done.events, now, retention)

        async def plan(known: dict[str, PublishedVersion]) -> Publication:
            # versioning and rendering are CPU work on every changed event: in a thread, so
            # the server keeps answering during a large publish (the write turn is held)
            publication = await asyncio.to_thread(
                prepare_publication, events, known, render, key, now
            )
            if expired:
                gone = (set(publication.gone) | expired) - {e.id for e in events}
                publication = replace(publication, gone=tuple(sorted(gone)))
            return publication

        changed = await store.write_publication(plan, done.ids, done.state)
    for source_id, warnings in render.unrenderable.items():
        await store.add_source_warnings(source_id, warnings)
    return changed


async def _merge_all(store: Store, settings: Settings, config: str) -> _Merged:
    """The whole network merged, and its merge state made anew."""
    occurrences, known_ids = await store.load_occurrences(), await store.known_ids()
    # seconds for a large network: in a thread, so the server keeps answering meanwhile
    return await asyncio.to_thread(_merged_all, occurrences, settings, known_ids, config)


def _merged_all(
    occurrences: list[Occurrence], settings: Settings, known_ids: dict[str, str], config: str
) -> _Merged:
    titles = titles_of(occurrences, settings.sources)
    vocabulary = Vocabulary.of(titles)
    events = merge(occurrences, settings.sources, settings.merging, known_ids, vocabulary)
    state = _state(occurrences, titles, events, vocabulary, settings, config)
    state.full = True
    state.counts = vocabulary.frequency
    state.total = vocabulary.total
    return _Merged(events, None, state)


def _state(
    items: Sequence[Occurrence],
    titles: Sequence,
    events: Sequence[MergedEvent],
    vocabulary: Vocabulary,
    settings: Settings,
    config: str,
) -> MergeState:
    """The merge state of the occurrences merged: each one's event, word set and facts, and
    the word sets' probes."""
    event_of = {key: event.id for event in events for key in event.members}
    network_zone = zone(settings.merging.network_zone)
    kept = {}
    sets: dict[str, str] = {}
    for occurrence, title in zip(items, titles, strict=True):
        words = words_key(title)
        if words not in sets:
            sets[words] = " ".join(vocabulary.probes(frozenset(title.key_words)))
        kept[occurrence.key] = (
            event_of.get(occurrence.key, ""),
            words,
            *facts(occurrence, network_zone),
        )
    expiries = {e.id: instant(e.end) for e in events if e.status in _GONE}
    return MergeState(kept, new_sets=sets, config=config, expiries=expiries)


async def _merge_changes(store: Store, settings: Settings, config: str) -> _Merged:
    """Only what the changes since the last publish can reach, merged with the whole
    network's vocabulary."""
    pending = await store.pending_changes()
    if not pending:
        return _Merged([], set(), MergeState({}, config=config))
    sources = settings.sources
    changed = await store.stored_occurrences(keys=[p.key for p in pending])
    new_words = [words_key(t) for t in titles_of([s.occurrence for s in changed], sources)]
    old_words = await store.set_words(p.set_id for p in pending if p.set_id is not None)
    delta, added = count_changes(
        (old_words[p.set_id] for p in pending if p.set_id in old_words), new_words
    )
    total_before = await store.merge_total()
    total = total_before + added
    touched = set(delta)
    flips = rarity_flips(total_before, total)
    if flips:
        touched.update(await store.words_counted(*flips))
    sets = await store.sets_with_words(touched)
    needed = touched.union(*(words.split() for words, _ in sets.values()))
    probes = changed_probes(sets, vocabulary_after(await store.word_counts(needed), delta, total))
    seeds = {s.occurrence.key: s for s in changed}
    for s in await store.stored_occurrences(set_ids=list(probes)):
        seeds.setdefault(s.occurrence.key, s)
    groups = await _groups_within_reach(store, settings, seeds)
    groups.update(p.event_id for p in pending if p.event_id)
    members = await store.stored_occurrences(event_ids=sorted(groups))
    part = {s.occurrence.key: s.occurrence for s in members}
    part.update((key, s.occurrence) for key, s in seeds.items())
    items = list(part.values())
    titles = titles_of(items, sources)
    words = set().union(*(t.key_words for t in titles))
    vocabulary = vocabulary_after(await store.word_counts(words), delta, total)
    known = await store.known_ids(identity_of(o) for o in items)
    events = await asyncio.to_thread(merge, items, sources, settings.merging, known, vocabulary)
    state = _state(items, titles, events, vocabulary, settings, config)
    state.probes, state.counts, state.total = probes, delta, added
    state.merged = [p.key for p in pending]
    return _Merged(events, groups | {e.id for e in events}, state)


async def _groups_within_reach(
    store: Store, settings: Settings, seeds: dict[str, Stored]
) -> set[str]:
    """The events of the occurrences the seeds may be joined to, and the seeds' own."""
    if not seeds:
        return set()
    network_zone = zone(settings.merging.network_zone)
    occurrences = [s.occurrence for s in seeds.values()]
    found = [facts(o, network_zone) for o in occurrences]
    titles = titles_of(occurrences, settings.sources)
    reaches = [
        reach(f, o.all_day, settings.merging) for f, o in zip(found, occurrences, strict=True)
    ]
    near = await store.near(
        reaches, {f.ident_hash for f in found}, {f.url_hash for f in found if f.url_hash}
    )
    groups = {s.event_id for s in seeds.values() if s.event_id}
    groups.update(near_enough(occurrences, found, titles, reaches, near))
    return groups


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
