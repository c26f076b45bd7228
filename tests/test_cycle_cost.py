"""What a cycle costs: the body fetched is hashed once, whatever the questions asked of it."""

from __future__ import annotations

from aggregator import decide
from aggregator.model import FetchOutcome
from aggregator.refresh import refresh_source
from tests.conftest import FEEDS, fetching, make_settings, source


async def test_a_cycle_hashes_its_body_once(store, tmp_path, now, monkeypatch):
    settings = make_settings(tmp_path, [source("f", str(FEEDS / "kulturhuset.ics"))])
    await store.sync_sources(settings.sources)
    hashed: list[int] = []
    real = decide.content_hash

    def counted(body, *args):
        hashed.append(len(body))
        return real(body, *args)

    monkeypatch.setattr(decide, "content_hash", counted)
    (feed,) = settings.sources
    async with fetching(settings) as fetcher:
        first = await refresh_source(store, fetcher, feed, settings, now)
        assert first.outcome is FetchOutcome.UPDATED and len(hashed) == 1  # read and stored
        again = await refresh_source(store, fetcher, feed, settings, now)
        assert again.outcome is FetchOutcome.UNCHANGED and len(hashed) == 2  # the same body
    assert (await store.source_states())["f"].content_hash == real(
        (FEEDS / "kulturhuset.ics").read_bytes(), now, feed, settings
    )
