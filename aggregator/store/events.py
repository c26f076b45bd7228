"""The published network events: versions, bytes, ids and the history of changes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, replace
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, insert, select, update

from aggregator.model import (
    ChangeKind,
    ChangeRecord,
    MergedEvent,
    NetworkEvent,
    Status,
)
from aggregator.normalise import fingerprint, from_iso, iso
from aggregator.reconcile import event_change
from aggregator.store.base import (
    StoreBase,
    _bump_version,
    _chunks,
    _meta_number,
    _set_meta,
    _unpublished,
    _write_many,
)
from aggregator.store.schema import (
    changes,
    events,
    identities,
)

#: renders a merged event with its version (sequence, created, last modified) into VEVENT
#: bytes; None when the event could not be rendered (it is skipped, the rest is published)
RenderEvent = Callable[[MergedEvent, int, datetime, datetime], bytes | None]


class EventsMixin(StoreBase):
    async def publish(
        self,
        merged: Iterable[MergedEvent],
        render_event: RenderEvent,
        render_key: str,
        now: datetime,
    ) -> bool:
        """Store the merged events; only those whose content changed get a new version.

        A changed event gets SEQUENCE + 1 and LAST-MODIFIED = now and is serialised again
        (rule 8); an unchanged one keeps its bytes. An event no longer merged is unpublished
        but kept, so if it returns (its source put back in sources.yaml) its SEQUENCE goes
        on from where it was. An event `render_event` cannot render (None) is skipped: its
        last version stays as it was, or it waits unpublished. Returns whether anything
        changed.
        """
        merged_list = list(merged)
        loaded, self._loaded_writes = self._loaded_writes, None
        async with self._writing() as conn:
            known = {
                r.id: r
                for r in await conn.execute(
                    select(
                        events.c.id,
                        events.c.fingerprint,
                        events.c.sequence,
                        events.c.created,
                        events.c.data,
                        events.c.unpublished_at,
                    )
                )
            }
            # versioning and rendering are CPU work on every changed event: in a thread, so
            # the server keeps answering during a large publish (the write turn is held)
            seen, inserts, updates, history = await asyncio.to_thread(
                _versions, merged_list, known, render_event, render_key, now
            )
            gone = {i for i, r in known.items() if r.unpublished_at is None} - seen
            # executemany: one statement for all, not one round trip per event
            if inserts:
                await _write_many(conn, insert(events), inserts)
            if updates:
                await _write_many(
                    conn, update(events).where(events.c.id == bindparam("event_id")), updates
                )
            for some in _chunks(sorted(gone)):
                await conn.execute(
                    update(events).where(events.c.id.in_(some)).values(unpublished_at=now)
                )
            if history:
                await conn.execute(insert(changes), history)
            await _remember_ids(conn, merged_list)
            changed = bool(inserts or updates or gone)
            if changed:
                await _bump_version(conn)
            written = await _meta_number(conn, "writes") if loaded is None else loaded
            await _set_meta(conn, "published", str(written))
        return changed

    async def known_ids(self) -> dict[str, str]:
        """Member identity -> the network id it was published under."""
        async with self.engine.connect() as conn:
            result = await conn.execute(select(identities.c.identity, identities.c.event_id))
            return {row.identity: row.event_id for row in result}

    async def recent_changes(self, limit: int | None = 200, days: int = 30) -> list[ChangeRecord]:
        """The newest changes first: at most `limit` (None: all), within `days` of the
        newest one; none of an unpublished event."""
        shown = changes.c.event_id.not_in(_unpublished)
        async with self.engine.connect() as conn:
            newest = await conn.scalar(select(func.max(changes.c.at)).where(shown))
            if newest is None:
                return []
            result = await conn.execute(
                select(changes)
                .where(shown, changes.c.at >= newest - timedelta(days=days))
                .order_by(changes.c.at.desc(), changes.c.id.desc())
                .limit(limit)
            )
            return [_change_record(row) for row in result]

    async def event_history(self) -> dict[str, list[ChangeRecord]]:
        """Every event's changes, oldest first, by event id; none of an unpublished event."""
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(changes)
                .where(changes.c.event_id.not_in(_unpublished))
                .order_by(changes.c.at, changes.c.id)
            )
            history: dict[str, list[ChangeRecord]] = {}
            for row in result:
                history.setdefault(row.event_id, []).append(_change_record(row))
            return history

    async def published_events(self) -> list[NetworkEvent]:
        """Every published event, in a stable order: start, then id."""
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(events)
                .where(events.c.unpublished_at.is_(None))
                .order_by(events.c.start, events.c.id)
            )
            return [
                NetworkEvent(
                    event=_merged(row.data),
                    sequence=row.sequence,
                    created=row.created,
                    last_modified=row.last_modified,
                    ics=row.ics,
                )
                for row in result
            ]


