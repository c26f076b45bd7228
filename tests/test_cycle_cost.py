"""What a cycle costs: the body fetched is hashed once, whatever the questions asked of it."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from aggregator import decide
from aggregator.model import FetchOutcome
from aggregator.refresh import refresh_source
from tests.conftest import FEEDS, fetching, make_settings, source

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")


def _counted_hashes(monkeypatch) -> list[int]:
    hashed: list[int] = []
    real = decide.content_hash

    def counted(body, *args):
        hashed.append(len(body))
        return real(body, *args)

    monkeypatch.setattr(decide, "content_hash", counted)
    return hashed


async def test_a_cycle_hashes_its_body_once(store, tmp_path, now, monkeypatch):
    path = tmp_path / "feed.ics"
    path.write_bytes((FEEDS / "kulturhuset.ics").read_bytes())
    settings = make_settings(tmp_path, [source("f", str(path))])
    await store.sync_sources(settings.sources)
    real = decide.content_hash
    hashed = _counted_hashes(monkeypatch)
    (feed,) = settings.sources
    async with fetching(settings) as fetcher:
        first = await refresh_source(store, fetcher, feed, settings, now)
        assert first.outcome is FetchOutcome.UPDATED and len(hashed) == 1  # read and stored
        stat = path.stat()  # written again with the same bytes: read, hashed, found the same
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        again = await refresh_source(store, fetcher, feed, settings, now)
        assert again.outcome is FetchOutcome.UNCHANGED and len(hashed) == 2  # the same body
    assert (await store.source_states())["f"].content_hash == real(
        path.read_bytes(), now, feed, settings
    )


async def test_an_unchanged_local_file_is_not_read_again_until_the_next_day(
    store, tmp_path, now, monkeypatch
):
    """A file's size and time of change are its validators, as a server's ETag: a cycle over
    unchanged files reads and hashes none of them; a new day (the horizon moved) or a change
    of the file reads it again."""
    path = tmp_path / "feed.ics"
    body = (FEEDS / "kulturhuset.ics").read_bytes()
    path.write_bytes(body)
    settings = make_settings(tmp_path, [source("f", str(path))])
    await store.sync_sources(settings.sources)
    hashed = _counted_hashes(monkeypatch)
    (feed,) = settings.sources
    async with fetching(settings) as fetcher:
        first = await refresh_source(store, fetcher, feed, settings, now)
        assert first.outcome is FetchOutcome.UPDATED and len(hashed) == 1
        again = await refresh_source(store, fetcher, feed, settings, now + timedelta(hours=1))
        assert again.outcome is FetchOutcome.NOT_MODIFIED and len(hashed) == 1
        assert again.occurrences == first.occurrences
        tomorrow = await refresh_source(store, fetcher, feed, settings, now + timedelta(days=1))
        assert tomorrow.outcome is FetchOutcome.UNCHANGED and len(hashed) == 2
        path.write_bytes(body.replace(b"SUMMARY:", b"SUMMARY:Nyt: ", 1))
        changed = await refresh_source(store, fetcher, feed, settings, now + timedelta(days=1))
        assert changed.outcome is FetchOutcome.UPDATED and len(hashed) == 3
