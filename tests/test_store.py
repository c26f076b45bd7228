"""store/: migrations make the schema; data survives reopening; health lives on the row."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from aggregator.model import (
    Attempt,
    CachedPage,
    FetchOutcome,
    PageData,
    Problem,
    SourceUpdate,
    Validators,
)
from aggregator.publish import publish
from aggregator.store import MIGRATIONS, Store, _head
from aggregator.store.schema import metadata
from tests.conftest import make_settings, put_snapshot, source
from tests.test_merge import occ

#: every test here runs on SQLite and on PostgreSQL (conftest's `database`)
pytestmark = pytest.mark.usefixtures("database")


def migrate(connection, verb: str, revision: str) -> None:
    """Alembic's upgrade or downgrade to `revision`, on this connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    getattr(command, verb)(config, revision)


def head() -> str:
    """The newest migration's revision."""
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


def test_the_newest_revision_is_known_without_alembic():
    """Store.open skips Alembic when the schema is at the newest revision, which it finds by
    the migrations' file names: the same as Alembic's head."""
    assert _head() == head()


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
    assert state.validators.etag == '"1"' and state.warnings == (Problem.text("careful"),)
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
    assert [h.at for h in history] == [now, now - timedelta(days=2)]
    assert history[0].message == "same"


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
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = Store(create_async_engine(url))

    async with engine.engine.begin() as conn:
        await conn.run_sync(migrate, "upgrade", "0001")
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


# -- a source's warnings, a source taken out ----------------------------------------------


