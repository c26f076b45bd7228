"""config.load_config: sources.yaml + AGGREGATOR_* -> Settings, or a ConfigError naming
file and line.

Every file is written to tmp_path; every call passes `environ`, so the tests do not depend on
the environment they run in. Line numbers in the assertions count from the first line of the
YAML text as written here.
"""

from __future__ import annotations

import os
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator.cli import main
from aggregator.config import DEFAULT_DATABASE_URL, load_config, normalise_database_url
from aggregator.errors import ConfigError
from aggregator.model import SourceKind

ROOT = Path(__file__).resolve().parent.parent

NETWORK = """\
network:
  name: Testnetværket
"""


def write(tmp_path: Path, text: str, name: str = "sources.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    return str(caught.value)


# -- the demo ------------------------------------------------------------------------------


def test_the_demo_sources_yaml_loads() -> None:
    settings = load_config(ROOT / "sources.yaml", environ={})
    assert settings.network.name == "Netværket"
    assert settings.network.timezone == "Europe/Copenhagen"
    assert settings.network.languages == ("da", "en")
    assert [s.id for s in settings.sources] == [
        "kulturhuset",
        "groen-omstilling",
        "frivilligcentret",
        "ungdomsraadet",
        "globalt-netvaerk",
    ]


def test_the_demos_relative_file_urls_become_absolute_paths_that_exist() -> None:
    settings = load_config(ROOT / "sources.yaml", environ={})
    for source in settings.sources:
        path = Path(source.url)
        assert path.is_absolute(), source.url
        assert path.is_file(), source.url
        assert path.parent == ROOT / "examples" / "feeds"


def test_the_demos_durations_become_timedeltas() -> None:
    settings = load_config(ROOT / "sources.yaml", environ={})
    assert settings.network.refresh_interval == timedelta(minutes=30)
    assert settings.source("groen-omstilling").refresh_interval == timedelta(minutes=15)
    assert settings.source("kulturhuset").refresh_interval is None


def test_the_demo_uses_the_default_database_without_the_environment() -> None:
    settings = load_config(ROOT / "sources.yaml", environ={})
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///aggregator.db"


# -- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written, meant",
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("900", timedelta(seconds=900)),
        ("PT45M", timedelta(minutes=45)),
    ],
)
def test_durations_are_read_in_every_documented_form(
    tmp_path: Path, written: str, meant: timedelta
) -> None:
    path = write(tmp_path, NETWORK + f"  refresh_interval: {written}\n")
    assert load_config(path, environ={}).network.refresh_interval == meant


def test_a_minimal_file_gets_the_documented_defaults(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, NETWORK), environ={})
    assert settings.sources == ()
    assert settings.network.base_url == "http://127.0.0.1:8080"
    assert settings.limits.past_days == 90
    assert settings.limits.future_days == 730
    assert settings.limits.max_occurrences == 5000
    assert settings.limits.max_bytes == 20 * 1024 * 1024


def test_relative_paths_resolve_against_the_configs_folder_not_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write(
        folder,
        NETWORK
        + """\
sources:
  - id: a
    name: A
    url: feeds/a.ics
  - id: b
    name: B
    url: file:///srv/feeds/b.ics
  - id: c
    name: C
    url: webcal://c.example/events.ics
    kind: ical
""",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    a, b, c = load_config(path, environ={}).sources
    assert a.url == str((folder / "feeds" / "a.ics").resolve())
    assert a.kind is SourceKind.AUTO
    assert b.url == str(Path("/srv/feeds/b.ics").resolve())
    assert c.url == "webcal://c.example/events.ics"
    assert c.kind is SourceKind.ICAL


def test_the_base_url_loses_its_trailing_slash(tmp_path: Path) -> None:
    path = write(tmp_path, NETWORK + "  base_url: https://events.example.org/\n")
    assert load_config(path, environ={}).network.base_url == "https://events.example.org"


# -- mistakes: each names the file, the line and the key ------------------------------------


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
network:
  name: Test
\tdescription: indented with a tab
sources: []
""",
    )
    message = config_error(path)
    assert message.startswith(f"{path}:3: not valid YAML")


def test_an_unclosed_quote_names_the_line_where_the_quote_opens(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
network:
  name: Test
  description: "Alle arrangementer
sources: []
""",
    )
    message = config_error(path)
    assert message.startswith(str(path))
    # the file has 4 lines; PyYAML only notices at the end of the stream, after line 4
    assert f"{path}:3:" in message or "line 3" in message, message


def test_an_unknown_key_names_the_file_the_line_and_the_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        NETWORK
        + """\
sources:
  - id: a
    name: A
    url: a.ics
  - id: b
    name: B
    url: b.ics
    refresh_intervall: 15m
""",
    )
    message = config_error(path)
    assert message.startswith(f"{path}:10: sources[1].refresh_intervall: unknown key")


def test_an_unknown_top_level_key_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        NETWORK
        + """\
source:
  - id: a
""",
    )
    assert config_error(path).startswith(f"{path}:3: source: unknown key")


