"""The code stays as ruff wants it (lint and format), so reviews are about behaviour."""

from __future__ import annotations

import ast
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


# -- no module binds a top-level name twice ----------------------------------------------
#: the packages whose modules are read: a second `def` of a name silently replaces the
#: first, and ruff's F811 misses it when the first is used in between (web.py once defined
#: `_published` twice, and the first was dead code that looked alive)
LINTED = ("aggregator", "bench")


def top_level_rebindings(source: str) -> list[str]:
    """Each top-level name a module binds again after a def or class bound it: a second
    def/async def/class of it, or an assignment to it. Under `if`/`try` at the top level
    too (a name defined in both branches of an `if` is one definition, not two)."""
    defined: dict[str, int] = {}
    found: list[str] = []

    def bound(node: ast.stmt) -> list[str]:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return [node.name]
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
            targets = [node.target]
        names = []
        for target in targets:
            names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
        return names

    def visit(body: list[ast.stmt], seen: dict[str, int]) -> dict[str, int]:
        for node in body:
            if isinstance(node, ast.If):
                # either branch runs, not both: each starts from what was seen before it
                branches = [visit(node.body, dict(seen)), visit(node.orelse, dict(seen))]
                for branch in branches:
                    seen.update(branch)
                continue
            if isinstance(node, ast.Try):
                for part in (node.body, *(h.body for h in node.handlers), node.orelse):
                    seen.update(visit(part, dict(seen)))
                seen.update(visit(node.finalbody, seen))
                continue
            for name in bound(node):
                if name in seen:
                    found.append(f"{name} (line {seen[name]}, again at line {node.lineno})")
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    seen[name] = node.lineno
        return seen

    visit(ast.parse(source).body, defined)
    return found


def test_no_module_defines_a_top_level_name_twice():
    doubled = {
        str(path.relative_to(ROOT)): found
        for package in LINTED
        for path in sorted((ROOT / package).rglob("*.py"))
        if (found := top_level_rebindings(path.read_text(encoding="utf-8")))
    }
    assert not doubled, doubled


def test_the_lint_finds_a_function_defined_twice_and_a_class_rebound():
    source = """
def _published(request):
    return 1

class Store:
    pass

async def _published(request):
    return 2

Store = None
"""
    assert top_level_rebindings(source) == [
        "_published (line 2, again at line 8)",
        "Store (line 5, again at line 11)",
    ]


def test_the_lint_accepts_one_definition_per_branch_and_plain_reassignments():
    source = """
import sys
LIMIT = 1
LIMIT = 2
if sys.platform == "win32":
    def home():
        return "C:"
else:
    def home():
        return "/"
try:
    from fast import parse
except ImportError:
    def parse(text):
        return text
"""
    assert top_level_rebindings(source) == []
