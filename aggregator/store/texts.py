"""Long texts, each kept once: the rows that have one (an occurrence's, an event's or a
change's description) name it by id, so the occurrences of a series share their text.

texts.refs counts the rows that name a text; triggers keep it (migration 0010), whoever
inserts, changes or deletes those rows. A text no row names is forgotten by the next
write of a snapshot or a publication (`forget_unused_texts`), not at once: within one
write a text may be let go by one row and taken by the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from sqlalchemy import delete, func, insert, select

from aggregator.store.base import _chunks, _write_many
from aggregator.store.packing import pack_text, text_key, unpack_text
from aggregator.store.schema import texts


async def store_texts(conn, wanted: Iterable[str]) -> dict[str, int]:
    """The id of each text (none for the empty text), storing those not stored yet.

    A text is found by its hash (text_key) and compared whole: two texts with one hash
    (2^-64 apart: in principle) are two rows, each read back as written."""
    keys = {text: text_key(text) for text in set(wanted) if text}
    stored = await _stored(conn, keys.values())
    # thousands of texts to compare or pack: in a thread, so the server keeps answering
    ids, new = await asyncio.to_thread(_sorted, keys, stored)
    if new:
        # appended after the last: one writer at a time (the write turn), so no other takes it
        first = (await conn.scalar(select(func.max(texts.c.id))) or 0) + 1
        rows = [{**row, "id": first + n} for n, row in enumerate(new.values())]
        ids.update((text, row["id"]) for text, row in zip(new, rows, strict=True))
        await _write_many(conn, insert(texts), rows)
    return ids


def _sorted(
    keys: dict[str, int], stored: dict[int, list[tuple[int, bytes]]]
) -> tuple[dict[str, int], dict[str, dict]]:
    """Of the texts (with their keys): the ids of those stored, the rows (but ids) of the
    others."""
    ids: dict[str, int] = {}
    new: dict[str, dict] = {}
    for text, key in keys.items():
        found = next((i for i, body in stored.get(key, ()) if unpack_text(body) == text), None)
        if found is not None:
            ids[text] = found
        else:
            new[text] = {"key": key, "refs": 0, "body": pack_text(text)}
    return ids, new


async def _stored(conn, keys: Iterable[int]) -> dict[int, list[tuple[int, bytes]]]:
    """The stored texts with these keys: key -> [(id, packed text)]."""
    stored: dict[int, list[tuple[int, bytes]]] = {}
    query = select(texts.c.id, texts.c.key, texts.c.body)
    for some in _chunks(sorted(set(keys))):
        for row in await conn.execute(query.where(texts.c.key.in_(some))):
            stored.setdefault(row.key, []).append((row.id, row.body))
    return stored


async def forget_unused_texts(conn) -> None:
    """Delete the texts no row names any more (an index holds just those)."""
    await conn.execute(delete(texts).where(texts.c.refs <= 0))


def text_of(ids: Mapping[str, int], text: str) -> int | None:
    """The id `store_texts` gave the text; none for the empty text."""
    return ids[text] if text else None
