"""What an operator sees when a command cannot start (issue 25): the installed `aggregator`
command run as a process, on a database that cannot be reached or opened and a published
folder that cannot be written. Every command says it in one line on stderr naming what and
where, exits 1, shows no traceback, and never prints a database's password."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from aggregator.store import said, shown
from tests.conftest import FEEDS, ROOT

AGGREGATOR = str(ROOT / ".venv" / "bin" / "aggregator")
PASSWORD = "pw-S3cret-9f2"
#: every command that opens the database, with the arguments it needs
COMMANDS = {
    "serve": ["serve", "--port", "0"],
    "schedule": ["schedule", "--port", "0"],
    "refresh": ["refresh"],
    "migrate": ["migrate"],
    "export": ["export", "--out", "{tmp}/site"],
    "prune": ["prune"],
    "copy": ["copy", "--to", "sqlite:///{tmp}/copy.db"],
}
#: the commands that write the published folder
WRITING = ["serve", "export"]


def closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (taken from the kernel, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "sources.yaml"
    config.write_text(
        "network:\n  name: Fejl\n  timezone: Europe/Copenhagen\nsources:\n"
        f"  - id: demo\n    name: Demo\n    url: {FEEDS / 'kulturhuset.ics'}\n",
        encoding="utf-8",
    )
    return config


def run(command: str | list[str], tmp_path: Path, database_url: str, published: Path | None = None):
    """The command (a name in COMMANDS, or its words) as an operator runs it, on
    `database_url` and `published`."""
    if isinstance(command, str):
        command = [word.format(tmp=tmp_path) for word in COMMANDS[command]]
    env = {
        **os.environ,
        "AGGREGATOR_DATABASE_URL": database_url,
        "AGGREGATOR_PUBLISHED": str(published or tmp_path / "published"),
    }
    return subprocess.run(
        [AGGREGATOR, *command, "--config", str(write_config(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=tmp_path,
    )


def said_in_one_line(done: subprocess.CompletedProcess, *named: str) -> str:
    """The one line on stderr; it names each of `named`, and no password anywhere."""
    everything = done.stdout + done.stderr
    assert done.returncode == 1, everything
    assert "Traceback" not in everything, everything
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert PASSWORD not in everything
    for name in named:
        assert name in done.stderr, (name, done.stderr)
    return done.stderr.strip()


# -- the database ------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unreachable_postgresql_is_one_line_without_its_password(command, tmp_path):
    port = closed_port()
    url = f"postgresql://aggregator:{PASSWORD}@127.0.0.1:{port}/aggregator"

    line = said_in_one_line(run(command, tmp_path, url), f"127.0.0.1:{port}", "aggregator:***@")

    assert "Connect call failed" in line or "refused" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_sqlite_file_in_a_missing_folder_is_one_line_naming_it(command, tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    done = run(command, tmp_path, f"sqlite:///{missing / 'aggregator.db'}")

    said_in_one_line(done, str(missing / "aggregator.db"))
    assert not missing.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_that_is_not_a_database_is_one_line_naming_it(command, tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database, only words " * 100, encoding="utf-8")

    said_in_one_line(run(command, tmp_path, f"sqlite:///{path}"), str(path), "not a database")


@pytest.mark.parametrize("command", ["migrate", "refresh", "serve"])
def test_a_sqlite_path_through_a_file_is_one_line_naming_it(command, tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    path = tmp_path / "file" / "aggregator.db"

    said_in_one_line(run(command, tmp_path, f"sqlite:///{path}"), str(path), "is not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
@pytest.mark.parametrize("command", ["migrate", "refresh"])
def test_a_sqlite_file_in_a_read_only_folder_is_one_line_naming_it(command, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        done = run(command, tmp_path, f"sqlite:///{folder / 'aggregator.db'}")
    finally:
        folder.chmod(0o755)
    said_in_one_line(done, str(folder / "aggregator.db"))


# -- the published folder ----------------------------------------------------------------


@pytest.mark.parametrize("command", WRITING)
def test_a_published_folder_that_is_a_file_is_one_line_naming_it(command, tmp_path):
    published = tmp_path / "published.txt"
    published.write_text("x", encoding="utf-8")

    done = run(command, tmp_path, f"sqlite:///{tmp_path / 'a.db'}", published)

    said_in_one_line(done, "published folder", str(published), "it is a file")


@pytest.mark.parametrize("command", WRITING)
def test_a_published_folder_beneath_a_file_is_one_line_naming_it(command, tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    published = tmp_path / "file" / "published"

    done = run(command, tmp_path, f"sqlite:///{tmp_path / 'a.db'}", published)

    said_in_one_line(done, "published folder", str(published))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
@pytest.mark.parametrize("command", WRITING)
def test_a_read_only_published_folder_is_one_line_naming_it(command, tmp_path):
    published = tmp_path / "published"
    published.mkdir()
    published.chmod(0o555)
    try:
        done = run(command, tmp_path, f"sqlite:///{tmp_path / 'a.db'}", published)
    finally:
        published.chmod(0o755)
    said_in_one_line(done, "published folder", str(published), "Permission denied")


# -- another application's database ------------------------------------------------------


def test_another_applications_alembic_database_is_refused_in_one_line_and_left_alone(tmp_path):
    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('1f2e3d4c5b6a')")
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.close()

    line = said_in_one_line(run("migrate", tmp_path, f"sqlite:///{path}"), str(path))

    assert "1f2e3d4c5b6a" in line and "not this aggregator's" in line
    with sqlite3.connect(path) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    conn.close()
    assert tables == {"alembic_version", "invoices"}


# -- passwords ---------------------------------------------------------------------------


def with_password(url: str) -> str:
    """The suite's server's URL with a password: the server trusts every local connection,
    so it takes any password, and the command goes all the way."""
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def test_migrate_says_which_database_without_its_password(tmp_path, postgres_server):
    name = postgres_server.create_database("pw")
    try:
        done = run("migrate", tmp_path, with_password(postgres_server.url(name, "postgresql")))
    finally:
        postgres_server.drop_database(name)

    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert f"postgres:***@127.0.0.1:{postgres_server.port}/{name} is up to date" in done.stdout


@pytest.mark.parametrize("command", ["migrate", "copy", "serve"])
def test_a_database_that_is_not_there_is_named_without_the_password(
    command, tmp_path, postgres_server
):
    url = with_password(postgres_server.url("no_such_database", "postgresql"))

    said_in_one_line(run(command, tmp_path, url), "postgres:***@", "no_such_database")


def test_a_copy_target_that_is_not_there_is_named_without_the_password(tmp_path, postgres_server):
    target = with_password(postgres_server.url("no_such_target", "postgresql"))
    done = run(["copy", "--to", target], tmp_path, f"sqlite:///{tmp_path / 'a.db'}")

    said_in_one_line(done, "cannot open the target database", "postgres:***@", "no_such_target")


def test_an_error_that_quotes_the_url_is_said_without_the_password():
    url = f"postgresql+asyncpg://u:{PASSWORD.replace('-', '%2D')}@db.example.org/x"
    error = ValueError(f"invalid DSN {url.replace('%2D', '-')}\n  (near the port)")

    words = said(error, url)

    assert PASSWORD not in words and "***" in words and "\n" not in words
    assert shown(url) == "postgresql+asyncpg://u:***@db.example.org/x"
    assert shown(f"u:{PASSWORD}@h/x") == "u:***@h/x"  # not a URL SQLAlchemy reads
