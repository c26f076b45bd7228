"""Occurrences of all sources -> network events. Pure: no I/O, no clock.

Rule 9: the same event published by several members is one event, credited to all.
Occurrences are joined (union-find, so order does not matter) when they have
- the same UID (and recurrence id), or the same event URL on the same day, or
- starts within `window` on the same local day (or whole hours apart, a member's time-zone
  mistake, with near-identical titles; or all-day against timed on the same day), similar
  normalised titles (rapidfuzz; status markers and organisation names removed), and places
  that do not contradict each other.
Copies from one source are never joined: a feed listing an event twice is collapsed before.
A group's network id is the one the store already knows for any of its members, else one
derived from its smallest identity, so ids survive restarts and members leaving.

    join.py     which occurrences are copies of one event (identity, address, likeness)
    titles.py   titles as merging compares them, and the words each looks for copies by
    places.py   whether two places agree
    group.py    one event from its copies: whose version wins, its id and fingerprint
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import attrgetter

from aggregator.merge.group import NetworkIds, holders_of, merge_alone, merge_group, site
from aggregator.merge.join import Sets, join_identical, join_similar
from aggregator.merge.titles import Vocabulary
from aggregator.model import MergedEvent, MergeSettings, Occurrence, Source
from aggregator.reconcile import identity_of

__all__ = ["merge"]


def merge(
    occurrences: Iterable[Occurrence],
    sources: Sequence[Source],
    settings: MergeSettings | None = None,
    known_ids: Mapping[str, str] | None = None,
    vocabulary: Vocabulary | None = None,
    holders: Mapping[str, str] | None = None,
) -> list[MergedEvent]:
    """The network events: one per group of occurrences that are the same event.

    The result does not depend on the order of `occurrences`: events come in the order of
    their smallest member key.
    `known_ids` maps identities to the network ids the store has already given them.
    `vocabulary`: how rare title words are in the whole network, when `occurrences` are a
    part of it closed under joining (an incremental merge); else counted from them.
    `holders`: for each id in `known_ids`, the smallest identity in the whole network last
    published under it (group.NetworkIds), when `occurrences` are a part of it; else
    found among them.
    """
    with _without_cycle_collection():
        return _merge(
            occurrences, sources, settings or MergeSettings(), known_ids or {}, vocabulary, holders
        )


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Merging makes a few objects per occurrence and no reference cycles; the cycle
    collector would walk them again and again (a fifth of the time at 230,000). The events
    it returns live until the next merge: they join the oldest generation at once (freeze,
    then unfreeze) rather than be walked by the young ones on their way there."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


def _merge(
    occurrences: Iterable[Occurrence],
    sources: Sequence[Source],
    settings: MergeSettings,
    known: Mapping[str, str],
    vocabulary: Vocabulary | None,
    holders: Mapping[str, str] | None,
) -> list[MergedEvent]:
    rank = {source.id: index for index, source in enumerate(sources)}
    by_id = {source.id: source for source in sources}
    items = sorted(
        [o for o in occurrences if o.source_id in rank],  # a removed source is not published
        key=attrgetter("key"),
    )
    # joining by identity and naming the events both need each one: made once
    identities = list(map(identity_of, items))
    ids = NetworkIds(known, holders_of(identities, known) if holders is None else holders)
    sets = Sets(len(items))
    join_identical(items, identities, sets)
    join_similar(items, sets, settings, by_id, vocabulary)
    # a group's root is its smallest index, so events come in the order of their first
    # member. Most groups are that one member: only the others are gathered in lists
    roots = sets.roots()
    others: dict[int, list[int]] = defaultdict(list)
    for index, root in enumerate(roots):
        if root != index:
            others[root].append(index)
    sites = {source.id: site(source.homepage) for source in sources}
    events = []
    for index, root in enumerate(roots):
        if root != index:
            continue
        if index in others:
            group = [index, *others[index]]
            members = [items[i] for i in group]
            member_identities = [identities[i] for i in group]
            events.append(merge_group(members, member_identities, ids, rank, by_id, sites))
        else:
            events.append(merge_alone(items[index], identities[index], ids, by_id))
    return events
