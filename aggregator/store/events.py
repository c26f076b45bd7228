"""The published network events: versions, bytes, ids and the history of changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from dataclasses import asdict
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import (
    LargeBinary,
    bindparam,
    func,
    insert,
    select,
    tuple_,
    type_coerce,
    update,
)

from aggregator.model import (
    ChangeRecord,
    MergedEvent,
    NetworkEvent,
    Publication,
    PublishedVersion,
    Status,
)
from aggregator.normalise import from_iso, instant, iso
from aggregator.search import search_text
from aggregator.store.base import (
    StoreBase,
    _bump_version,
    _chunks,
    _meta_number,
    _set_meta,
    _still_published,
    _write_many,
)
from aggregator.store.merging import MergeState, write_merge_state
from aggregator.store.packing import (
    pack_event,
    pack_json,
    unpack_event,
    unpack_json,
    unpack_text,
)
from aggregator.store.rows import change_record
from aggregator.store.schema import (
    UTCMicros,
    changes,
    events,
    identities,
    occurrences,
    texts,
)
from aggregator.store.texts import forget_unused_texts, store_texts, text_of

_GONE = (Status.CANCELLED, Status.POSTPONED)

#: turns the published versions into what a publish writes (aggregator.publish makes it)
Plan = Callable[[dict[str, PublishedVersion]], Awaitable[Publication]]


class EventsMixin(StoreBase):
    async def write_publication(
        self,
        plan: Plan,
        ids: Collection[str] | None = None,
        state: MergeState | None = None,
    ) -> bool:
        """Write what `plan` makes of the published versions (of the events `ids`, or of
        all): the new versions (rows and bytes), their changes, the gone (unpublished but
        kept, so a SEQUENCE goes on if one returns), the ids of member identities, the merge
        state, the data version and what is owed.

        The versions are read and the publication written in one write turn, so no other
        publish of this process comes between. Returns whether anything changed. Fenced
        (base._writing): a leader that lost the scheduler's lease writes none of it (Deposed).
        """
        loaded, self._loaded_writes = self._loaded_writes, None
        async with self._writing(fenced=True) as conn:
            rows = await _version_rows(conn, ids)
            # thousands of rows: made into records in a thread, so the server keeps answering
            known = await asyncio.to_thread(_published_versions, rows)
            publication = await plan(known)
            inserts, updates, history = await asyncio.to_thread(_rows, publication)
            await _store_descriptions(conn, inserts, updates, history)
            # executemany: one statement for all, not one round trip per event
            await _write_many(conn, insert(events), inserts)
            await _write_many(
                conn, update(events).where(events.c.id == bindparam("event_id")), updates
            )
            for some in _chunks(publication.gone):
                await conn.execute(
                    update(events)
                    .where(events.c.id.in_(some))
                    .values(unpublished_at=publication.at)
                )
            await _write_many(conn, insert(changes), history)
            await forget_unused_texts(conn)
            await _remember_ids(conn, publication.identities)
            if state is not None:
                await write_merge_state(conn, state)
            changed = bool(publication.versions or publication.gone)
            if changed:
                await _bump_version(conn)
            written = await _meta_number(conn, "writes") if loaded is None else loaded
            await _set_meta(conn, "published", str(written))
        return changed

    async def known_ids(self, wanted: Iterable[str] | None = None) -> dict[str, str]:
        """Member identity -> the network id it was published under (of those wanted)."""
        async with self.engine.connect() as conn:
            return await _known_ids(conn, wanted)

    async def recent_changes(self, limit: int | None = 200, days: int = 30) -> list[ChangeRecord]:
        """The newest changes first: at most `limit` (None: all), within `days` of the
        newest one; none of an unpublished event."""
        shown = _still_published(changes.c.event_id)
        async with self.engine.connect() as conn:
            newest = await conn.scalar(select(func.max(changes.c.at)).where(shown))
            if newest is None:
                return []
            result = await conn.execute(
                _CHANGES.where(shown, changes.c.at >= newest - timedelta(days=days))
                .order_by(changes.c.at.desc(), changes.c.id.desc())
                .limit(limit)
            )
            return [change_record(row) for row in result]

    async def stream_recent_changes(
        self, days: int = 30, at_a_time: int = 1000
    ) -> AsyncIterator[list[ChangeRecord]]:
        """recent_changes without a limit, newest first, a part at a time (a filtered feed
        reads until it has its entries)."""
        shown = _still_published(changes.c.event_id)
        async with self.engine.connect() as conn:
            newest = await conn.scalar(select(func.max(changes.c.at)).where(shown))
            if newest is None:
                return
            result = await conn.stream(
                _CHANGES.where(shown, changes.c.at >= newest - timedelta(days=days)).order_by(
                    changes.c.at.desc(), changes.c.id.desc()
                )
            )
            async for rows in result.partitions(at_a_time):
                # decoded in a thread: a filtered feed reads a month of changes, and the event
                # loop keeps answering meanwhile
                yield await asyncio.to_thread(_change_records, rows)

    async def event_history(
        self, ids: Collection[str] | None = None
    ) -> dict[str, list[ChangeRecord]]:
        """Every event's changes (or those of `ids`), oldest first, by event id; none of an
        unpublished event."""
        history: dict[str, list[ChangeRecord]] = {}
        async with self.engine.connect() as conn:
            for chunk in [None] if ids is None else _chunks(sorted(ids)):
                query = _CHANGES.where(_still_published(changes.c.event_id))
                if chunk is not None:
                    query = query.where(changes.c.event_id.in_(chunk))
                result = await conn.execute(query.order_by(changes.c.at, changes.c.id))
                for row in result:
                    history.setdefault(row.event_id, []).append(change_record(row))
        return history

    async def published_events(
        self, start: datetime | None = None, end: datetime | None = None, **which
    ) -> list[NetworkEvent]:
        """The published events, all in one list: `stream_published`'s, with its keywords
        (words, after, ids)."""
        published: list[NetworkEvent] = []
        async for part in self.stream_published(start, end, **which):
            published += part
        return published

    async def stream_published(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        words: tuple[str, ...] = (),
        after: Cursor | None = None,
        ids: Collection[str] | None = None,
        sources: Collection[str] = (),
        at_a_time: int = 0,
    ) -> AsyncIterator[list[NetworkEvent]]:
        """The published events in order of their start (an all-day one's at midnight UTC),
        then id, a part at a time: never the whole network in memory.

        `start`/`end`: at least every event that ends after `start` and starts before `end`,
        and a few around them (a day either side, for the all-day events of every zone): the
        caller takes its exact window (windows.within). `words`: only events whose title,
        place or organisers hold every word (search.query_words). `after`: only events after
        this (start, id) in the order (a page's cursor). `ids`: only these. `sources`: at
        least those a copy of these sources was merged into (a member's calendar reads its
        own rows, not the network's; the caller admits exactly)."""
        conditions = [events.c.unpublished_at.is_(None)]
        async with self.engine.connect() as conn:
            if end is not None:
                conditions.append(events.c.starts_at < end + _SLACK)
            if start is not None:
                conditions.append(events.c.ends_at > start - _SLACK)
                # lets the index skip what ended long before: no event is longer than this
                reach = await self._longest(conn)
                conditions.append(events.c.starts_at >= start - reach - _SLACK)
            if after is not None:
                conditions.append(
                    tuple_(events.c.starts_at, events.c.id)
                    > tuple_(bindparam("after_at", after[0], type_=UTCMicros), after[1])
                )
            for word in words:
                conditions.append(events.c.search.contains(word, autoescape=True))
            if ids is not None:
                conditions.append(events.c.id.in_(sorted(ids)))
            if sources:
                conditions.append(
                    events.c.id.in_(
                        select(occurrences.c.event_id).where(
                            occurrences.c.source_id.in_(sorted(sources))
                        )
                    )
                )
            query = (
                select(*_EVENT_COLUMNS, events.c.sequence, events.c.last_modified, events.c.ics)
                .select_from(_EVENTS)
                .where(*conditions)
                .order_by(events.c.starts_at, events.c.id)
            )
            # a few thousand rows at a time: SQLAlchemy makes its rows in the event loop's
            # thread, and 400,000 at once held every request for seconds; each part is
            # unpacked in a thread, so the server keeps answering
            result = await conn.stream(query)
            async for rows in result.partitions(at_a_time or _READ_AT_A_TIME):
                yield await asyncio.to_thread(_network_events, rows)

    async def _longest(self, conn) -> timedelta:
        """The longest published event's length: read once per data version (it is a scan
        of every published event, 0.1-0.2 s at 1,000 members, which every windowed render
        would otherwise pay). Kept only when the version did not change while it was read."""
        version = await _meta_number(conn, "data_version")
        known = self._longest_known
        if known is not None and known[0] == version:
            return known[1]
        longest = await conn.scalar(
            select(func.max(events.c.ends_at - events.c.starts_at)).where(
                events.c.unpublished_at.is_(None)
            )
        )
        reach = timedelta(microseconds=int(longest or 0))
        if await _meta_number(conn, "data_version") == version:
            self._longest_known = (version, reach)
        return reach

    async def published_count(self) -> int:
        """How many events are published."""
        async with self.engine.connect() as conn:
            return await conn.scalar(
                select(func.count()).select_from(events).where(events.c.unpublished_at.is_(None))
            )


#: published events read at a time
_READ_AT_A_TIME = 2000
#: a window's rows are read this much wider: an all-day event's day starts at midnight UTC
#: in the store, at local midnight in a window (anywhere from 14 hours before to 12 after)
_SLACK = timedelta(days=1)
#: where a page of events ends: the last one's start and id
Cursor = tuple[datetime, str]
#: an event's row with its description's text
_EVENTS = events.outerjoin(texts, texts.c.id == events.c.text_id)
#: what an event's fields are read from: the packed bytes as they are (the VEVENT's
#: dictionary), the text
_EVENT_COLUMNS = (
    events.c.id,
    events.c.created,
    type_coerce(events.c.data, LargeBinary).label("packed"),
    texts.c.body,
)
#: what the versioning step needs of each stored event
_VERSION_COLUMNS = (
    *_EVENT_COLUMNS,
    events.c.fingerprint,
    events.c.sequence,
    events.c.unpublished_at,
)
_BEFORE, _AFTER = texts.alias("before_texts"), texts.alias("after_texts")
#: the changes with their summaries' texts
_CHANGES = (
    select(changes, _BEFORE.c.body.label("before_body"), _AFTER.c.body.label("after_body"))
    .outerjoin(_BEFORE, _BEFORE.c.id == changes.c.before_text)
    .outerjoin(_AFTER, _AFTER.c.id == changes.c.after_text)
)


def _change_records(rows) -> list[ChangeRecord]:
    return [change_record(row) for row in rows]


def _network_events(rows) -> list[NetworkEvent]:
    published = []
    for row in rows:
        description = unpack_text(row.body)
        fields, ics = unpack_event(row.id, row.packed, row.ics, description)
        published.append(
            NetworkEvent(
                event=_merged(fields, row.id, description),
                sequence=row.sequence,
                created=row.created,
                last_modified=row.last_modified,
                ics=ics,
            )
        )
    return published


def _published_versions(rows) -> dict[str, PublishedVersion]:
    """The stored versions by event id; each event decoded only when it is asked for."""
    return {
        row.id: PublishedVersion(
            id=row.id,
            fingerprint=row.fingerprint,
            sequence=row.sequence,
            created=row.created,
            unpublished_at=row.unpublished_at,
            read_event=partial(_stored_event, row.packed, row.id, row.body),
        )
        for row in rows
    }


def _rows(publication: Publication) -> tuple[list[dict], list[dict], list[dict]]:
    """The rows to insert, to update, and of the history, as the publication says, packed;
    each with its description(s) still as text (_store_descriptions makes them ids)."""
    inserts, updates, history = [], [], []
    for new in publication.versions:
        fields, description = _text_out(_event_data(new.event))
        data, ics = pack_event(new.event.id, fields, new.ics, description)
        values = {
            "fingerprint": new.fingerprint,
            "sequence": new.sequence,
            "created": new.created,
            "last_modified": new.last_modified,
            "start": iso(new.event.start),
            "data": data,
            "ics": ics,
            "description": description,
            "unpublished_at": None,
            "expires_at": instant(new.event.end) if new.event.status in _GONE else None,
            "starts_at": instant(new.event.start),
            "ends_at": instant(new.event.end),
            "search": search_text(new.event),
        }
        if new.new:
            inserts.append({"id": new.event.id, **values})
        else:
            updates.append({"event_id": new.event.id, **values})
        if new.change is not None:
            history.append(_change_row(new.change))
    return inserts, updates, history


def _change_row(change: ChangeRecord) -> dict:
    before, before_text = _text_out(change.before)
    after, after_text = _text_out(change.after)
    return {
        "event_id": change.event_id,
        "at": change.at,
        "kind": change.kind.value,
        "title": change.title,
        "before": None if before is None else pack_json(before),
        "after": pack_json(after),
        "before_description": before_text,
        "after_description": after_text,
    }


def _text_out(values: dict | None) -> tuple[dict | None, str]:
    """The fields or summary with an empty description in place of its text (kept in
    texts), and the text."""
    text = (values or {}).get("description")
    if not text or not isinstance(text, str):
        return values, ""
    return {**values, "description": ""}, text


async def _store_descriptions(
    conn, inserts: list[dict], updates: list[dict], history: list[dict]
) -> None:
    """Store the rows' descriptions as texts; the rows name them by id."""
    described = ((row, "description", "text_id") for row in (*inserts, *updates))
    summarised = (
        (row, f"{side}_description", f"{side}_text")
        for row in history
        for side in ("before", "after")
    )
    moves = [*described, *summarised]
    ids = await store_texts(conn, (row[text] for row, text, _ in moves))
    for row, text, column in moves:
        row[column] = text_of(ids, row.pop(text))


async def _version_rows(conn, ids: Collection[str] | None) -> list:
    query = select(*_VERSION_COLUMNS).select_from(_EVENTS)
    if ids is None:
        return (await conn.execute(query)).all()
    return [
        row
        for some in _chunks(sorted(ids))
        for row in await conn.execute(query.where(events.c.id.in_(some)))
    ]


async def _known_ids(conn, wanted: Iterable[str] | None) -> dict[str, str]:
    query = select(identities.c.identity, identities.c.event_id)
    if wanted is None:
        return {row.identity: row.event_id for row in await conn.execute(query)}
    return {
        row.identity: row.event_id
        for some in _chunks(sorted(set(wanted)))
        for row in await conn.execute(query.where(identities.c.identity.in_(some)))
    }


async def _remember_ids(conn, wanted: dict[str, str]) -> None:
    """Keep, for every member identity, the id its event was published under."""
    if not wanted:
        return
    stored = await _known_ids(conn, wanted if len(wanted) < 50_000 else None)
    new = [{"identity": i, "event_id": e} for i, e in wanted.items() if i not in stored]
    moved = [
        {"ident": i, "event_id": e} for i, e in wanted.items() if stored.get(i) not in (None, e)
    ]
    if new:
        await conn.execute(insert(identities), new)
    if moved:
        await conn.execute(
            update(identities).where(identities.c.identity == bindparam("ident")), moved
        )


def _event_data(item: MergedEvent) -> dict:
    """The fields as stored: the id is the row's."""
    data = asdict(item)
    del data["id"]
    data.update(
        start=iso(item.start),
        end=iso(item.end),
        status=item.status.value,
        previous_start=iso(item.previous_start),
    )
    return data


def _stored_event(packed: bytes, event_id: str, body: bytes | None) -> MergedEvent:
    return _merged(unpack_json(packed), event_id, unpack_text(body))


def _merged(data: dict, event_id: str, description: str) -> MergedEvent:
    """The merged event of stored fields, its id and its description's text (empty: the
    fields' own)."""
    values = dict(data)
    values.update(
        id=event_id,
        start=from_iso(data["start"]),
        end=from_iso(data["end"]),
        status=Status(data["status"]),
    )
    if description:
        values["description"] = description
    if values.get("previous_start"):
        values["previous_start"] = from_iso(values["previous_start"])
    for name in ("categories", "organisers", "source_ids", "members", "identities", "cancelled_by"):
        values[name] = tuple(values.get(name, ()))
    values["copies"] = tuple(tuple(copy) for copy in values.get("copies", ()))
    return MergedEvent(**values)
