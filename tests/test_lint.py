"""The code stays as ruff wants it (lint and format), so reviews are about behaviour."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

RUFF = Path(sys.executable).parent / "ruff"


def test_ruff_finds_nothing():
    done = subprocess.run(
        [str(RUFF), "check", "aggregator", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_code_is_formatted():
    done = subprocess.run(
        [str(RUFF), "format", "--check", "aggregator", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
