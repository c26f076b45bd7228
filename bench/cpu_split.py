"""Who works in a cold refresh: CPU seconds of the main process (event loop, store, publish)
against the worker processes (parsing), sampled from /proc while `aggregator refresh` runs.

    .venv/bin/python bench/cpu_split.py OUT [--members 40] [--events 200] [--keep]

Generates OUT with bench/generate.py (unless OUT/sources.yaml exists), runs a cold
`aggregator refresh` on a fresh SQLite file in OUT, samples every process of its tree every
0.1 s (utime + stime from /proc/PID/stat; a process that ends keeps its last sample), and
prints the wall time, each role's CPU seconds, the share of the wall time both cores spent
parsing, and the bare `icalendar.Calendar.from_ical` of the same files (one process) for
scale. Linux only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import icalendar

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_and_command(pid: int) -> tuple[float, str, int] | None:
    """utime + stime in seconds, the command line and the parent of a process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK, command, int(fields[1])


def tree(root: int) -> dict[int, tuple[float, str, int]]:
    """Every live process under root (root included): CPU seconds, command and parent."""
    found: dict[int, tuple[float, str, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            seen = cpu_and_command(int(entry))
            if seen is not None:
                found[int(entry)] = seen
    mine, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            mine[pid] = found[pid]
            todo.extend(child for child, (_, _, parent) in found.items() if parent == pid)
    return mine


def role(pid: int, root: int, parent: int) -> str:
    """main (the event loop, the store, the publish); its own children are the fork server
    and the resource tracker; theirs, forked by the fork server, are the workers."""
    if pid == root:
        return "main"
    return "fork server etc." if parent == root else "workers"


def refresh(out: Path) -> tuple[float, dict[str, float], int]:
    """A cold refresh of out/sources.yaml, sampled; wall seconds, CPU per role, workers."""
    database = out / "cpu_split.db"
    database.unlink(missing_ok=True)
    env = {**os.environ, "AGGREGATOR_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    command = [str(ROOT / ".venv" / "bin" / "aggregator"), "refresh", "--config"]
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, str(out / "sources.yaml")], env=env, stdout=subprocess.DEVNULL
    )
    last: dict[int, tuple[float, str, int]] = {}
    while process.poll() is None:
        for pid, (seconds, cmd, parent) in tree(process.pid).items():
            # a process that ended keeps its last sample, and the command first seen
            last[pid] = (seconds, last.get(pid, (0, cmd, 0))[1] or cmd, parent)
        time.sleep(0.1)
    wall = time.perf_counter() - started
    split: dict[str, float] = {}
    for pid, (seconds, _, parent) in last.items():
        name = role(pid, process.pid, parent)
        split[name] = split.get(name, 0.0) + seconds
    workers = sum(
        1 for pid, (_, _, parent) in last.items() if role(pid, process.pid, parent) == "workers"
    )
    if os.environ.get("CPU_SPLIT_VERBOSE"):
        for pid, (seconds, cmd, parent) in sorted(last.items()):
            print(f"    {pid} (of {parent}) {seconds:6.2f} s {cmd[:90]}")
    return wall, split, workers


def bare(out: Path) -> float:
    """icalendar.Calendar.from_ical of every feed, one process (CPU seconds)."""
    started = time.process_time()
    for path in sorted((out / "feeds").glob("*.ics")):
        icalendar.Calendar.from_ical(path.read_bytes(), multiple=True)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--members", type=int, default=40)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    if not (args.out / "sources.yaml").exists():
        generate = [sys.executable, str(ROOT / "bench" / "generate.py"), str(args.out)]
        sizes = ["--members", str(args.members), "--events", str(args.events)]
        subprocess.run([*generate, *sizes], check=True)
    wall, split, workers = refresh(args.out)
    base = bare(args.out)
    total = sum(split.values())
    print(f"cold refresh: {wall:.1f} s wall, {total:.1f} s CPU in all")
    for name, seconds in sorted(split.items()):
        print(f"  {name:<12} {seconds:6.1f} s CPU ({seconds / wall:.0%} of the wall time)")
    busy = split.get("workers", 0) / 2 / wall
    print(f"  {workers} worker processes; the two cores parsing {busy:.0%} of the wall time")
    print(f"bare from_ical, one process: {base:.1f} s CPU; refresh/bare {wall / base:.2f}")


if __name__ == "__main__":
    main()
