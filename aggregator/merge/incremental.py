"""What an incremental merge knows of each occurrence and of the network's title words, so
that a publish merges only the part of the network a change can reach. Pure: no I/O.

A changed occurrence can only be joined to occurrences it meets in merge.join: the same
identity, the same address, or a shared title word or place within reach in time. Those are
found by what the store keeps of every occurrence (`Facts`, its word set); the network
events they were merged into, taken whole, with the changed occurrences, form a part of the
network that no join crosses, and merging it gives what merging the whole network gives.

Which words a title looks for copies by depends on how rare its words are in the whole
network (titles.Vocabulary): a change of counts can change another title's probes, and
that title is merged again too (`changed_probes`).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, tzinfo
from typing import NamedTuple

from aggregator.merge.join import url_key
from aggregator.merge.titles import Title, Vocabulary, common_count
from aggregator.model import MergeSettings, Occurrence, Source
from aggregator.normalise import fingerprint, instant
from aggregator.reconcile import identity_of

#: the most an all-day occurrence's day reaches past its local midnight (a day of 25 hours)
_DAY = 25 * 3600
#: how far apart in `at` two copies with the same address can be: merge.join joins them
#: within a day of each other's UTC day (under 2 days), and an all-day one's `at` is its
#: local midnight, up to 14 hours from UTC's
URL_REACH = 3 * 24 * 3600


class Facts(NamedTuple):
    """Where an occurrence is looked up by its possible copies."""

    #: its start in seconds; an all-day one's local midnight in the network's zone
    at: int
    ident_hash: int
    url_hash: int | None


class Reach(NamedTuple):
    """The ranges of `at` in which an occurrence's copies can start: timed ones, all-day ones."""

    timed: tuple[int, int]
    all_day: tuple[int, int]


def hash64(text: str) -> int:
    """A signed 64-bit hash (what an integer column holds): equal texts, equal hashes."""
    return int.from_bytes(
        hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True
    )


def facts(occurrence: Occurrence, network_zone: tzinfo | None) -> Facts:
    """What the store keeps of an occurrence for finding its copies (as merge.join reads it)."""
    start = occurrence.start
    if occurrence.all_day:
        if isinstance(start, datetime):
            start = start.astimezone(network_zone).date()
        at = int(instant(date.fromordinal(start.toordinal()), network_zone).timestamp())
    else:
        at = int(start.timestamp()) if isinstance(start, datetime) else 0
    url = url_key(occurrence.url)
    return Facts(at, ident_hash(identity_of(occurrence)), hash64(url) if url else None)


def ident_hash(identity: str) -> int:
    """The hash of an identity ("uid\x1frecurrence id") as identities are compared: the UID
    without case and surrounding space."""
    uid, _, rid = identity.partition("\x1f")
    return hash64(f"{uid.strip().lower()}\x1f{rid}")


def reach(found: Facts, all_day: bool, settings: MergeSettings) -> Reach:
    """Where an occurrence's copies can start (merge.join: timed ones within the window or
    whole hours apart, up to max_zone_shift; all-day ones against their local day)."""
    if all_day:  # its day's all-day and timed occurrences
        return Reach((found.at, found.at + _DAY), (found.at, found.at))
    span = int(settings.window.total_seconds()) + 3600 * settings.max_zone_shift
    return Reach((found.at - span, found.at + span), (found.at - _DAY, found.at))


def reach_back(settings: MergeSettings, *, addressed: bool) -> int:
    """How far before its own `at` an occurrence can reach another (`reach`, and for one
    with an address, URL_REACH): nothing that starts this much after an occurrence's `at`
    can be joined to it."""
    span = int(settings.window.total_seconds()) + 3600 * settings.max_zone_shift
    return max(span, _DAY, URL_REACH if addressed else 0)


def words_key(title: Title) -> str:
    """A title's key words as the store keeps a word set: sorted, one space apart."""
    return " ".join(sorted(title.key_words))


def config_key(sources: Sequence[Source], settings: MergeSettings, render_key: str) -> str:
    """What every merged event depends on besides its occurrences: when it changes, the
    whole network is merged again."""
    return fingerprint(
        {
            "sources": [(s.id, s.name, s.homepage, list(s.categories)) for s in sources],
            "merging": repr(settings),
            "render": render_key,
        }
    )


