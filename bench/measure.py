"""Wall time and peak memory of a child process and everything it starts (bench/scale.py).

    run_measured([...], env=..., cwd=...) -> Measured(wall, maxrss, tree_rss, tree_pss, ...)

Two views of memory, because neither alone is right for a program with worker processes:

- `maxrss`: the kernel's ru_maxrss from wait4 of the child: the largest resident set of the
  child or of any descendant it reaped (a maximum, not a sum; a grandchild that is never
  reaped by its parent, e.g. a pool worker left to the exit, is not counted);
- `tree_rss` / `tree_pss`: the largest sum over the child's process tree, sampled from /proc
  every 50 ms. RSS counts pages shared by forked workers once per process (an upper bound);
  PSS (smaps_rollup) splits them among the sharers (what the tree costs the machine).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024
#: how often the process tree is sampled
INTERVAL = 0.05


@dataclass(frozen=True)
class Measured:
    """One child process's run."""

    #: seconds from start to exit
    wall: float
    #: ru_maxrss of the child (and the descendants it reaped), in MB
    maxrss: float
    #: the largest sampled sum of RSS over the process tree, in MB
    tree_rss: float
    #: the same in PSS, in MB
    tree_pss: float
    returncode: int
    #: what it printed (stdout and stderr)
    output: str

    @property
    def peak(self) -> float:
        """The memory figure the targets are checked against: the largest of the views."""
        return max(self.maxrss, self.tree_rss)

    def last_line(self) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(root: int) -> list[int]:
    """root and every process under it."""
    tree, found, todo = children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += tree.get(pid, [])
    return found


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes; (0, 0) when it is gone."""
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        pss = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
                break
        return rss, pss
    except (OSError, IndexError, ValueError):
        return 0, 0


class TreeSampler(threading.Thread):
    """Samples the summed memory of a process tree until stopped; keeps the peaks."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_rss = 0
        self.peak_pss = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            sums = [memory(pid) for pid in descendants(self.root)]
            self.peak_rss = max(self.peak_rss, sum(r for r, _ in sums))
            self.peak_pss = max(self.peak_pss, sum(p for _, p in sums))
            self._done.wait(INTERVAL)

    def stop(self) -> None:
        self._done.set()
        self.join()


def run_measured(command: list[str], env: dict[str, str], cwd: Path) -> Measured:
    """Run command to its end; its wall time, its memory (both views) and what it printed."""
    log = cwd / "child.log"
    with log.open("wb") as out:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        sampler = TreeSampler(child.pid)
        sampler.start()
        # wait4, not Popen.wait: the child's rusage (ru_maxrss) comes with its exit
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        sampler.stop()
        child.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        wall=wall,
        maxrss=usage.ru_maxrss / 1024,
        tree_rss=sampler.peak_rss / MB,
        tree_pss=sampler.peak_pss / MB,
        returncode=child.returncode,
        output=log.read_text(errors="replace"),
    )
