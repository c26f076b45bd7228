"""One network event from the copies joined as one: whose version wins, who organises it,
its id and its fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from urllib.parse import urlsplit

from aggregator.model import MergedEvent, Occurrence, Source, Status
from aggregator.normalise import event_id, from_iso, iso, occurrence_fingerprint

_GONE = (Status.CANCELLED, Status.POSTPONED)


class NetworkIds:
    """The id each event gets: one the store already gave its identities, so an event keeps
    its id when a member joins or leaves, or a new one; never the id of another event.

    An id the store gave goes to the event holding the smallest of the identities (of the
    occurrences in the network now) that were last published under it. When a co-hosted
    event splits (one member moves its copy), the half with that identity keeps the id
    and the other gets its own, so both stay published. An event whose new id, derived from
    its smallest identity, is held by another takes a variant of it.
    """

    def __init__(self, known: Mapping[str, str], holders: Mapping[str, str]) -> None:
        #: identity -> the id it was last published under
        self.known = known
        #: id -> the smallest identity in the network last published under it
        self.holders = holders

    def of(self, identities: Sequence[str]) -> str:
        """The id of the event of these identities (sorted, distinct)."""
        known, holders = self.known, self.holders
        remembered = sorted({known[i] for i in identities if i in known})
        for eid in remembered:
            if holders.get(eid) in identities:
                return eid
        fresh = event_id(*identities[0].split("\x1f"))
        holder = holders.get(fresh)
        if holder is not None and holder not in identities:
            return event_id(identities[0], "another")
        return fresh


def holders_of(identities: Iterable[str], known: Mapping[str, str]) -> dict[str, str]:
    """For each id some of these identities were published under, the smallest of them."""
    holders: dict[str, str] = {}
    for identity in identities:
        eid = known.get(identity)
        if eid is not None and (eid not in holders or identity < holders[eid]):
            holders[eid] = identity
    return holders


def merge_alone(
    first: Occurrence, identity: str, ids: NetworkIds, by_id: Mapping[str, Source]
) -> MergedEvent:
    """The event of an occurrence no other member lists (most events): what merge_group
    gives for one member, without the work."""
    eid = ids.of((identity,))
    source = by_id[first.source_id]
    categories = first.categories + source.categories
    if len(categories) > 1:
        categories = _categories(categories)
    return _event(
        first,
        eid,
        identities=(identity,),
        url=first.url,
        location=first.location,
        categories=categories,
        organisers=(source.name,),
        source_ids=(first.source_id,),
        cancelled_by=(),
        removed=first.removed_at is not None,
        keys=(first.key,),
        copies=((first.source_id, first.title, first.url),),
    )


def merge_group(
    members: Sequence[Occurrence],
    member_identities: Sequence[str],
    ids: NetworkIds,
    rank: Mapping[str, int],
    by_id: Mapping[str, Source],
    sites: Mapping[str, str | None],
) -> MergedEvent:
    """One event from its members' copies: the owner's version wins (the member whose
    homepage is the event's site, else the first in the configuration); organisers and
    categories are the union; it is cancelled only when every member says so.

    Its id is the one the store already gave its identities (NetworkIds), so it survives
    restarts and the first publisher leaving."""
    identities = tuple(sorted(set(member_identities)))
    eid = ids.of(identities)
    members = sorted(
        members, key=lambda o: (not _owns(sites[o.source_id], o.url), rank[o.source_id], o.key)
    )
    live = [o for o in members if o.status not in _GONE]
    # a merge never makes an event read as cancelled while a member still lists it
    first = live[0] if live else members[0]
    source_ids = tuple(sorted({o.source_id for o in members}, key=rank.__getitem__))
    cancelled_by = (
        tuple(dict.fromkeys(by_id[o.source_id].name for o in members if o.status in _GONE))
        if live
        else ()
    )
    return _event(
        first,
        eid,
        identities=identities,
        url=first.url or next((o.url for o in members if o.url), None),
        location=first.location or next((o.location for o in members if o.location), ""),
        categories=_categories(
            c for o in members for c in o.categories + by_id[o.source_id].categories
        ),
        organisers=tuple(by_id[s].name for s in source_ids),
        source_ids=source_ids,
        cancelled_by=cancelled_by,
        removed=all(o.removed_at is not None for o in members),
        keys=tuple(o.key for o in members),
        copies=tuple((o.source_id, o.title, o.url) for o in members),
    )


def _event(
    first: Occurrence,
    eid: str,
    *,
    identities: tuple[str, ...],
    url: str | None,
    location: str,
    categories: tuple[str, ...],
    organisers: tuple[str, ...],
    source_ids: tuple[str, ...],
    cancelled_by: tuple[str, ...],
    removed: bool,
    keys: tuple[str, ...],
    copies: tuple[tuple[str, str, str | None], ...],
) -> MergedEvent:
    """The event: the winning copy `first` with what the merge adds."""
    # an override that moved one date of a series: moved from the series' slot
    previous = None
    if first.recurrence_id and first.recurrence_id != _iso(first.start):
        previous = from_iso(first.recurrence_id)
    # what subscribers see changes with the owner's copy (its fingerprint covers its
    # title, times, text, place, status and categories) and with what the merge adds
    content = (
        eid,
        first.recurrence_id,
        first.fingerprint or occurrence_fingerprint(first),
        url,
        location,
        categories,
        organisers,
        source_ids,
        cancelled_by,
        removed,
    )
    return MergedEvent(
        id=eid,
        uid=first.uid,
        title=first.title,
        start=first.start,
        end=first.end,
        all_day=first.all_day,
        tzid=first.tzid,
        description=first.description,
        url=url,
        location=location,
        status=first.status,
        categories=categories,
        organisers=organisers,
        source_ids=source_ids,
        members=keys,
        fingerprint=hashlib.sha256(repr(content).encode()).hexdigest()[:32],
        removed=removed,
        identities=identities,
        cancelled_by=cancelled_by,
        copies=copies,
        previous_start=previous,
    )


#: series' starts repeat (weekly, at the hour): their ISO forms are worth keeping
_iso = lru_cache(maxsize=65536)(iso)


def _categories(names: Iterable[str]) -> tuple[str, ...]:
    """Each category once, ignoring case: the first spelling seen."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.casefold(), name)
    return tuple(seen.values())


def _owns(owner: str | None, url: str | None) -> bool:
    """Whether `url` is on the site `owner` (a member's homepage's site)."""
    return bool(owner) and bool(url) and site(url) == owner


def site(url: str | None) -> str | None:
    """An address's site: its host, lowercased, without 'www.'."""
    if not url:
        return None
    return urlsplit(url).netloc.lower().removeprefix("www.") or None
