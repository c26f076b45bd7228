"""Saved filters: a selection whose subscribe link would be too long, under a short key."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update

from aggregator.store.base import StoreBase
from aggregator.store.schema import saved_filters

#: saved filters kept at most: the least recently used go first (anyone can make one)
MAX_SAVED = 10_000
#: a key's use is written at most this often
USE_EVERY = timedelta(days=1)


def filter_key(query: str) -> str:
    """The short key of a canonical selection query: the same selection, the same key."""
    digest = hashlib.sha256(query.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii")[:12].lower()


class FiltersMixin(StoreBase):
    async def save_filter(self, query: str, now: datetime) -> str:
        """Keep `query` (a Selection's canonical query) under its key; the key."""
        key = filter_key(query)
        async with self._writing() as conn:
            known = await conn.scalar(select(saved_filters.c.key).where(saved_filters.c.key == key))
            if known is None:
                await conn.execute(insert(saved_filters).values(key=key, query=query, used_at=now))
                count = await conn.scalar(select(func.count()).select_from(saved_filters))
                if count > MAX_SAVED:
                    oldest = (
                        select(saved_filters.c.key)
                        .order_by(saved_filters.c.used_at)
                        .limit(count - MAX_SAVED)
                    )
                    await conn.execute(delete(saved_filters).where(saved_filters.c.key.in_(oldest)))
        return key

    async def saved_filter(self, key: str, now: datetime) -> str | None:
        """The query saved under `key` (None: no such key), its use noted."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(saved_filters.c.query, saved_filters.c.used_at).where(
                        saved_filters.c.key == key
                    )
                )
            ).first()
        if row is None:
            return None
        if now - row.used_at > USE_EVERY:
            async with self._writing() as conn:
                await conn.execute(
                    update(saved_filters).where(saved_filters.c.key == key).values(used_at=now)
                )
        return row.query
