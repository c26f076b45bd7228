"""Which part of the network a publish merges, and the merge state it keeps (rule 9 at
scale). Two ways, with the same result as merging the whole network at once:

    merge_changes(store, settings, config)       # what the changes since the last publish
        pending = store.pending_changes()        # can reach (merge/incremental.py)
        seeds   = the changed occurrences, and those whose title probes changed
        part    = seeds + the events of the occurrences they may join, taken whole
        events  = merge(part, ..., vocabulary of the whole network)

    merge_all(store, settings, config, write)    # the configuration changed: everything, in
        vocabulary of every title                 # parts of bounded size
        occurrences in order of start, a part at a time: merged with the events already
            made that they may join (as merge_changes does)
        the events, a batch at a time: merged from their members and written

A part that no join crosses merges into what a merge of the whole network gives for it
(tests/test_incremental.py proves it on random edits).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from aggregator.merge import merge
from aggregator.merge.group import holders_of
from aggregator.merge.incremental import (
    changed_probes,
    count_changes,
    facts,
    near_enough,
    rarity_flips,
    reach,
    reach_back,
    vocabulary_after,
    words_key,
)
from aggregator.merge.join import titles_of
from aggregator.merge.titles import Title, Vocabulary, comparable_titles
from aggregator.model import MergedEvent, Occurrence, Settings, Status
from aggregator.normalise import event_id, instant, zone
from aggregator.reconcile import identity_of
from aggregator.store import Store
from aggregator.store.merging import MergeState, Stored

log = logging.getLogger(__name__)

_GONE = (Status.CANCELLED, Status.POSTPONED)

#: occurrences merged at a time when the whole network is merged
PART = 20_000
#: events versioned and written at a time when the whole network is merged
BATCH = 5_000

#: writes a part of a publication: its events, the ids of the published events it may
#: change, the merge state to keep with it, and events gone besides -> whether any changed
Write = Callable[[list[MergedEvent], set[str], MergeState | None], Awaitable[bool]]


@dataclass(frozen=True)
class Merged:
    """What a merge made: the events, the ids of the published events it may change (None:
    all) and the merge state to keep."""

    events: list[MergedEvent]
    ids: set[str] | None
    state: MergeState


def merge_state(
    items: Sequence[Occurrence],
    titles: Sequence,
    events: Sequence[MergedEvent],
    vocabulary: Vocabulary,
    settings: Settings,
    config: str | None,
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


async def merge_changes(store: Store, settings: Settings, config: str) -> Merged:
    """Only what the changes since the last publish can reach, merged with the whole
    network's vocabulary."""
    pending = await store.pending_changes()
    if not pending:
        return Merged([], set(), MergeState({}, config=config))
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
    groups = await groups_within_reach(store, settings, seeds)
    groups.update(p.event_id for p in pending if p.event_id)
    members = await store.stored_occurrences(event_ids=sorted(groups))
    part = {s.occurrence.key: s.occurrence for s in members}
    part.update((key, s.occurrence) for key, s in seeds.items())
    items = list(part.values())
    titles = titles_of(items, sources)
    words = set().union(*(t.key_words for t in titles))
    vocabulary = vocabulary_after(await store.word_counts(words), delta, total)
    events = await _merged(store, settings, items, vocabulary)
    state = merge_state(items, titles, events, vocabulary, settings, config)
    state.probes, state.counts, state.total = probes, delta, added
    state.merged = [p.key for p in pending]
    return Merged(events, groups | {e.id for e in events}, state)


async def groups_within_reach(
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
        reaches, {f.ident_hash for f in found}, [(f.url_hash, f.at) for f in found if f.url_hash]
    )
    groups = {s.event_id for s in seeds.values() if s.event_id}
    groups.update(near_enough(occurrences, found, titles, reaches, near))
    # and the events whose ids the seeds' identities were published under (NetworkIds)
    groups.update((await store.known_ids(map(identity_of, occurrences))).values())
    return groups


async def _merged(
    store: Store, settings: Settings, items: list[Occurrence], vocabulary: Vocabulary
) -> list[MergedEvent]:
    """merge() of a part of the network, with the ids and the vocabulary of the whole."""
    identities = [identity_of(o) for o in items]
    known = await store.known_ids(identities)
    # who holds each id these events may get: those of the store outside this part, and
    # those in it (a new occurrence may come back with an identity published before)
    candidates = set(known.values()) | {event_id(*i.split("\x1f")) for i in identities}
    holders = await store.live_holders(candidates, {o.key for o in items})
    for eid, identity in holders_of(identities, known).items():
        if eid not in holders or identity < holders[eid]:
            holders[eid] = identity
    return await asyncio.to_thread(
        merge, items, settings.sources, settings.merging, known, vocabulary, holders
    )


