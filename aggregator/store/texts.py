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

from sqlalchemy import delete, insert, select

from aggregator.store.base import _chunks, _write_many
from aggregator.store.packing import next_key, pack_text, text_key, unpack_text
from aggregator.store.schema import texts


async def store_texts(conn, wanted: Iterable[str]) -> dict[str, int]:
    """The id of each text (none for the empty text), storing those not stored yet.

    A text's id is its hash (text_key); another text with the same hash (2^-64 apart: in
    principle) moves it to the next free id, so a text is always read back as written."""
    ids: dict[str, int] = {}
    trying = {text: text_key(text) for text in set(wanted) if text}
    while trying:
        stored = await _stored(conn, trying.values())
        # thousands of texts to compare or pack: in a thread, so the server keeps answering
        found, new, trying = await asyncio.to_thread(_sorted, trying, stored)
        ids.update(found)
        await _write_many(conn, insert(texts), new)
    return ids


def _sorted(
    trying: dict[str, int], stored: dict[int, bytes]
) -> tuple[dict[str, int], list[dict], dict[str, int]]:
    """Of the texts and the ids tried for them: those found stored under their id, the rows
    of those to store under theirs, and the next id to try for the rest."""
    found: dict[str, int] = {}
    claimed: dict[int, str] = {}
    new, clashed = [], {}
    for text, key in trying.items():
        packed = stored.get(key)
        if packed is None and claimed.setdefault(key, text) == text:
            new.append({"id": key, "refs": 0, "body": pack_text(text)})
            found[text] = key
        elif packed is not None and unpack_text(packed) == text:
            found[text] = key
        else:
            clashed[text] = next_key(key)
    return found, new, clashed


async def _stored(conn, keys: Iterable[int]) -> dict[int, bytes]:
    return {
        row.id: row.body
        for some in _chunks(sorted(set(keys)))
        for row in await conn.execute(select(texts.c.id, texts.c.body).where(texts.c.id.in_(some)))
    }


async def forget_unused_texts(conn) -> None:
    """Delete the texts no row names any more (an index holds just those)."""
    await conn.execute(delete(texts).where(texts.c.refs <= 0))


def text_of(ids: Mapping[str, int], text: str) -> int | None:
    """The id `store_texts` gave the text; none for the empty text."""
    return ids[text] if text else None