def _versions(
    merged_list: Sequence[MergedEvent],
    known: dict,
    render_event: RenderEvent,
    render_key: str,
    now: datetime,
) -> tuple[set[str], list[dict], list[dict], list[dict]]:
    """The rows a publish writes (pure but for render_event): a new version, and new bytes,
    for each event whose content changed; its change for the history."""
    seen, inserts, updates, history = set(), [], [], []
    for item in merged_list:
        seen.add(item.id)  # also when it cannot be rendered: that is not gone
        print_ = fingerprint({"event": item.fingerprint, "render": render_key})
        row = known.get(item.id)
        back = row is not None and row.unpublished_at is not None
        if row is not None and not back and row.fingerprint == print_:
            continue
        old = _merged(row.data) if row is not None else None
        if old is not None:
            # "moved from": where it was before its latest move
            moved = (old.start, old.end) != (item.start, item.end)
            item = replace(item, previous_start=old.start if moved else old.previous_start)
        sequence, created = (0, now) if row is None else (row.sequence + 1, row.created)
        ics = render_event(item, sequence, created, now)
        if ics is None:
            continue
        values = {
            "fingerprint": print_,
            "sequence": sequence,
            "created": created,
            "last_modified": now,
            "start": iso(item.start),
            "data": _event_data(item),
            "ics": ics,
            "unpublished_at": None,
        }
        if row is None:
            inserts.append({"id": item.id, **values})
        else:
            updates.append({"event_id": item.id, **values})
        # back in the outputs: subscribers see it added again
        kind, before, after = event_change(None if back else old, item)
        if old is None or back or after.get("fields") or kind != "updated":
            history.append(
                {
                    "event_id": item.id,
                    "at": now,
                    "kind": kind,
                    "title": item.title,
                    "before": before,
                    "after": after,
                }
            )
    return seen, inserts, updates, history


async def _remember_ids(conn, merged: Sequence[MergedEvent]) -> None:
    """Keep, for every member identity, the id its event was published under."""
    wanted = {identity: item.id for item in merged for identity in item.identities}
    if not wanted:
        return
    stored = {
        row.identity: row.event_id
        for row in await conn.execute(select(identities.c.identity, identities.c.event_id))
    }
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
    data = asdict(item)
    data.update(
        start=iso(item.start),
        end=iso(item.end),
        status=item.status.value,
        previous_start=iso(item.previous_start),
    )
    return json.loads(json.dumps(data))  # tuples -> lists, so what we store is what we read


def _merged(data: dict) -> MergedEvent:
    values = dict(data)
    values.update(
        start=from_iso(data["start"]), end=from_iso(data["end"]), status=Status(data["status"])
    )
    if values.get("previous_start"):
        values["previous_start"] = from_iso(values["previous_start"])
    for name in ("categories", "organisers", "source_ids", "members", "identities", "cancelled_by"):
        values[name] = tuple(values.get(name, ()))
    values["copies"] = tuple(tuple(copy) for copy in values.get("copies", ()))
    return MergedEvent(**values)


def _change_record(row) -> ChangeRecord:
    return ChangeRecord(
        event_id=row.event_id,
        at=row.at,
        kind=ChangeKind(row.kind),
        title=row.title,
        before=row.before,
        after=row.after,
        id=row.id,
    )