async def merge_all(store: Store, settings: Settings, config: str, write: Write) -> bool:
    """The whole network merged in parts of bounded size, written as it goes; the merge
    state is made anew (the configuration it is for is written last: a process stopped
    half-way merges everything again). Returns whether any published event changed.

    The parts come in order of start. An event made from one is written once no later
    part can reach it (`_Waiting`); until then it waits, and a part that reaches it
    merges it again. So each occurrence is merged about once, and only the events near the
    parts' edges wait in memory (and those sharing an identity with a later occurrence)."""
    started = time.perf_counter()
    titles = await store.title_counts()
    sets, counts, total = await asyncio.to_thread(_vocabulary, titles, settings)
    vocabulary = Vocabulary(counts, total)
    await store.begin_full_merge(sets, counts, total)
    waiting: dict[str, _Waiting] = {}
    changed = False
    after: tuple[str, str] | None = None
    while part := await store.occurrences_in_order(after, PART):
        after = (part[-1].start_key, part[-1].occurrence.key)
        events, reached, state = await _group(
            store, settings, [s.occurrence for s in part], vocabulary
        )
        for eid in reached:
            waiting.pop(eid, None)
        repeated = await store.repeated_identities({kept[3] for kept in state.occurrences.values()})
        for event in events:
            waiting[event.id] = _Waiting.of(event, state, repeated, settings)
        later = _earliest(after[0])  # every later occurrence starts at or after this
        ready = [w.event for w in waiting.values() if w.final_before(after[0], later)]
        for event in ready:
            del waiting[event.id]
        changed |= await _write_all(write, ready)
    changed |= await _write_all(write, [w.event for w in waiting.values()])
    orphans = set(await store.published_without_members())
    if orphans:
        changed |= await write([], orphans, None)
    await store.finish_full_merge(config)
    log.info(
        "merged the whole network: %d occurrences in %.1f s", total, time.perf_counter() - started
    )
    return changed


async def _write_all(write: Write, events: list[MergedEvent]) -> bool:
    """Write these events, BATCH at a time; whether any published event changed."""
    changed = False
    for start in range(0, len(events), BATCH):
        batch = events[start : start + BATCH]
        expiries = {e.id: instant(e.end) for e in batch if e.status in _GONE}
        state = MergeState({}, expiries=expiries, config=None)
        changed |= await write(batch, {e.id for e in batch}, state)
    return changed


@dataclass(frozen=True)
class _Waiting:
    """An event made by a merge of the whole network, waiting until no later part can reach
    it: no later occurrence within reach in time of a member (its address's reach too,
    where one has an address), and none sharing a member's identity."""

    event: MergedEvent
    #: the latest `at` a later occurrence could reach from: the members' latest plus reach
    reached_until: int
    #: the latest start (as stored) of another occurrence with a member's identity
    partners_until: str

    @classmethod
    def of(
        cls, event: MergedEvent, state: MergeState, repeated: dict[int, str], settings: Settings
    ) -> _Waiting:
        kept = [state.occurrences[key] for key in event.members]
        back = reach_back(settings.merging, addressed=any(k[4] is not None for k in kept))
        partners = [repeated[k[3]] for k in kept if k[3] in repeated]
        return cls(event, max(k[2] for k in kept) + back, max(partners, default=""))

    def final_before(self, start_key: str, earliest: float) -> bool:
        """Whether no occurrence from `start_key` on (starting at `earliest` or later) can
        be joined to it."""
        return earliest > self.reached_until and self.partners_until < start_key


def _earliest(start_key: str) -> float:
    """The earliest `at` of an occurrence whose start (as stored) sorts at or after
    `start_key`: its date's midnight in UTC, less the 14 hours a local midnight (an all-day
    or floating start) can come before it; -inf where the start is not a date."""
    try:
        day = date.fromisoformat(start_key[:10])
    except ValueError:
        return -math.inf
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() - 14 * 3600


def _vocabulary(
    titles: dict[str, int], settings: Settings
) -> tuple[dict[str, str], Counter[str], int]:
    """The network's word sets (words -> probes), word counts and number of occurrences,
    from each title and how many occurrences have it."""
    raw = list(titles)
    comparable: list[Title] = comparable_titles(raw, settings.sources)
    counts: Counter[str] = Counter()
    for text, title in zip(raw, comparable, strict=True):
        for word in title.key_words:
            counts[word] += titles[text]
    vocabulary = Vocabulary(counts, sum(titles.values()))
    sets = {}
    for title in comparable:
        words = words_key(title)
        if words not in sets:
            sets[words] = " ".join(vocabulary.probes(frozenset(title.key_words)))
    return sets, counts, vocabulary.total


async def _group(
    store: Store, settings: Settings, part: Sequence[Occurrence], vocabulary: Vocabulary
) -> tuple[list[MergedEvent], set[str], MergeState]:
    """Merge a part of the network with the events already made that it may join, and
    keep which event each occurrence is in: the events made, those reached (merged again
    in these) and the merge state written."""
    seeds = {o.key: Stored(o, None, None) for o in part}
    groups = await groups_within_reach(store, settings, seeds)
    items = {
        s.occurrence.key: s.occurrence
        for s in await store.stored_occurrences(event_ids=sorted(groups))
    }
    items.update((o.key, o) for o in part)
    merged = list(items.values())
    events = await _merged(store, settings, merged, vocabulary)
    titles = titles_of(merged, settings.sources)
    state = merge_state(merged, titles, events, vocabulary, settings, None)
    await store.write_groups(state.occurrences)
    return events, groups, state
