"""Saved filters: a selection whose subscribe link would be too long, under a short key.

Anyone can make one (a page with such a selection does), so what they hold is bounded, and
what a subscriber uses is never pushed out by them:

- a key is the hash of the canonical selection: the same selection, the same key, one row;
- keys never fetched as a calendar or feed (made by a page, not subscribed to) are kept up
  to MAX_UNUSED, the least recently used going first when a new one comes;
- a key fetched as a calendar or feed within IDLE is in use: never pushed out. When
  MAX_FETCHED of them are in use, no new key is made (the page links the selection whole).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select, update

from aggregator.store.base import StoreBase
from aggregator.store.schema import saved_filters

#: keys not in use kept at most: the least recently used go first (anyone can make one)
MAX_UNUSED = 10_000
#: keys in use kept at most: beyond, no new key is made
MAX_FETCHED = 100_000
#: a key not fetched as a calendar or feed for this long is no longer in use
IDLE = timedelta(days=180)
#: a key's use is written at most this often
USE_EVERY = timedelta(days=1)


def filter_key(query: str) -> str:
    """The short key of a canonical selection query: the same selection, the same key."""
    digest = hashlib.sha256(query.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii")[:12].lower()


def _unused(now: datetime):
    """Keys not in use: never fetched as a calendar or feed, or not within IDLE."""
    return or_(saved_filters.c.fetched_at.is_(None), saved_filters.c.fetched_at < now - IDLE)


class FiltersMixin(StoreBase):
    async def save_filter(self, query: str, now: datetime) -> str | None:
        """Keep `query` (a Selection's canonical query) under its key; the key, or None when
        MAX_FETCHED keys are in use (no room that would not push one of them out)."""
        key = filter_key(query)
        async with self._writing() as conn:
            known = await conn.scalar(select(saved_filters.c.key).where(saved_filters.c.key == key))
            if known is not None:
                return key
            used = await conn.scalar(
                select(func.count()).select_from(saved_filters).where(~_unused(now))
            )
            if used >= MAX_FETCHED:
                return None
            await conn.execute(insert(saved_filters).values(key=key, query=query, used_at=now))
            unused = await conn.scalar(
                select(func.count()).select_from(saved_filters).where(_unused(now))
            )
            if unused > MAX_UNUSED:
                oldest = (
                    select(saved_filters.c.key)
                    .where(_unused(now), saved_filters.c.key != key)
                    .order_by(saved_filters.c.used_at)
                    .limit(unused - MAX_UNUSED)
                )
                await conn.execute(
                    delete(saved_filters).where(saved_filters.c.key.in_(oldest.scalar_subquery()))
                )
        return key

    async def filter_saved(self, query: str) -> str | None:
        """The key `query` is saved under, if it is (nothing written)."""
        key = filter_key(query)
        async with self.engine.connect() as conn:
            known = await conn.scalar(select(saved_filters.c.key).where(saved_filters.c.key == key))
        return known

    async def saved_filter(
        self, key: str, now: datetime, *, subscribed: bool = False
    ) -> str | None:
        """The query saved under `key` (None: no such key), its use noted; `subscribed`: it
        is fetched as a calendar or feed, so it is in use (kept)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        saved_filters.c.query, saved_filters.c.used_at, saved_filters.c.fetched_at
                    ).where(saved_filters.c.key == key)
                )
            ).first()
        if row is None:
            return None
        values = {}
        if now - row.used_at > USE_EVERY:
            values["used_at"] = now
        if subscribed and (row.fetched_at is None or now - row.fetched_at > USE_EVERY):
            values["fetched_at"] = now
        if values:
            async with self._writing() as conn:
                await conn.execute(
                    update(saved_filters).where(saved_filters.c.key == key).values(**values)
                )
        return row.query
