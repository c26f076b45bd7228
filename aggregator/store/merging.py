"""What an incremental merge reads (the changes since the last publish, the occurrences a
change can reach, the counts of title words) and writes (the merge state of what it merged).
The decisions are in merge/incremental.py; aggregator.publish carries them."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, bindparam, delete, exists, func, insert, or_, select, tuple_, update

from aggregator.merge.incremental import URL_REACH, Near, Reach, ident_hash
from aggregator.model import Occurrence, Status
from aggregator.store.base import StoreBase, _chunks, _configured, _meta_number, _set_meta
from aggregator.store.occurrences import _occurrence, occurrence_select
from aggregator.store.schema import (
    events,
    identities,
    merge_pending,
    meta,
    occurrences,
    word_counts,
    word_index,
    word_sets,
)

_GONE = (Status.CANCELLED.value, Status.POSTPONED.value)
#: ids in one IN (SQLite takes 32,766 variables since 3.32)
_IDS_AT_ONCE = 30_000


@dataclass(frozen=True)
class Stored:
    """An occurrence with what the last publish made of it."""

    occurrence: Occurrence
    event_id: str | None
    set_id: int | None


@dataclass(frozen=True)
class Pending:
    """A key added, changed or deleted since the last publish, with the event and the word
    set it was merged with then (none for a new one)."""

    key: str
    event_id: str | None
    set_id: int | None


@dataclass
class MergeState:
    """What a publish writes of what it merged, in the publication's transaction."""

    #: key -> (event id, word set, at, identity hash, address hash) of each occurrence merged
    occurrences: dict[str, tuple[str, str, int, int, int | None]]
    #: new word sets (words -> probes), and stored ones whose probes changed (id -> probes)
    new_sets: dict[str, str] = field(default_factory=dict)
    probes: dict[int, str] = field(default_factory=dict)
    #: the change of each word's count (full: the counts), and of the number of occurrences
    counts: Mapping[str, int] = field(default_factory=dict)
    total: int = 0
    #: the pending keys merged
    merged: Collection[str] = ()
    #: the configuration the state is for (None: a part of a merge of everything)
    config: str | None = None
    #: cancelled and postponed events' ends, for retention
    expiries: dict[str, datetime] = field(default_factory=dict)