def test_a_source_without_url_names_the_line_of_that_source(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        NETWORK
        + """\
sources:
  - id: a
    name: A
    url: a.ics
  - id: b
    name: B
    kind: ical
""",
    )
    message = config_error(path)
    assert message.startswith(f"{path}:7: sources[1].url: required key is missing")


def test_a_file_without_network_name_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
network:
  description: no name
""",
    )
    assert config_error(path).startswith(f"{path}:1: network.name: required key is missing")


def test_an_unknown_network_time_zone_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, NETWORK + "  timezone: Europe/Copenhagn\n")
    message = config_error(path)
    assert message.startswith(f"{path}:3: network.timezone:")
    assert "unknown time zone 'Europe/Copenhagn'" in message


def test_an_unknown_source_time_zone_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        NETWORK
        + """\
sources:
  - id: a
    name: A
    url: a.ics
    timezone: Mars/Olympus
""",
    )
    message = config_error(path)
    assert message.startswith(f"{path}:7: sources[0].timezone:")
    assert "unknown time zone 'Mars/Olympus'" in message


@pytest.mark.parametrize("zone", ["Europe", "America"])
def test_a_time_zone_region_without_a_city_is_refused_like_any_unknown_zone(
    tmp_path: Path, zone: str
) -> None:
    # tzdata keeps regions as folders: ZoneInfo('Europe') raises IsADirectoryError, not
    # ZoneInfoNotFoundError, and that must still come out as a ConfigError with the line
    path = write(tmp_path, NETWORK + f"  timezone: {zone}\n")
    message = config_error(path)
    assert message.startswith(f"{path}:3: network.timezone:")
    assert f"unknown time zone {zone!r}" in message


def test_a_duplicate_source_id_names_the_line_of_the_second_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        NETWORK
        + """\
sources:
  - id: kulturhuset
    name: Kulturhuset
    url: a.ics
  - id: kulturhuset
    name: Kulturhuset igen
    url: b.ics
""",
    )
    message = config_error(path)
    assert message.startswith(
        f"{path}:7: sources[1].id: 'kulturhuset' is already used by sources[0]"
    )


def test_a_key_written_twice_in_one_mapping_is_refused(tmp_path: Path) -> None:
    # PyYAML keeps the last value silently; a copy-pasted source would read the wrong feed
    path = write(
        tmp_path,
        NETWORK
        + """\
sources:
  - id: a
    name: A
    url: a.ics
    url: b.ics
""",
    )
    message = config_error(path)
    assert message.startswith(f"{path}:7:"), message
    assert "url" in message


@pytest.mark.parametrize("url", ["ftp://files.example/a.ics", "mailto:events@example.org"])
def test_an_unsupported_url_scheme_is_refused(tmp_path: Path, url: str) -> None:
    path = write(
        tmp_path,
        NETWORK
        + f"""\
sources:
  - id: a
    name: A
    url: "{url}"
""",
    )
    message = config_error(path)
    assert message.startswith(f"{path}:6: sources[0].url:")
    assert "unsupported URL scheme" in message


def test_a_base_url_that_is_not_http_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, NETWORK + "  base_url: events.example.org\n")
    assert config_error(path).startswith(f"{path}:3: network.base_url:")


def test_a_source_id_that_is_not_a_slug_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        NETWORK
        + """\
sources:
  - id: Kulturhuset Nørrebro
    name: Kulturhuset
    url: a.ics
""",
    )
    assert config_error(path).startswith(f"{path}:4: sources[0].id: ")


def test_an_unknown_kind_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        NETWORK
        + """\
sources:
  - id: a
    name: A
    url: a.ics
    kind: ics
""",
    )
    assert config_error(path).startswith(f"{path}:7: sources[0].kind: ")


def test_a_limit_out_of_range_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        NETWORK
        + """\
limits:
  max_redirects: 50
""",
    )
    assert config_error(path).startswith(f"{path}:4: limits.max_redirects: ")


@pytest.mark.parametrize("interval", ["0m", "0", "-300", "-PT5M"])
def test_a_refresh_interval_that_is_not_positive_is_refused(tmp_path: Path, interval: str) -> None:
    # a zero interval makes APScheduler fetch every second; a negative one never waits
    path = write(
        tmp_path,
        NETWORK
        + f"""\
  refresh_interval: {interval}
sources:
  - id: a
    name: A
    url: a.ics
    refresh_interval: 15m
""",
    )
    assert config_error(path).startswith(f"{path}:3: network.refresh_interval: ")


def test_a_source_refresh_interval_of_zero_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        NETWORK
        + """\
sources:
  - id: a
    name: A
    url: a.ics
    refresh_interval: 0m
""",
    )
    assert config_error(path).startswith(f"{path}:7: sources[0].refresh_interval: ")


def test_every_mistake_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        NETWORK
        + """\
  timezone: Nowhere/Town