async def test_source_warnings_are_added_once_each_and_capped(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    await store.sync_sources(settings.sources)
    await put_snapshot(store, "alpha", [], now, warnings=("read one",))
    await store.add_source_warnings("alpha", ["an event could not be rendered", "read one"])
    await store.add_source_warnings("alpha", ["an event could not be rendered"])
    state = await store.source_state("alpha")
    assert state.warnings == (
        Problem.text("read one"),
        Problem.text("an event could not be rendered"),
    )
    await store.add_source_warnings("alpha", [f"warning {n}" for n in range(500)])
    warnings = (await store.source_state("alpha")).warnings
    assert len(warnings) == 200 and warnings[:2] == state.warnings
    await store.add_source_warnings("nobody", ["x"])  # a source not stored: nothing to do


async def test_a_source_taken_out_is_kept_and_comes_back_with_its_occurrences(store, tmp_path, now):
    a, b, c = (source(n, f"/{n}.ics") for n in ("alpha", "beta", "gamma"))
    await store.sync_sources([a, b, c], now=now)
    await put_snapshot(store, "gamma", [occ("gamma", "g@x")], now)
    assert await store.sync_sources([a, b], now=now)
    assert [o.source_id for o in await store.load_occurrences()] == []
    assert await store.load_occurrences("gamma") == []
    assert not await store.sync_sources([a, b], now=now)  # already out: nothing new
    assert await store.sync_sources([a, b, c], now=now)
    assert [o.uid for o in await store.load_occurrences()] == ["g@x"]


# -- a source's cycle: one read, one write; problems with codes ----------------------------

NO_END = Problem(
    "no-end", "event 'X' has no end time; shown as ending when it starts", (("title", "X"),)
)


async def test_apply_writes_the_attempt_the_snapshot_the_pages_and_the_debt_at_once(
    store, tmp_path, now
):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    await store.sync_sources(settings.sources)
    await publish(store, settings, now)
    page = CachedPage(PageData("https://x.org/p", text="Se her"), "fp", now, Validators('"p"'))
    read = Problem("read", "read 1 occurrences (1 added)", (("count", "1"), ("changes", "1 added")))
    await store.apply(
        SourceUpdate(
            "alpha",
            Attempt(
                at=now,
                outcome=FetchOutcome.UPDATED,
                message=read,
                next_check_at=now + timedelta(minutes=30),
                validators=Validators(etag='"1"'),
            ),
            (occ("alpha", "u@x"),),
            content_hash="h",
            warnings=(NO_END,),
            pages=(page,),
            changes={"added": 1},
        )
    )
    current = await store.source_for_update("alpha")
    assert [o.uid for o in await store.load_occurrences("alpha")] == ["u@x"]
    assert await store.kept_pages("alpha") == {"https://x.org/p": page}
    state = current.state
    assert (state.content_hash, state.warnings, state.occurrence_count) == ("h", (NO_END,), 1)
    assert state.validators == Validators(etag='"1"') and state.last_problem is None
    (fetch,) = await store.fetch_history("alpha")
    assert (fetch.outcome, fetch.message, fetch.problem) == (FetchOutcome.UPDATED, read.words, read)
    assert await store.publish_owed()


async def test_a_failure_keeps_its_problem_and_its_words(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    await store.sync_sources(settings.sources)
    error = Problem("timeout", "no complete answer within 2 s (timed out)", (("seconds", "2"),))
    await store.record_attempt(
        "alpha",
        Attempt(at=now, outcome="failed", message=error, error=error, next_check_at=now),
    )
    state = await store.source_state("alpha")
    assert (state.last_error, state.last_problem) == (error.words, error)
    (fetch,) = await store.fetch_history("alpha")
    assert (fetch.error, fetch.message, fetch.problem) == (error.words, error.words, error)


async def test_the_due_sources_are_the_never_fetched_and_those_whose_check_has_come(
    store, tmp_path, now
):
    sources = [source(n, f"/{n}.ics") for n in ("later", "new", "overdue", "due", "out")]
    await store.sync_sources(sources, now=now)
    for name, minutes in (("later", 1), ("overdue", -30), ("due", 0), ("out", -60)):
        at = now + timedelta(minutes=minutes)
        await store.record_attempt(
            name, Attempt(at=now, outcome="unchanged", message="same", next_check_at=at)
        )
    await store.sync_sources(sources[:4], now=now)  # "out" taken out of the configuration
    assert [s.id for s in await store.due_sources(now)] == ["due", "new", "overdue"]


async def test_a_database_made_by_version_0007_reads_its_words_as_problems(tmp_path, now):
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = Store(create_async_engine(url))

    async with engine.engine.begin() as conn:
        await conn.run_sync(migrate, "upgrade", "0007")
        await conn.execute(
            text(
                "insert into sources (id, url, failures_in_row, occurrence_count, warnings, "
                "last_error, pending_removals, unstable_uids) values ('old', '/old.ics', 1, 0, "
                "'[\"no end here\"]', 'HTTP 500', 0, 0)"
            )
        )
        await conn.execute(
            text(
                "insert into fetches (source_id, at, outcome, duration, bytes, error, message) "
                "values ('old', '2026-11-20 10:00:00', 'failed', 0, 0, 'HTTP 500', 'HTTP 500')"
            )
        )
    await engine.close()
    store = await Store.open(url)
    state = await store.source_state("old")
    assert state.warnings == (Problem.text("no end here"),)
    assert state.last_problem == Problem.text("HTTP 500")
    (fetch,) = await store.fetch_history("old")
    assert fetch.problem == Problem.text("HTTP 500")
    await store.close()


async def test_going_back_to_0007_leaves_the_warnings_as_the_words_it_reads(store, tmp_path, now):
    settings = make_settings(tmp_path, [source("alpha", "/a.ics")])
    await store.sync_sources(settings.sources)
    await put_snapshot(store, "alpha", [], now, warnings=(NO_END, "plain words"))
    url = str(store.engine.url)
    await store.close()

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(migrate, "downgrade", "0007")
        stored = (await conn.execute(text("select warnings from sources"))).scalar_one()
    await engine.dispose()
    # a JSON column: text on SQLite, decoded already by PostgreSQL's driver
    words = json.loads(stored) if isinstance(stored, str) else stored
    assert words == [NO_END.words, "plain words"]


async def test_a_file_mostly_free_pages_is_given_back_on_open(tmp_path):
    """A migration that rewrote the tables leaves their old pages free; the next open
    VACUUMs when over half the file is free, and keeps what is stored."""
    path = tmp_path / "freed.db"
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    await store.close()
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("create table old_copy (x text)")
        connection.executemany("insert into old_copy values (?)", [("x" * 1000,)] * 5000)
        connection.execute("insert into meta (key, value) values ('kept', 'yes')")
        connection.commit()
        connection.execute("drop table old_copy")
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    freed = path.stat().st_size
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    await store.close()
    assert path.stat().st_size < freed / 4
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("select value from meta where key = 'kept'").fetchone() == (
            "yes",
        )
