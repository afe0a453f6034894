"""Memory limits as Cloud Run holds them, for the local Cloud Run's job tasks and revisions.

Cloud Run stops an instance whose memory passes its limit and reports it ("Memory limit of 4096 MiB exceeded with
4310 MiB used"); a local process has no limit unless one is held. Where cgroups would need privileges this
machine may not grant, a watchdog does it: it sums the resident memory of a process and its descendants every
``interval`` seconds (read from /proc) and SIGKILLs the whole tree past the limit, as the kernel's OOM killer does
to a container. Between two readings a process can overshoot by what it allocates in ``interval``; the limit is
still held, and the overrun is reported with the peak seen.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out, stack = [], [pid]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(_children(current))
    return out


def resident(pids: list[int]) -> int:
    """Bytes resident in memory for these processes (their RSS, summed)."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def peak_resident() -> int:
    """Bytes this process has held resident at most since it was started (the kernel's VmHWM). Not ``getrusage``'s
    ``ru_maxrss``: Linux carries that across ``execve``, so a child started by a process that had grown to 700 MB
    reports the parent's peak, not its own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line: not a Linux /proc")


def exceeded_message(limit: int, used: int) -> str:
    """Cloud Run's words for an instance stopped over its memory limit."""
    return (f"Memory limit of {limit // 2**20} MiB exceeded with {used // 2**20} MiB used. Consider increasing the "
            "memory limit (topology.yaml `memory`), see https://cloud.google.com/run/docs/configuring/memory-limits")


class Watchdog:
    """Holds one process tree to ``limit`` bytes until it ends; ``exceeded`` says whether it was killed for it."""

    def __init__(self, pid: int, limit: int, interval: float = 0.1) -> None:
        self.pid, self.limit, self.interval = pid, limit, interval
        self.peak = 0
        self.exceeded = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True, name=f"memory-{pid}")
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopped.wait(self.interval):
            pids = tree(self.pid)
            used = resident(pids)
            self.peak = max(self.peak, used)
            if used > self.limit:
                self.exceeded = True
                for pid in reversed(pids):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return
            if not Path(f"/proc/{self.pid}").exists():
                return

    def stop(self) -> None:
        self.stopped.set()

    @property
    def message(self) -> str:
        return exceeded_message(self.limit, self.peak)
