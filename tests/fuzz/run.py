"""`make fuzz`: tests/test_fuzz.py round after round for FUZZ_MINUTES (default 10).

Each round is a fresh pytest run under the `fuzz` hypothesis profile: FUZZ_EXAMPLES (default
1000) new random examples per test, the example database on, so a failure found once is tried
first in every later run. Stops at the first failure and shows it (the whole output goes to
test-artifacts/fuzz.log). Prints, per round and in all, how many examples each test ran.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "test-artifacts" / "fuzz.log"
#: "tests/test_fuzz.py::test_x:" then, per phase, "- 400 passing, 0 failing, and 7 invalid"
_TEST = re.compile(r"^tests/test_fuzz\.py::(\w+):", re.MULTILINE)
_PHASE = re.compile(r"- (\d+) passing, (\d+) failing, and (\d+) invalid")


def examples(output: str) -> Counter:
    """Examples each test ran (passing and failing, every phase), from hypothesis's statistics."""
    counts: Counter = Counter()
    parts = _TEST.split(output)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        for passing, failing, _ in _PHASE.findall(body):
            counts[name] += int(passing) + int(failing)
    return counts


def main() -> int:
    minutes = float(os.environ.get("FUZZ_MINUTES", "10"))
    env = {**os.environ, "HYPOTHESIS_PROFILE": "fuzz"}
    env.setdefault("FUZZ_EXAMPLES", "1000")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_fuzz.py",
        "--hypothesis-show-statistics",
        "-W",
        "ignore",
    ]
    LOG.parent.mkdir(exist_ok=True)
    began = time.monotonic()
    totals: Counter = Counter()
    rounds = 0
    print(f"fuzzing for {minutes:g} minutes, {env['FUZZ_EXAMPLES']} examples a test a round")
    while time.monotonic() - began < minutes * 60:
        rounds += 1
        start = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        LOG.write_text(done.stdout + done.stderr, encoding="utf-8")
        counts = examples(done.stdout)
        totals.update(counts)
        print(
            f"round {rounds}: {sum(counts.values()):,} examples in "
            f"{time.monotonic() - start:.0f} s",
            flush=True,
        )
        if done.returncode != 0:
            print(done.stdout[-30_000:], done.stderr[-5_000:], sep="\n")
            print(f"FAILED in round {rounds}; the whole output is in {LOG}")
            return 1
    print(f"{rounds} rounds, {time.monotonic() - began:.0f} s, {sum(totals.values()):,} examples:")
    for name, count in sorted(totals.items()):
        print(f"  {count:>9,}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