class MergingMixin(StoreBase):
    async def merge_config(self) -> str | None:
        """The configuration the merge state was made for (None: there is none)."""
        async with self.engine.connect() as conn:
            return await conn.scalar(select(meta.c.value).where(meta.c.key == "merge_config"))

    async def merge_total(self) -> int:
        async with self.engine.connect() as conn:
            return await _meta_number(conn, "merge_total")

    async def pending_changes(self) -> list[Pending]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(merge_pending))
            return [Pending(r.key, r.event_id, r.set_id) for r in rows]

    async def stored_occurrences(
        self,
        *,
        keys: Sequence[str] = (),
        event_ids: Sequence[str] = (),
        set_ids: Sequence[int] = (),
    ) -> list[Stored]:
        """The occurrences of configured sources with these keys, merged into these events,
        or with these word sets."""
        found: dict[str, Stored] = {}
        async with self.engine.connect() as conn:
            for column, values in (
                (occurrences.c.key, keys),
                (occurrences.c.event_id, event_ids),
                (occurrences.c.set_id, set_ids),
            ):
                for some in _chunks(list(values)):
                    rows = await conn.execute(
                        occurrence_select().where(
                            column.in_(some), _configured(occurrences.c.source_id)
                        )
                    )
                    for row in rows:
                        if row.key not in found:
                            found[row.key] = Stored(_occurrence(row), row.event_id, row.set_id)
        return list(found.values())

    async def set_words(self, ids: Iterable[int]) -> dict[int, str]:
        async with self.engine.connect() as conn:
            return {
                r.id: r.words
                for some in _chunks(sorted(set(ids)))
                for r in await conn.execute(
                    select(word_sets.c.id, word_sets.c.words).where(word_sets.c.id.in_(some))
                )
            }

    async def sets_with_words(self, words: Iterable[str]) -> dict[int, tuple[str, str]]:
        """The word sets that have any of these words: id -> (words, probes)."""
        query = select(word_sets.c.id, word_sets.c.words, word_sets.c.probes).join(
            word_index, word_index.c.set_id == word_sets.c.id
        )
        async with self.engine.connect() as conn:
            return {
                r.id: (r.words, r.probes)
                for some in _chunks(sorted(set(words)))
                for r in await conn.execute(query.where(word_index.c.word.in_(some)))
            }

    async def word_counts(self, words: Iterable[str]) -> dict[str, int]:
        async with self.engine.connect() as conn:
            return {
                r.word: r.count
                for some in _chunks(sorted(set(words)))
                for r in await conn.execute(select(word_counts).where(word_counts.c.word.in_(some)))
            }

    async def words_counted(self, low: float, high: float) -> list[str]:
        """The words counted more than `low` and at most `high` times."""
        async with self.engine.connect() as conn:
            return list(
                await conn.scalars(
                    select(word_counts.c.word).where(
                        word_counts.c.count > low, word_counts.c.count <= high
                    )
                )
            )

    async def near(
        self, reaches: Sequence[Reach], idents: Iterable[int], urls: Iterable[tuple[int, int]]
    ) -> list[Near]:
        """The occurrences starting within any of the reaches (timed ones in `timed`,
        all-day ones in `all_day`), with one of these identity hashes, or with one of these
        address hashes within URL_REACH of the `at` given with it (and maybe a little
        further)."""
        columns = (
            occurrences.c.key,
            occurrences.c.event_id,
            occurrences.c.at,
            occurrences.c.all_day,
            word_sets.c.words,
            occurrences.c.ident_hash,
            occurrences.c.url_hash,
        )
        query = (
            select(*columns)
            .outerjoin(word_sets, word_sets.c.id == occurrences.c.set_id)
            .where(_configured(occurrences.c.source_id), occurrences.c.event_id.is_not(None))
        )
        conditions = [
            and_(occurrences.c.at.between(low, high), occurrences.c.all_day.is_(all_day))
            for all_day, spans in (
                (False, [r.timed for r in reaches]),
                (True, [r.all_day for r in reaches]),
            )
            for low, high in _joined(spans)
        ]
        found: dict[str, Near] = {}
        async with self.engine.connect() as conn:
            batches = [or_(*conditions[i : i + 100]) for i in range(0, len(conditions), 100)]
            batches += [occurrences.c.ident_hash.in_(s) for s in _chunks(sorted(set(idents)))]
            for some in _chunks(sorted(set(urls))):
                low, high = min(at for _, at in some), max(at for _, at in some)
                batches.append(
                    and_(
                        occurrences.c.url_hash.in_({h for h, _ in some}),
                        occurrences.c.at.between(low - URL_REACH, high + URL_REACH),
                    )
                )
            for condition in batches:
                for r in await conn.execute(query.where(condition)):
                    found[r.key] = Near(
                        r.key, r.event_id, r.at, r.all_day, r.words or "", r.ident_hash, r.url_hash
                    )
        return list(found.values())

    async def live_holders(self, ids: Collection[str], besides: Collection[str]) -> dict[str, str]:
        """For each of these ids, the smallest identity published under it whose occurrence
        is in the network (configured), leaving out the occurrences `besides`."""
        published: list[tuple[str, str]] = []
        async with self.engine.connect() as conn:
            # identities are not indexed by event id (an index would cost 90 bytes an
            # occurrence): one pass over them for as many ids as SQLite takes at once
            for some in _chunks(sorted(ids), _IDS_AT_ONCE):
                query = select(identities.c.identity, identities.c.event_id)
                published += [
                    tuple(r)
                    for r in await conn.execute(query.where(identities.c.event_id.in_(some)))
                ]
            hashes = {identity: ident_hash(identity) for identity, _ in published}
            live: set[int] = set()
            for some in _chunks(sorted(set(hashes.values()))):
                query = select(occurrences.c.key, occurrences.c.ident_hash).where(
                    occurrences.c.ident_hash.in_(some), _configured(occurrences.c.source_id)
                )
                live.update(r.ident_hash for r in await conn.execute(query) if r.key not in besides)
        holders: dict[str, str] = {}
        for identity, eid in published:
            if hashes[identity] in live and (eid not in holders or identity < holders[eid]):
                holders[eid] = identity
        return holders

    async def expired_events(self, before: datetime) -> list[str]:
        """Published events cancelled or postponed whose end is before `before` (rule 7)."""
        async with self.engine.connect() as conn:
            return list(
                await conn.scalars(
                    select(events.c.id).where(
                        events.c.unpublished_at.is_(None), events.c.expires_at < before
                    )
                )
            )


