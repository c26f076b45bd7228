"""Members' occurrences: the snapshot a source's cycle replaces, and what a publish reads."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

from sqlalchemy import bindparam, delete, insert, select, update

from aggregator.merge.incremental import hash64, ident_hash
from aggregator.merge.join import url_key
from aggregator.model import (
    Occurrence,
    Status,
)
from aggregator.normalise import from_iso, iso
from aggregator.reconcile import identity_of
from aggregator.store.base import (
    StoreBase,
    _chunks,
    _configured,
    _meta_number,
    _write_many,
)
from aggregator.store.packing import unpack_text
from aggregator.store.schema import (
    merge_pending,
    occurrences,
    texts,
)
from aggregator.store.texts import forget_unused_texts, store_texts, text_of


class OccurrencesMixin(StoreBase):
    async def load_occurrences(self, source_id: str | None = None) -> list[Occurrence]:
        """The occurrences of the configured sources (or of one), for publishing: those of a
        source taken out of sources.yaml are kept but never loaded.

        Without a source id this is the read a publish starts from: it notes how far the
        writes went, and the next `publish` settles what was owed up to there."""
        query = (
            occurrence_select()
            .where(_configured(occurrences.c.source_id))
            .order_by(occurrences.c.key)
        )
        if source_id is not None:
            query = query.where(occurrences.c.source_id == source_id)
        async with self.engine.connect() as conn:
            if source_id is None:
                # read before the occurrences: a write in between leaves the debt, never hides it
                self._loaded_writes = await _meta_number(conn, "writes")
            rows = (await conn.execute(query)).all()
        # thousands of rows: made into occurrences in a thread, so the server keeps answering
        return await asyncio.to_thread(_occurrences_of, rows)

    async def source_event_ids(self, source_id: str) -> set[str]:
        """The network events a source's occurrences were merged into."""
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(occurrences.c.event_id)
                .where(occurrences.c.source_id == source_id, occurrences.c.event_id.is_not(None))
                .distinct()
            )
            return {row.event_id for row in result}

    async def publish_owed(self) -> bool:
        """Whether occurrences or sources changed since the last publish (a process may have
        been stopped or killed between a source's write and the publish)."""
        async with self.engine.connect() as conn:
            return await _meta_number(conn, "writes") != await _meta_number(conn, "published")

    # -- published network events --------------------------------------------------------


def occurrence_select():
    """The select every read of whole occurrences starts from (`_occurrence` reads its rows):
    the occurrences' columns and their description's (packed) text."""
    return select(occurrences, texts.c.body).select_from(
        occurrences.outerjoin(texts, texts.c.id == occurrences.c.text_id)
    )


def _occurrences_of(rows) -> list[Occurrence]:
    return [_occurrence(row) for row in rows]


def _occurrence_rows(snapshot: Sequence[Occurrence]) -> list[dict]:
    """The rows of a snapshot, each with the hash that tells whether a later one changed it
    (the description is in the rows until replace_snapshot stores it as a text)."""
    rows = []
    for o in snapshot:
        row = _occurrence_row(o)
        row["row_hash"] = hashlib.blake2b(repr(row).encode(), digest_size=8).hexdigest()
        # how its copies find it (merge/incremental.py: Facts), from the start: a merge of
        # the whole network asks which later occurrences share an identity
        url = url_key(o.url)
        row["ident_hash"] = ident_hash(identity_of(o))
        row["url_hash"] = hash64(url) if url else None
        rows.append(row)
    return rows


async def replace_snapshot(conn, source_id: str, rows: Sequence[dict]) -> None:
    """Make the source's stored occurrences `rows`, writing only what changed, and note
    the keys added, changed or deleted (with the event and word set they were merged
    with) for the next publish to merge."""
    stored = {
        row.key: row
        for row in await conn.execute(
            select(
                occurrences.c.key,
                occurrences.c.row_hash,
                occurrences.c.event_id,
                occurrences.c.set_id,
            ).where(occurrences.c.source_id == source_id)
        )
    }
    keys = {row["key"] for row in rows}
    deleted = [key for key in stored if key not in keys]
    added = [row for row in rows if row["key"] not in stored]
    changed = [
        {"old_key": row["key"], **row}
        for row in rows
        if row["key"] in stored and stored[row["key"]].row_hash != row["row_hash"]
    ]
    for some in _chunks(deleted):
        await conn.execute(delete(occurrences).where(occurrences.c.key.in_(some)))
    # after the deletes: a text they let go of is kept for a row that takes it again
    ids = await store_texts(conn, (row["description"] for row in (*added, *changed)))
    await _write_many(conn, insert(occurrences), _with_texts(added, ids))
    await _write_many(
        conn,
        update(occurrences).where(occurrences.c.key == bindparam("old_key")),
        _with_texts(changed, ids),
    )
    await forget_unused_texts(conn)
    touched = [*deleted, *(row["key"] for row in added), *(row["key"] for row in changed)]
    await _note_pending(conn, touched, stored)


def _with_texts(rows: Sequence[dict], ids: dict[str, int]) -> list[dict]:
    """The rows as stored: their description's text id for the description."""
    stored = []
    for row in rows:
        values = dict(row)
        values["text_id"] = text_of(ids, values.pop("description"))
        stored.append(values)
    return stored


async def _note_pending(conn, keys: Sequence[str], stored: dict) -> None:
    """Note keys for the next publish; a key already noted keeps what it was merged with."""
    noted: set[str] = set()
    for some in _chunks(keys):
        noted.update(
            await conn.scalars(select(merge_pending.c.key).where(merge_pending.c.key.in_(some)))
        )
    rows = []
    for key in keys:
        if key in noted:
            continue
        old = stored.get(key)
        rows.append(
            {
                "key": key,
                "event_id": old.event_id if old is not None else None,
                "set_id": old.set_id if old is not None else None,
            }
        )
    await _write_many(conn, insert(merge_pending), rows)


def _occurrence_row(o: Occurrence) -> dict:
    return {
        "key": o.key,
        "source_id": o.source_id,
        "uid": o.uid,
        "recurrence_id": o.recurrence_id,
        "title": o.title,
        "start": iso(o.start),
        "end": iso(o.end),
        "all_day": o.all_day,
        "tzid": o.tzid,
        "description": o.description,
        "url": o.url,
        "location": o.location,
        "status": o.status.value,
        "categories": list(o.categories),
        "sequence": o.sequence,
        "fingerprint": o.fingerprint,
        "origin": o.origin,
        "identity": o.identity,
        "missing_since": o.missing_since,
        "removed_at": o.removed_at,
    }


def _occurrence(row) -> Occurrence:
    """An occurrence_select() row as an occurrence."""
    return Occurrence(
        key=row.key,
        source_id=row.source_id,
        uid=row.uid,
        recurrence_id=row.recurrence_id,
        title=row.title,
        start=from_iso(row.start),
        end=from_iso(row.end),
        all_day=row.all_day,
        tzid=row.tzid,
        description=unpack_text(row.body),
        url=row.url,
        location=row.location,
        status=Status(row.status),
        categories=tuple(row.categories),
        sequence=row.sequence,
        fingerprint=row.fingerprint,
        origin=row.origin,
        identity=row.identity,
        missing_since=row.missing_since,
        removed_at=row.removed_at,
    )
