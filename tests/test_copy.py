"""store/copy.py: `aggregator copy --to URL` moves a refreshed network's database from SQLite into
PostgreSQL and back, and the copy reads and goes on as the source did."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import select, text

from aggregator.cli import copy_command
from aggregator.model import Settings
from aggregator.refresh import refresh_all
from aggregator.store import Store
from aggregator.store.copy import copy_database
from aggregator.store.schema import metadata, texts
from tests.conftest import FEEDS, NOW, ROOT, demo_sources, fetching, make_settings

#: the columns that name a text; texts.refs counts them (migration 0010)
TEXT_COLUMNS = [
    ("occurrences", "text_id"),
    ("events", "text_id"),
    ("changes", "before_text"),
    ("changes", "after_text"),
]


@pytest.fixture
def postgres(postgres_server):
    """Empty PostgreSQL databases at the newest schema, as many as the test asks for."""
    taken: list[str] = []

    def url(driver: bool = True) -> str:
        name = postgres_server.take()
        taken.append(name)
        return postgres_server.url(name, "postgresql+asyncpg" if driver else "postgresql")

    yield url
    for name in taken:
        postgres_server.give_back(name)


def sqlite_url(tmp_path: Path, name: str) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}"


def demo_network(tmp_path: Path, database_url: str) -> Settings:
    """The demo network, its feeds copied into the test's folder so that the test can
    change them."""
    feeds = tmp_path / "feeds"
    if not feeds.exists():
        shutil.copytree(FEEDS, feeds)
    sources = [replace(s, url=str(feeds / Path(s.url).name)) for s in demo_sources()]
    return replace(make_settings(tmp_path, sources), database_url=database_url)


async def refresh(settings: Settings, when) -> None:
    store = await Store.open(settings.database_url)
    try:
        async with fetching(settings) as fetcher:
            await refresh_all(store, fetcher, settings, when)
    finally:
        await store.close()


def edit_feed(tmp_path: Path, name: str, old: str, new: str) -> None:
    path = tmp_path / "feeds" / name
    body = path.read_text(encoding="utf-8")
    assert old in body
    path.write_text(body.replace(old, new), encoding="utf-8")


async def filled(tmp_path: Path, database_url: str) -> Settings:
    """A network as it is after a while: read, a description changed (changes naming texts
    before and after), one feed gone (an error kept as a problem), a filter saved."""
    settings = demo_network(tmp_path, database_url)
    await refresh(settings, NOW)
    edit_feed(tmp_path, "kulturhuset.ics", "Hver torsdag laver", "Hver onsdag laver")
    (tmp_path / "feeds" / "floating.ics").unlink()
    await refresh(settings, NOW + timedelta(hours=1))
    store = await Store.open(database_url)
    await store.save_filter("category=kultur", NOW)
    await store.close()
    return settings


async def table_rows(url: str) -> dict[str, list[tuple]]:
    """Every table's rows, read with the store's own column types (aware datetimes,
    unpacked JSON, bytes), sorted here: the two databases sort text differently."""
    store = await Store.open(url)
    try:
        async with store.engine.connect() as conn:
            return {
                table.name: sorted(
                    (tuple(row) for row in await conn.execute(select(table))), key=repr
                )
                for table in metadata.sorted_tables
            }
    finally:
        await store.close()


async def counted_refs(url: str) -> dict[int, int]:
    """How many rows name each text, counted from the four columns."""
    store = await Store.open(url)
    try:
        async with store.engine.connect() as conn:
            counts: dict[int, int] = {}
            for table, column in TEXT_COLUMNS:
                found = await conn.execute(
                    text(
                        f"SELECT {column}, COUNT(*) FROM {table}"
                        f" WHERE {column} IS NOT NULL GROUP BY {column}"
                    )
                )
                for text_id, n in found:
                    counts[text_id] = counts.get(text_id, 0) + n
            return counts
    finally:
        await store.close()


async def stored_refs(url: str) -> dict[int, int]:
    store = await Store.open(url)
    try:
        async with store.engine.connect() as conn:
            return dict((await conn.execute(select(texts.c.id, texts.c.refs))).all())
    finally:
        await store.close()


async def what_it_shows(url: str, source_ids) -> dict:
    """What the outputs and the page read from the store."""
    store = await Store.open(url)
    try:
        return {
            "published": sorted(await store.published_events(), key=lambda e: e.event.id),
            "occurrences": {
                i: sorted(await store.load_occurrences(i), key=lambda o: o.key) for i in source_ids
            },
            "history": await store.event_history(),
            "data_version": await store.data_version(),
            "states": await store.source_states(),
        }
    finally:
        await store.close()


DIRECTIONS = ["sqlite->postgresql", "postgresql->sqlite"]


def urls(direction: str, tmp_path: Path, postgres) -> tuple[str, str]:
    if direction == "sqlite->postgresql":
        return sqlite_url(tmp_path, "source"), postgres()
    return postgres(), sqlite_url(tmp_path, "target")


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_a_copy_holds_every_row_and_reads_as_the_source(
    direction, tmp_path, postgres, capsys
):
    source_url, target_url = urls(direction, tmp_path, postgres)
    settings = await filled(tmp_path, source_url)

    assert await copy_command(settings, target_url) == 0

    source_rows, target_rows = await table_rows(source_url), await table_rows(target_url)
    assert target_rows == source_rows
    assert all(source_rows[name] for name in ("changes", "texts", "fetches", "saved_filters"))
    ids = [s.id for s in settings.sources]
    shown = await what_it_shows(source_url, ids)
    assert await what_it_shows(target_url, ids) == shown
    assert shown["published"] and shown["history"] and shown["data_version"] > 0
    out = capsys.readouterr().out
    for name, rows in source_rows.items():
        assert f"{name}: {len(rows)} rows" in out


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_text_counts_are_copied_not_counted_twice(direction, tmp_path, postgres):
    source_url, target_url = urls(direction, tmp_path, postgres)
    await filled(tmp_path, source_url)

    await copy_database(source_url, target_url, say=lambda line: None)

    refs = await stored_refs(target_url)
    assert refs == await stored_refs(source_url)
    assert {i: n for i, n in refs.items() if n} == await counted_refs(target_url)
    assert any(n > 1 for n in refs.values())


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_the_copy_goes_on_refreshing_and_publishing(direction, tmp_path, postgres):
    source_url, target_url = urls(direction, tmp_path, postgres)
    settings = await filled(tmp_path, source_url)
    await copy_database(source_url, target_url, say=lambda line: None)
    before = await table_rows(target_url)

    # new fetches and changes take new ids: on PostgreSQL from sequences moved past the
    # copied ones
    moved = replace(settings, database_url=target_url)
    edit_feed(tmp_path, "kulturhuset.ics", "Hver onsdag laver", "Hver fredag laver")
    await refresh(moved, NOW + timedelta(hours=2))

    after = await table_rows(target_url)
    assert len(after["fetches"]) == len(before["fetches"]) + len(settings.sources)
    assert len(after["changes"]) > len(before["changes"])
    ids = [s.id for s in settings.sources]
    shown = await what_it_shows(target_url, ids)
    descriptions = {e.event.description for e in shown["published"]}
    assert any("Hver fredag laver" in d for d in descriptions)
    assert shown["data_version"] > (await what_it_shows(source_url, ids))["data_version"]
    refs = await stored_refs(target_url)
    assert {i: n for i, n in refs.items() if n} == await counted_refs(target_url)


async def test_the_command_line_copies_sqlite_into_postgresql(tmp_path, postgres):
    source_url = sqlite_url(tmp_path, "source")
    settings = await filled(tmp_path, source_url)
    config = tmp_path / "sources.yaml"
    config.write_text("network:\n  name: Kopi\n  timezone: Europe/Copenhagen\nsources: []\n")
    target_url = postgres()
    plain_target = target_url.replace("postgresql+asyncpg://", "postgresql://")

    done = subprocess.run(
        [str(ROOT / ".venv/bin/aggregator"), "copy", "--to", plain_target, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "AGGREGATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'source.db'}"},
    )

    assert done.returncode == 0, done.stderr
    assert "occurrences: copied" in done.stdout and "events: " in done.stdout
    assert done.stdout.splitlines()[-1].startswith("copied ")
    assert await table_rows(target_url) == await table_rows(settings.database_url)


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
async def test_a_target_that_holds_rows_is_refused_and_left_unchanged(
    kind, tmp_path, postgres, capsys
):
    source_url = sqlite_url(tmp_path, "source") if kind == "postgresql" else postgres()
    target_url = postgres() if kind == "postgresql" else sqlite_url(tmp_path, "target")
    settings = await filled(tmp_path, source_url)
    # an installation of its own there, a little different from the source
    await refresh(replace(settings, sources=settings.sources[:2], database_url=target_url), NOW)
    held = await table_rows(target_url)
    capsys.readouterr()

    assert await copy_command(settings, target_url) == 1

    err = capsys.readouterr().err
    shown = target_url.split("://", 1)[1]
    assert err.startswith("copy refused:")
    assert "already holds rows" in err and shown in err and "sources" in err
    assert await table_rows(target_url) == held


async def test_a_sqlite_file_is_refused_as_a_copy_of_itself(tmp_path, capsys):
    source_url = sqlite_url(tmp_path, "source")
    settings = await filled(tmp_path, source_url)
    rows = await table_rows(source_url)
    same = f"sqlite:///{tmp_path / 'sub' / '..' / 'source.db'}"
    (tmp_path / "sub").mkdir()

    assert await copy_command(settings, same) == 1

    assert "is the source database itself" in capsys.readouterr().err
    assert await table_rows(source_url) == rows


async def test_a_postgresql_database_is_refused_as_a_copy_of_itself(tmp_path, postgres, capsys):
    source_url = postgres()
    settings = await filled(tmp_path, source_url)
    # the same database spelled otherwise: no driver, localhost, the default port's number
    same = source_url.replace("postgresql+asyncpg://", "postgresql://").replace(
        "127.0.0.1", "localhost"
    )

    assert await copy_command(settings, same) == 1

    assert "is the source database itself" in capsys.readouterr().err


async def test_a_copy_that_fails_midway_leaves_the_target_empty(tmp_path, postgres, capsys):
    source_url = sqlite_url(tmp_path, "source")
    settings = await filled(tmp_path, source_url)
    # SQLite keeps a NUL character in text; PostgreSQL refuses it. Occurrences are copied
    # after most tables, so by then much was written into the target.
    store = await Store.open(source_url)
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE occurrences SET title = title || char(0)"))
    await store.close()
    target_url = postgres()
    capsys.readouterr()

    assert await copy_command(settings, target_url) == 1

    err = capsys.readouterr().err
    assert err.startswith("copy failed:")
    assert "at table occurrences" in err and target_url.split("://", 1)[1] in err
    assert "0x00" in err and "INSERT INTO" not in err  # the database's words, not the batch
    assert not any((await table_rows(target_url)).values())
    assert await copy_command(settings, sqlite_url(tmp_path, "target")) == 0


async def test_a_target_that_cannot_be_opened_is_named(tmp_path, postgres_server, capsys):
    settings = await filled(tmp_path, sqlite_url(tmp_path, "source"))
    missing = postgres_server.url("no_such_database", "postgresql")

    assert await copy_command(settings, missing) == 1

    err = capsys.readouterr().err
    assert "cannot open the target database" in err and "no_such_database" in err


# -- another application's database (issue 25) -------------------------------------------


@pytest.fixture
def foreign(tmp_path, postgres_server):
    """Another application's database, SQLite or PostgreSQL: its tables (one row in each),
    and with `revision` Alembic's table at a revision that is not ours."""
    made: list[str] = []

    async def make(kind: str, revision: str | None) -> tuple[str, Callable]:
        statements = ["CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)"]
        statements.append("INSERT INTO invoices VALUES (1, 250)")
        if revision:
            statements.append("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
            statements.append(f"INSERT INTO alembic_version VALUES ('{revision}')")
        if kind == "sqlite":
            path = tmp_path / "theirs.db"
            with sqlite3.connect(path) as conn:
                for statement in statements:
                    conn.execute(statement)
            conn.close()
            return f"sqlite:///{path}", partial(_sqlite_tables, path)
        name = postgres_server.create_database("theirs")
        made.append(name)
        conn = await postgres_server.connect(name)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()
        return postgres_server.url(name, "postgresql"), partial(
            _postgres_tables, postgres_server, name
        )

    yield make
    for name in made:
        postgres_server.drop_database(name)


async def _sqlite_tables(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {n: conn.execute(f"SELECT COUNT(*) FROM {n}").fetchone()[0] for n in names}
    conn.close()
    return counts


async def _postgres_tables(server, name: str) -> dict[str, int]:
    conn = await server.connect(name)
    try:
        names = [
            r[0]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        return {n: await conn.fetchval(f"SELECT COUNT(*) FROM {n}") for n in names}
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("revision", ["4f2a9c1e7b3d", None], ids=["alembic", "no-alembic"])
async def test_another_applications_database_is_refused_in_one_line_and_left_alone(
    kind, revision, tmp_path, foreign, capsys
):
    settings = await filled(tmp_path, sqlite_url(tmp_path, "source"))
    target_url, tables = await foreign(kind, revision)
    before = await tables()
    capsys.readouterr()

    assert await copy_command(settings, target_url) == 1

    err = capsys.readouterr().err
    assert err.startswith("copy refused:") and len(err.strip().splitlines()) == 1, err
    assert "another application's database" in err and "invoices" in err
    if revision:
        assert f"Alembic revision {revision}" in err
    assert await tables() == before


async def test_the_command_refuses_another_applications_database_without_a_traceback(
    tmp_path, foreign
):
    await filled(tmp_path, sqlite_url(tmp_path, "source"))
    target_url, tables = await foreign("sqlite", "4f2a9c1e7b3d")
    config = tmp_path / "sources.yaml"
    config.write_text("network:\n  name: Kopi\n  timezone: Europe/Copenhagen\nsources: []\n")

    done = subprocess.run(
        [str(ROOT / ".venv/bin/aggregator"), "copy", "--to", target_url, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "AGGREGATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'source.db'}"},
    )

    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("copy refused:") and done.stderr.count("\n") == 1
    assert set(await tables()) == {"invoices", "alembic_version"}


async def test_a_copy_into_a_database_with_a_password_never_prints_it(tmp_path, postgres, capsys):
    settings = await filled(tmp_path, sqlite_url(tmp_path, "source"))
    target_url = postgres().replace("postgres@", "postgres:pw-S3cret@", 1)  # the server trusts

    assert await copy_command(settings, target_url) == 0

    out, err = capsys.readouterr()
    assert "pw-S3cret" not in out + err
    assert "postgres:***@" in out and out.splitlines()[-1].startswith("copied ")