class Ordered(NamedTuple):
    """An occurrence with the start it is ordered by, as stored."""

    start_key: str
    occurrence: Occurrence


class FullMergeMixin(StoreBase):
    """The reads and writes of a merge of the whole network, made in parts."""

    async def title_counts(self) -> dict[str, int]:
        """Each title of the configured sources' occurrences, and how many have it."""
        query = (
            select(occurrences.c.title, func.count())
            .where(_configured(occurrences.c.source_id))
            .group_by(occurrences.c.title)
        )
        async with self.engine.connect() as conn:
            return {title: n for title, n in await conn.execute(query)}

    async def begin_full_merge(
        self, sets: Mapping[str, str], counts: Mapping[str, int], total: int
    ) -> None:
        """Start the merge state anew: these word sets (words -> probes), word counts and
        number of occurrences; no occurrence in any event yet; no configuration."""
        async with self._writing(fenced=True) as conn:
            for table in (word_index, word_sets, word_counts):
                await conn.execute(delete(table))
            await conn.execute(delete(meta).where(meta.c.key == "merge_config"))
            await conn.execute(update(occurrences).values(event_id=None, set_id=None))
            await _add_sets(conn, sets)
            await _count(conn, counts)
            await _set_meta(conn, "merge_total", str(total))

    async def occurrences_in_order(
        self, after: tuple[str, str] | None, limit: int
    ) -> list[Ordered]:
        """The next `limit` occurrences of configured sources by start (then key)."""
        query = (
            occurrence_select()
            .where(_configured(occurrences.c.source_id))
            .order_by(occurrences.c.start, occurrences.c.key)
            .limit(limit)
        )
        if after is not None:
            query = query.where(tuple_(occurrences.c.start, occurrences.c.key) > tuple_(*after))
        async with self.engine.connect() as conn:
            return [Ordered(row.start, _occurrence(row)) for row in await conn.execute(query)]

    async def repeated_identities(self, hashes: Iterable[int]) -> dict[int, str]:
        """Of these identity hashes, those more than one occurrence of the configured
        sources has, each with the latest start (as stored) among them."""
        query = (
            select(occurrences.c.ident_hash, func.max(occurrences.c.start))
            .where(_configured(occurrences.c.source_id))
            .group_by(occurrences.c.ident_hash)
            .having(func.count() > 1)
        )
        found: dict[int, str] = {}
        async with self.engine.connect() as conn:
            for some in _chunks(sorted(set(hashes))):
                rows = await conn.execute(query.where(occurrences.c.ident_hash.in_(some)))
                found.update((hashed, latest) for hashed, latest in rows)
        return found

    async def write_groups(self, kept: Mapping[str, tuple]) -> None:
        async with self._writing(fenced=True) as conn:
            await _write_occurrence_state(conn, kept)

    async def group_ids(self, after: str, limit: int) -> list[str]:
        """The next `limit` events (after `after`) that configured occurrences are in."""
        query = (
            select(occurrences.c.event_id)
            .distinct()
            .where(_configured(occurrences.c.source_id), occurrences.c.event_id > after)
            .order_by(occurrences.c.event_id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return list(await conn.scalars(query))

    async def published_without_members(self) -> list[str]:
        """Published events that no configured occurrence is in. NOT EXISTS (an index probe
        of occurrences.event_id per event, an anti-join on PostgreSQL), not NOT IN: at 1,000
        members PostgreSQL read the 429,000 ids again for every event, for minutes, whenever
        they did not fit in work_mem (bench/README.md, "Scale on PostgreSQL")."""
        member = exists().where(
            occurrences.c.event_id == events.c.id, _configured(occurrences.c.source_id)
        )
        query = select(events.c.id).where(events.c.unpublished_at.is_(None), ~member)
        async with self.engine.connect() as conn:
            return list(await conn.scalars(query))

    async def finish_full_merge(self, config: str) -> None:
        """The merge state is whole: what was pending is merged; it is for `config`."""
        async with self._writing(fenced=True) as conn:
            await conn.execute(delete(merge_pending))
            await _set_meta(conn, "merge_config", config)


def _joined(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping ranges joined into one: fewer, wider queries."""
    joined: list[list[int]] = []
    for low, high in sorted(spans):
        if joined and low <= joined[-1][1]:
            joined[-1][1] = max(joined[-1][1], high)
        else:
            joined.append([low, high])
    return [(low, high) for low, high in joined]


async def write_merge_state(conn, state: MergeState) -> None:
    """Write what a publish merged: word sets and counts, each occurrence's event, word set
    and facts, events' expiry; forget the pending keys merged."""
    await _add_sets(conn, state.new_sets)
    if state.probes:
        await conn.execute(
            update(word_sets).where(word_sets.c.id == bindparam("set")),
            [{"set": i, "probes": p} for i, p in state.probes.items()],
        )
    await _count(conn, state.counts)
    if state.total:
        total = await _meta_number(conn, "merge_total") + state.total
        await _set_meta(conn, "merge_total", str(total))
    if state.config is not None:
        await _set_meta(conn, "merge_config", state.config)
    await _write_occurrence_state(conn, state.occurrences)
    if state.expiries:
        await conn.execute(
            update(events).where(events.c.id == bindparam("event")),
            [{"event": i, "expires_at": at} for i, at in state.expiries.items()],
        )
    for some in _chunks(list(state.merged)):
        await conn.execute(delete(merge_pending).where(merge_pending.c.key.in_(some)))


async def _write_occurrence_state(conn, kept: Mapping[str, tuple]) -> None:
    """Each occurrence's event, word set (by its words) and facts."""
    if not kept:
        return
    ids = await _set_ids(conn, {words for _, words, *_ in kept.values()})
    rows = [
        {"k": key, "event_id": e, "set_id": ids[w], "at": a, "ident_hash": i, "url_hash": u}
        for key, (e, w, a, i, u) in kept.items()
    ]
    for start in range(0, len(rows), 2000):
        await conn.execute(
            update(occurrences).where(occurrences.c.key == bindparam("k")),
            rows[start : start + 2000],
        )


async def _add_sets(conn, new: Mapping[str, str]) -> None:
    if not new:
        return
    known = await _set_ids(conn, new.keys())
    added = [{"words": w, "probes": p} for w, p in new.items() if w not in known]
    if not added:
        return
    for start in range(0, len(added), 5000):
        await conn.execute(insert(word_sets), added[start : start + 5000])
    ids = await _set_ids(conn, [a["words"] for a in added])
    index = [{"word": word, "set_id": ids[w]} for w in ids for word in w.split()]
    for start in range(0, len(index), 5000):
        await conn.execute(insert(word_index), index[start : start + 5000])


async def _set_ids(conn, words: Iterable[str]) -> dict[str, int]:
    return {
        r.words: r.id
        for some in _chunks(sorted(set(words)))
        for r in await conn.execute(
            select(word_sets.c.id, word_sets.c.words).where(word_sets.c.words.in_(some))
        )
    }


async def _count(conn, counts: Mapping[str, int]) -> None:
    """Change the words' counts by `counts`; a word counted nowhere is forgotten."""
    if not counts:
        return
    current = {}
    for some in _chunks(sorted(counts)):
        query = select(word_counts).where(word_counts.c.word.in_(some))
        current.update((r.word, r.count) for r in await conn.execute(query))
    new = {w: current.get(w, 0) + n for w, n in counts.items()}
    gone = [w for w, n in new.items() if n <= 0 and w in current]
    added = [{"word": w, "count": n} for w, n in new.items() if n > 0 and w not in current]
    changed = [{"w": w, "count": n} for w, n in new.items() if n > 0 and w in current]
    for some in _chunks(gone):
        await conn.execute(delete(word_counts).where(word_counts.c.word.in_(some)))
    for start in range(0, len(added), 2000):
        await conn.execute(insert(word_counts), added[start : start + 2000])
    if changed:
        await conn.execute(update(word_counts).where(word_counts.c.word == bindparam("w")), changed)