def count_changes(old_sets: Iterable[str], new_sets: Iterable[str]) -> tuple[Counter[str], int]:
    """How the network's word counts and its number of occurrences change when occurrences
    with the word sets `old_sets` are replaced by ones with `new_sets`."""
    delta: Counter[str] = Counter()
    total = 0
    for words in old_sets:
        delta.subtract(words.split())
        total -= 1
    for words in new_sets:
        delta.update(words.split())
        total += 1
    return Counter({w: n for w, n in delta.items() if n}), total


def rarity_flips(total_before: int, total_after: int) -> tuple[float, float] | None:
    """The counts whose words turn common or rare when the network's size changes: those
    in (low, high]; None when the line between them does not move past a whole count."""
    before, after = common_count(total_before), common_count(total_after)
    low, high = min(before, after), max(before, after)
    if int(low) == int(high):
        return None
    return low, high


def changed_probes(sets: Mapping[int, tuple[str, str]], vocabulary: Vocabulary) -> dict[int, str]:
    """Of the word sets given (id -> (words, probes as stored)), those whose probes the
    vocabulary changes, with their new probes."""
    changed = {}
    for set_id, (words, stored) in sets.items():
        probes = " ".join(vocabulary.probes(frozenset(words.split())))
        if probes != stored:
            changed[set_id] = probes
    return changed


def vocabulary_after(counts: Mapping[str, int], delta: Mapping[str, int], total: int) -> Vocabulary:
    """The vocabulary of the words in `counts` (as stored) after the change `delta`."""
    frequency = dict(counts)
    for word, change in delta.items():
        frequency[word] = frequency.get(word, 0) + change
    return Vocabulary(frequency, total)


class Near(NamedTuple):
    """An occurrence found near a changed one, with what tells whether it may be joined."""

    key: str
    event_id: str | None
    at: int
    all_day: bool
    words: str
    ident_hash: int | None
    url_hash: int | None


def near_enough(
    occurrences: Sequence[Occurrence],
    found: Sequence[Facts],
    titles: Sequence[Title],
    reaches: Sequence[Reach],
    near: Sequence[Near],
) -> set[str]:
    """The events of the occurrences found near that may be joined to one of the
    occurrences given: the same identity or address; or within its reach in time, a shared
    title word, or (timed) the same minute, where a place joins. The same address counts
    within URL_REACH only: a series' other dates are not its copies."""
    idents = {f.ident_hash for f in found}
    urls: dict[int, list[int]] = {}
    for f in found:
        if f.url_hash is not None:
            urls.setdefault(f.url_hash, []).append(f.at)
    groups = {
        n.event_id
        for n in near
        if n.event_id
        and (
            n.ident_hash in idents
            or any(abs(n.at - at) <= URL_REACH for at in urls.get(n.url_hash, ()))
        )
    }
    timed = sorted((n.at, frozenset(n.words.split()), n.event_id) for n in near if not n.all_day)
    days = sorted((n.at, frozenset(n.words.split()), n.event_id) for n in near if n.all_day)
    timed_at, days_at = [t[0] for t in timed], [d[0] for d in days]
    for occurrence, facts_, title, span in zip(occurrences, found, titles, reaches, strict=True):
        words = title.key_words
        same_minute = None if occurrence.all_day else facts_.at
        for starts, rows, (low, high) in (
            (timed_at, timed, span.timed),
            (days_at, days, span.all_day),
        ):
            for at, other, event_id in rows[bisect_left(starts, low) : bisect_right(starts, high)]:
                if event_id and (
                    at == same_minute and rows is timed or not words.isdisjoint(other)
                ):
                    groups.add(event_id)
    return groups


__all__ = [
    "Facts",
    "Reach",
    "changed_probes",
    "config_key",
    "count_changes",
    "facts",
    "hash64",
    "ident_hash",
    "rarity_flips",
    "reach",
    "reach_back",
    "Near",
    "near_enough",
    "vocabulary_after",
    "words_key",
]
