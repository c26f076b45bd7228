"""Members' occurrences: the snapshot a source's cycle replaces, and what a publish reads."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy import select

from aggregator.model import (
    Occurrence,
    Status,
)
from aggregator.normalise import from_iso, iso
from aggregator.store.base import (
    StoreBase,
    _configured,
    _meta_number,
)
from aggregator.store.schema import (
    occurrences,
)


class OccurrencesMixin(StoreBase):
    async def load_occurrences(self, source_id: str | None = None) -> list[Occurrence]:
        """The occurrences of the configured sources (or of one), for publishing: those of a
        source taken out of sources.yaml are kept but never loaded.

        Without a source id this is the read a publish starts from: it notes how far the
        writes went, and the next `publish` settles what was owed up to there."""
        query = (
            select(occurrences)
            .where(occurrences.c.source_id.in_(_configured))
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

    async def publish_owed(self) -> bool:
        """Whether occurrences or sources changed since the last publish (a process may have
        been stopped or killed between a source's write and the publish)."""
        async with self.engine.connect() as conn:
            return await _meta_number(conn, "writes") != await _meta_number(conn, "published")

    # -- published network events --------------------------------------------------------


def _occurrences_of(rows) -> list[Occurrence]:
    return [_occurrence(row) for row in rows]


def _occurrence_rows(snapshot: Sequence[Occurrence]) -> list[dict]:
    return [_occurrence_row(o) for o in snapshot]


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
        description=row.description,
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