sources:
  - id: a
    nme: A
    url: a.ics
""",
    )
    lines = config_error(path).splitlines()
    assert f"{path}:3: network.timezone: " in "\n".join(lines)
    assert any(line.startswith(f"{path}:6: sources[0].nme: unknown key") for line in lines)
    assert any(
        line.startswith(f"{path}:5: sources[0].name: required key is missing") for line in lines
    )


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert config_error(path).startswith(f"{path}: cannot read the configuration")


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "- just\n- a list\n")
    assert config_error(path).startswith(f"{path}: expected a mapping")


def test_a_file_that_is_not_utf8_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_bytes("network:\n  name: Netværket\n".encode("latin-1"))
    message = config_error(path)
    assert message.startswith(str(path))
    assert "UTF-8" in message or "utf-8" in message


# -- the environment ------------------------------------------------------------------------


def test_aggregator_config_selects_the_file_when_no_path_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, NETWORK, name="network.yaml")
    settings = load_config(None, environ={"AGGREGATOR_CONFIG": str(path)})
    assert settings.network.name == "Testnetværket"
    assert settings.config_path == path


def test_a_path_given_wins_over_aggregator_config(tmp_path: Path) -> None:
    given = write(tmp_path, NETWORK, name="given.yaml")
    other = write(tmp_path, "network:\n  name: Other\n", name="other.yaml")
    settings = load_config(given, environ={"AGGREGATOR_CONFIG": str(other)})
    assert settings.config_path == given


def test_without_path_or_aggregator_config_sources_yaml_in_the_working_folder_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, NETWORK)
    monkeypatch.chdir(tmp_path)
    assert load_config(None, environ={}).network.name == "Testnetværket"


def test_aggregator_database_url_overrides_the_files_database_url(tmp_path: Path) -> None:
    path = write(tmp_path, NETWORK + "database_url: sqlite:///from-file.db\n")
    settings = load_config(path, environ={"AGGREGATOR_DATABASE_URL": "sqlite:///x.db"})
    assert settings.database_url == "sqlite+aiosqlite:///x.db"


def test_the_files_database_url_is_used_and_given_its_driver(tmp_path: Path) -> None:
    path = write(tmp_path, NETWORK + "database_url: sqlite:///from-file.db\n")
    assert load_config(path, environ={}).database_url == "sqlite+aiosqlite:///from-file.db"


@pytest.mark.parametrize(
    "given, used",
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite:////data/aggregator.db", "sqlite+aiosqlite:////data/aggregator.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u@db/events", "postgresql+asyncpg://u@db/events"),
        ("postgres://u@db/events", "postgresql+asyncpg://u@db/events"),
        ("postgresql+asyncpg://u@db/events", "postgresql+asyncpg://u@db/events"),
    ],
)
def test_plain_database_urls_get_their_async_driver(given: str, used: str) -> None:
    assert normalise_database_url(given) == used


# -- the command line -----------------------------------------------------------------------


def test_refresh_with_a_bad_config_exits_2_names_the_line_and_creates_no_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(
        tmp_path,
        NETWORK
        + """\
sources:
  - id: a
    name: A
    url: a.ics
  - id: b
    name: B
    url: b.ics
    refresh_intervall: 15m
""",
    )
    database = tmp_path / "aggregator.db"
    monkeypatch.setenv("AGGREGATOR_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.delenv("AGGREGATOR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)

    assert main(["refresh", "--config", str(bad)]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("configuration error:\n")
    assert f"{bad}:10: sources[1].refresh_intervall: unknown key" in err
    assert not database.exists()
    assert sorted(os.listdir(tmp_path)) == ["sources.yaml"]


def test_the_outputs_section_and_its_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        network: {name: N}
        outputs:
          calendar_past_days: 7
          calendar_future_days: 90
          folder: out/published
          access_log: false
        """,
    )
    outputs = load_config(path, environ={}).outputs
    assert (outputs.calendar_past_days, outputs.calendar_future_days) == (7, 90)
    assert outputs.folder == tmp_path / "out" / "published"  # next to sources.yaml
    assert outputs.access_log is False
    env = {"AGGREGATOR_PUBLISHED": str(tmp_path / "elsewhere"), "AGGREGATOR_ACCESS_LOG": "1"}
    outputs = load_config(path, environ=env).outputs
    assert outputs.folder == tmp_path / "elsewhere" and outputs.access_log is True
    assert "AGGREGATOR_ACCESS_LOG='maybe'" in config_error(path, {"AGGREGATOR_ACCESS_LOG": "maybe"})
    default = load_config(write(tmp_path, "network: {name: N}\n"), environ={}).outputs
    assert default.folder == tmp_path / "published" and default.access_log is True
    assert (default.calendar_past_days, default.calendar_future_days) == (30, 365)
    bad = write(tmp_path, "network: {name: N}\noutputs: {calendar_future_days: 0}\n")
    assert "outputs.calendar_future_days" in config_error(bad)
