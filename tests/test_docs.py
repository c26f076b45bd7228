"""The README documents every sources.yaml key, command, flag, endpoint and variable.

Like datasette's tests/test_docs.py: the lists come from the code (the pydantic models,
the argparse parser, the aiohttp router), so a new option without documentation fails here.
"""

from __future__ import annotations

import argparse
import enum
import re
import typing
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from aggregator import config
from aggregator.cli import build_parser
from aggregator.config import FileConfig, load_config
from aggregator.web import make_app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


# -- sources.yaml keys ---------------------------------------------------------------------


def _model_in(annotation: object) -> tuple[type[BaseModel], bool] | None:
    """The pydantic model an annotation holds, and whether it is a list of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, True
    return None


def _config_keys(model: type[BaseModel] = FileConfig, prefix: str = "") -> dict[str, FieldInfo]:
    """Every leaf key of sources.yaml, as the README writes it: network.name, sources[].id."""
    keys: dict[str, FieldInfo] = {}
    for name, field in model.model_fields.items():
        nested = _model_in(field.annotation)
        if nested is None:
            keys[prefix + name] = field
        else:
            sub, is_list = nested
            keys.update(_config_keys(sub, f"{prefix}{name}{'[]' if is_list else ''}."))
    return keys


CONFIG_KEYS = _config_keys()


def _config_table() -> dict[str, list[str]]:
    """The rows of the README's key table: key -> the cells after it."""
    rows = {}
    for line in README.splitlines():
        if match := re.match(r"^\| `([a-z_\[\].]+)` \|(.*)\|\s*$", line):
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split(" | ")]
    return rows


def _default_text(field: FieldInfo) -> str:
    """A field's default, written as the README's table writes it."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "—"
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f"`{seconds // size}{unit}`"
        return f"`{seconds}s`"
    if isinstance(value, bool):  # as YAML writes it
        return f"`{str(value).lower()}`"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def test_the_key_list_comes_from_every_config_model() -> None:
    # guards the walk itself: a refactor of the models must not make the other tests vacuous
    assert {"network.name", "sources[].id", "limits.max_bytes", "database_url"} <= set(CONFIG_KEYS)
    assert len(CONFIG_KEYS) >= 23


@pytest.mark.parametrize("key", sorted(CONFIG_KEYS))
def test_every_sources_yaml_key_is_documented(key: str) -> None:
    assert key in _config_table(), f"sources.yaml key {key!r} has no row in the README's table"


def test_the_readme_documents_no_sources_yaml_key_that_does_not_exist() -> None:
    assert set(_config_table()) - set(CONFIG_KEYS) == set()


@pytest.mark.parametrize("key", sorted(CONFIG_KEYS))
def test_every_documented_default_is_the_default_in_the_code(key: str) -> None:
    row = _config_table().get(key)
    assert row is not None, f"{key} is not documented"
    assert row[1] == _default_text(CONFIG_KEYS[key]), f"the README's default for {key}"


def test_every_aggregator_environment_variable_is_documented() -> None:
    names = set(re.findall(r"AGGREGATOR_[A-Z_]+", Path(config.__file__).read_text()))
    assert names >= {"AGGREGATOR_CONFIG", "AGGREGATOR_DATABASE_URL"}
    for name in sorted(names):
        assert f"`{name}`" in README, f"{name} is read by config.py but not in the README"


# -- the command line ----------------------------------------------------------------------


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


COMMANDS = _commands()


def _section(heading: str) -> str:
    """The README text under a heading, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}[ \t]*$", README, re.MULTILINE)
    assert match, f"the README has no heading {heading!r}"
    level = len(match.group(1))
    rest = README[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def _flags(command: str) -> list[argparse.Action]:
    return [a for a in COMMANDS[command]._actions if not isinstance(a, argparse._HelpAction)]


def test_the_command_list_comes_from_the_parser() -> None:
    assert {"serve", "refresh", "check", "export", "migrate"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_section_in_the_readme(command: str) -> None:
    assert _section(f"`aggregator {command}`").strip()


@pytest.mark.parametrize(
    "command, option",
    [
        (command, option)
        for command in sorted(COMMANDS)
        for action in _flags(command)
        for option in action.option_strings
    ],
)
def test_every_flag_is_documented_in_its_commands_section(command: str, option: str) -> None:
    section = _section(f"`aggregator {command}`")
    assert re.search(rf"{re.escape(option)}(?![\w-])", section), (
        f"`aggregator {command} {option}` is not in the README's section for {command}"
    )


@pytest.mark.parametrize(
    "command, name",
    [
        (command, action.dest.upper())
        for command in sorted(COMMANDS)
        for action in _flags(command)
        if not action.option_strings
    ],
)
def test_every_positional_argument_is_documented_in_its_commands_section(
    command: str, name: str
) -> None:
    assert re.search(rf"\b{name}\b", _section(f"`aggregator {command}`"))


@pytest.mark.parametrize(
    "command, choice",
    [
        (command, str(choice))
        for command in sorted(COMMANDS)
        for action in _flags(command)
        if action.choices
        for choice in action.choices
    ],
)
def test_every_choice_of_a_flag_is_documented(command: str, choice: str) -> None:
    assert choice in _section(f"`aggregator {command}`")


def test_every_make_target_the_readme_mentions_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.MULTILINE))
    mentioned = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert {"run", "test"} <= mentioned
    assert mentioned <= targets


# -- the web routes ------------------------------------------------------------------------


def _routes() -> set[str]:
    settings = load_config(ROOT / "sources.yaml", environ={})
    app = make_app(settings, scheduler=False)
    return {route.resource.canonical for route in app.router.routes() if route.resource is not None}


ROUTES = _routes()


def test_the_route_list_comes_from_the_app() -> None:
    assert {"/", "/calendar.ics", "/healthz"} <= ROUTES


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_every_route_is_documented(path: str) -> None:
    assert f"| `{path}` |" in _section("Endpoints"), f"{path} is not in the endpoints table"
