"""Peak memory of a benchmark's whole process tree (this process, Ray's GCS, raylet and
workers, Flower's processes): the sum of every process's PSS, sampled in a thread, so shared
pages count once."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[-1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_pss_bytes(root: int) -> tuple[int, int]:
    """(sum of PSS, number of processes) of `root` and its descendants."""
    kids = _children()
    todo, seen, total = [root], set(), 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo += kids.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total, len(seen)


class PeakMemory(threading.Thread):
    def __init__(self, interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.peak = 0
        self.peak_procs = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            total, procs = tree_pss_bytes(os.getpid())
            if total > self.peak:
                self.peak, self.peak_procs = total, procs
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
