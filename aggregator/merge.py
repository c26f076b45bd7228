"""Occurrences of all sources -> network events. Pure: no I/O, no clock.

Rule 9, first step: the same UID (and recurrence id) in several sources is one event,
credited to every member that lists it. Ids are derived from the UID, so they are the
same across refreshes and restarts, whichever member publishes first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from aggregator.model import MergedEvent, Occurrence, Source, Status
from aggregator.normalise import event_id, fingerprint, iso
from aggregator.reconcile import identity_of


def merge(occurrences: Iterable[Occurrence], sources: Sequence[Source]) -> list[MergedEvent]:
    """One MergedEvent per group of occurrences with the same UID and recurrence id.

    The result does not depend on the order of `occurrences`; it is sorted by start, id.
    """
    rank = {source.id: index for index, source in enumerate(sources)}
    by_id = {source.id: source for source in sources}
    groups: dict[str, list[Occurrence]] = defaultdict(list)
    for occurrence in occurrences:
        if occurrence.source_id in rank:  # a source removed from the config is not published
            groups[event_id(*identity_of(occurrence).split("\x1f"))].append(occurrence)
    merged = [_merge_group(eid, members, rank, by_id) for eid, members in groups.items()]
    merged.sort(key=lambda e: (iso(e.start), e.id))
    return merged


def _merge_group(
    eid: str, members: list[Occurrence], rank: dict[str, int], by_id: dict[str, Source]
) -> MergedEvent:
    members.sort(key=lambda o: (rank[o.source_id], o.key))
    first = members[0]
    source_ids = tuple(dict.fromkeys(o.source_id for o in members))
    categories: dict[str, str] = {}  # casefolded -> first spelling seen
    for occurrence in members:
        for category in occurrence.categories + by_id[occurrence.source_id].categories:
            categories.setdefault(category.casefold(), category)
    # A merge never makes an event read as cancelled while a member still lists it.
    live = [o for o in members if o.status not in (Status.CANCELLED, Status.POSTPONED)]
    status = first.status if not live or first in live else live[0].status
    values = {
        "id": eid,
        "uid": first.uid,
        "title": first.title,
        "start": first.start,
        "end": first.end,
        "all_day": first.all_day,
        "tzid": first.tzid,
        "description": first.description,
        "url": first.url or next((o.url for o in members if o.url), None),
        "location": first.location or next((o.location for o in members if o.location), ""),
        "status": status,
        "categories": tuple(categories.values()),
        "organisers": tuple(by_id[s].name for s in source_ids),
        "source_ids": source_ids,
        "members": tuple(o.key for o in members),
        "removed": all(o.removed_at is not None for o in members),
    }
    # what subscribers see: not the member UID or keys, which a feed may change at will
    content = {
        k: iso(v) if k in ("start", "end") else v
        for k, v in values.items()
        if k not in ("uid", "members")
    }
    content["status"] = status.value
    return MergedEvent(**values, fingerprint=fingerprint(content))
