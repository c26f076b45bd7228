"""store/: migrations make the schema; data survives reopening; health lives on the row."""

from __future__ import annotations

from datetime import timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from aggregator.model import FetchOutcome, FetchResult, Validators
from aggregator.store import Store
from aggregator.store.schema import metadata
from tests.conftest import make_settings, source
from tests.test_merge import occ


async def test_migrations_build_exactly_the_schema_the_code_uses(store):
    def diff(connection):
        return compare_metadata(MigrationContext.configure(connection), metadata)

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        version = (await conn.execute(text("select version_num from alembic_version"))).scalar()
    assert version == "0001"


async def test_reopening_keeps_everything(tmp_path, now):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    first = await Store.open(settings.database_url)
    await first.sync_sources(settings.sources)
    await first.replace_snapshot(
        "alpha",
        [occ("alpha", "u@x")],
        validators=Validators(etag='"1"'),
        content_hash="h",
        warnings=("careful",),
        now=now,
    )
    await first.close()
    again = await Store.open(settings.database_url)
    state = await again.source_state("alpha")
    assert state.validators.etag == '"1"' and state.warnings == ("careful",)
    assert [o.uid for o in await again.load_occurrences()] == ["u@x"]
    assert state.last_success_at == now and state.last_success_at.tzinfo is not None
    await again.close()


async def test_a_changed_url_forgets_the_old_validators(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    await store.sync_sources(settings.sources)
    await store.record_unchanged("alpha", Validators(etag='"1"', last_modified="x"), now)
    await store.sync_sources([source("alpha", "/moved.ics")])
    state = await store.source_state("alpha")
    assert state.url == "/moved.ics" and state.validators == Validators()


async def test_fetch_history_is_kept_for_thirty_days(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    await store.sync_sources(settings.sources)
    result = FetchResult(FetchOutcome.OK, "/a.ics", body=b"x")
    await store.record_fetch("alpha", result, now - timedelta(days=40))
    await store.record_fetch("alpha", result, now - timedelta(days=2))
    await store.record_fetch("alpha", result, now)
    history = await store.fetch_history("alpha")
    assert [h["at"] for h in history] == [now, now - timedelta(days=2)]
