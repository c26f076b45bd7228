"""store/: migrations make the schema; data survives reopening; health lives on the row."""

from __future__ import annotations

from datetime import timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from aggregator.model import Attempt, Validators
from aggregator.store import MIGRATIONS, Store
from aggregator.store.schema import metadata
from tests.conftest import make_settings, put_snapshot, source
from tests.test_merge import occ


def head() -> str:
    """The newest migration's revision."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


async def test_migrations_build_exactly_the_schema_the_code_uses(store):
    def diff(connection):
        return compare_metadata(MigrationContext.configure(connection), metadata)

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        version = (await conn.execute(text("select version_num from alembic_version"))).scalar()
    assert version == head()


async def test_reopening_keeps_everything(tmp_path, now):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    first = await Store.open(settings.database_url)
    await first.sync_sources(settings.sources)
    await put_snapshot(
        first,
        "alpha",
        [occ("alpha", "u@x")],
        now,
        validators=Validators(etag='"1"'),
        warnings=("careful",),
    )
    await first.close()
    again = await Store.open(settings.database_url)
    state = await again.source_state("alpha")
    assert state.validators.etag == '"1"' and state.warnings == ("careful",)
    assert [o.uid for o in await again.load_occurrences()] == ["u@x"]
    assert state.last_success_at == now and state.last_success_at.tzinfo is not None
    await again.close()


async def test_a_changed_url_forgets_what_the_old_one_told_us(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    await store.sync_sources(settings.sources)
    await store.record_attempt(
        "alpha",
        Attempt(
            at=now,
            outcome="not modified",
            message="304",
            next_check_at=now,
            validators=Validators(etag='"1"', last_modified="x"),
            moved_to="/elsewhere.ics",
        ),
    )
    await store.sync_sources([source("alpha", "/moved.ics")])
    state = await store.source_state("alpha")
    assert state.url == "/moved.ics" and state.validators == Validators()
    assert state.moved_to is None


async def test_fetch_history_is_kept_for_thirty_days(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    await store.sync_sources(settings.sources)
    for age in (40, 2, 0):
        at = now - timedelta(days=age)
        await store.record_attempt(
            "alpha", Attempt(at=at, outcome="unchanged", message="same", next_check_at=at)
        )
    await store.prune_history(now)
    history = await store.fetch_history("alpha")
    assert [h["at"] for h in history] == [now, now - timedelta(days=2)]
    assert history[0]["message"] == "same"


async def test_failures_count_up_and_a_success_resets_them(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    await store.sync_sources(settings.sources)
    for hours in (0, 1):
        at = now + timedelta(hours=hours)
        await store.record_attempt(
            "alpha",
            Attempt(
                at=at, outcome="failed", message="HTTP 500", error="HTTP 500", next_check_at=at
            ),
        )
    state = await store.source_state("alpha")
    assert (state.failures_in_row, state.failing_since, state.health) == (2, now, "failing")
    assert "failing since" in state.describe() and "HTTP 500" in state.describe()
    await store.record_attempt(
        "alpha", Attempt(at=now, outcome="unchanged", message="ok", next_check_at=now)
    )
    state = await store.source_state("alpha")
    assert (state.failures_in_row, state.failing_since, state.health) == (0, None, "ok")


async def test_a_database_made_by_version_0001_migrates_and_keeps_its_data(tmp_path, now):
    from alembic import command
    from alembic.config import Config

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = Store(create_async_engine(url))

    def upgrade_to_0001(connection):
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")

    async with engine.engine.begin() as conn:
        await conn.run_sync(upgrade_to_0001)
        await conn.execute(
            text(
                "insert into sources (id, url, failures_in_row, occurrence_count, warnings, "
                "last_fetch_at) values ('old', '/old.ics', 3, 0, '[]', '2026-11-20 10:00:00')",
            )
        )
        await conn.execute(
            text(
                'insert into occurrences (key, source_id, uid, title, start, "end", all_day, '
                "description, location, status, categories, sequence, fingerprint) values "
                "('k1', 'old', 'u1@x', 'Kept', '2027-01-10T10:00:00Z', '2027-01-10T11:00:00Z', "
                "0, '', '', 'scheduled', '[]', 0, 'f')"
            )
        )
    await engine.close()

    store = await Store.open(url)
    state = await store.source_state("old")
    assert state.failures_in_row == 3 and state.health == "failing"
    assert state.failing_since == state.last_fetch_at
    (kept,) = await store.load_occurrences("old")
    assert (kept.title, kept.origin) == ("Kept", "")
    async with store.engine.connect() as conn:
        version = (await conn.execute(text("select version_num from alembic_version"))).scalar()
    assert version == head()
    await store.close()
