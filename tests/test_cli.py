"""cli.py: check, refresh, export, migrate, as a member organisation or an operator runs them."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import icalendar
import pytest

from aggregator.cli import Progress, main
from aggregator.model import FetchOutcome, Source
from aggregator.refresh import SourceReport
from tests.conftest import CORPUS, DATA, ROOT

CORPUS_FILES = sorted((CORPUS / "ics").glob("*.ics"))


def write_config(tmp_path: Path, sources: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(
        f"""
network:
  name: CLI-netværket
  timezone: Europe/Copenhagen
  base_url: http://cli.test
sources:
{sources}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def database(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", f"sqlite:///{path}")
    return path


def test_check_reads_every_corpus_file_without_a_traceback(capsys):
    assert len(CORPUS_FILES) > 70
    for path in CORPUS_FILES:
        code = main(["check", str(path), "--json"])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, path.name
        result = json.loads(out)
        if code == 0:
            assert set(result) == {"occurrences", "warnings"}, path.name
        else:  # not a calendar at all: said in words
            assert code == 1 and result["error"], path.name


def test_check_json_lists_occurrences_with_iso_times(capsys):
    assert main(["check", str(DATA / "series_overrides.ics"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    first = result["occurrences"][0]
    assert set(first) == {
        "uid",
        "recurrence_id",
        "title",
        "start",
        "end",
        "all_day",
        "status",
        "tzid",
        "found_by",
    }
    assert first["start"] == "2027-01-05T16:00:00Z" and first["tzid"] == "Europe/Copenhagen"
    assert [o["status"] for o in result["occurrences"]].count("cancelled") == 1


def test_check_reports_malformed_files_as_warnings(capsys):
    assert main(["check", str(DATA / "broken_components.ics")]) == 0
    out = capsys.readouterr().out
    assert "2 occurrences" in out
    assert "Impossible date" in out


def test_refresh_prints_a_line_per_source_and_exports(tmp_path, database, capsys):
    config = write_config(
        tmp_path,
        f"""
  - id: demo
    name: Demo
    url: {ROOT / "examples/feeds/kulturhuset.ics"}
  - id: missing
    name: Missing
    url: {tmp_path / "missing.ics"}
""",
    )
    assert main(["refresh", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "demo: updated" in out
    assert "missing: FAILED" in out and "missing.ics" in out
    assert database.exists()
    out_dir = tmp_path / "site"
    assert main(["export", "--config", str(config), "--out", str(out_dir)]) == 0
    calendar = icalendar.Calendar.from_ical((out_dir / "calendar.ics").read_bytes())
    assert len(calendar.walk("VEVENT")) >= 30
    assert json.loads((out_dir / "events.json").read_text())["events"]
    assert (out_dir / "feed.atom").read_bytes().startswith(b"<?xml")


def test_refresh_exits_non_zero_when_every_source_failed(tmp_path, database, capsys):
    config = write_config(
        tmp_path,
        f"""
  - id: missing
    name: Missing
    url: {tmp_path / "missing.ics"}
""",
    )
    assert main(["refresh", "--config", str(config)]) == 1
    assert "0 of 1 sources read" in capsys.readouterr().out


def test_migrate_creates_the_schema(tmp_path, database, capsys):
    config = write_config(tmp_path, "  []")
    assert main(["migrate", "--config", str(config)]) == 0
    assert database.exists()
    assert main(["migrate", "--config", str(config)]) == 0  # idempotent


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "aggregator", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "refresh" in done.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_refresh_progress_is_a_status_line_in_a_terminal_and_plain_lines_otherwise():
    a, b = Source(id="a", name="A", url="/a.ics"), Source(id="b", name="B", url="/b.ics")
    for stream in (_Terminal(), io.StringIO()):
        progress = Progress(2, stream)
        progress.started(a)
        progress.started(b)
        progress.done(SourceReport("a", FetchOutcome.UPDATED, 3))
        progress.done(SourceReport("b", FetchOutcome.FAILED, 0, error="HTTP 500"))
        progress.close()
        text = stream.getvalue()
        if stream.isatty():
            assert "[0/2] reading a, b" in text and "[1/2] reading b" in text
            assert text.endswith("\r\x1b[2K")
        else:
            assert "\r" not in text and "reading" not in text
            assert text.splitlines()[0].startswith("[1/2] a: updated")
            assert text.splitlines()[1] == "[2/2] b: FAILED - HTTP 500 (last good events kept)"


def test_refresh_of_named_sources_reads_only_them_and_publishes(tmp_path, database, capsys):
    config = write_config(
        tmp_path,
        f"""
  - id: demo
    name: Demo
    url: {ROOT / "examples/feeds/kulturhuset.ics"}
  - id: other
    name: Other
    url: {tmp_path / "missing.ics"}
""",
    )
    assert main(["refresh", "--config", str(config), "demo"]) == 0
    out = capsys.readouterr().out
    assert "demo: updated" in out and "other" not in out
    assert "1 of 1 sources read" in out and "published changes" in out
    out_dir = tmp_path / "site"
    assert main(["export", "--config", str(config), "--out", str(out_dir)]) == 0
    assert json.loads((out_dir / "events.json").read_text())["events"]


def test_refresh_of_an_unknown_source_says_which_there_are_and_reads_nothing(
    tmp_path, database, capsys
):
    config = write_config(
        tmp_path,
        f"""
  - id: demo
    name: Demo
    url: {ROOT / "examples/feeds/kulturhuset.ics"}
""",
    )
    assert main(["refresh", "--config", str(config), "demo", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no source 'nope'" in err and "the sources are: demo" in err
    assert not database.exists()
