"""CPU seconds of this process and all its descendants while a block runs (psutil sampling).

Short-lived processes (pool workers, watchdog helpers) may exit before the block ends and are
not always reaped by this process, so ``RUSAGE_CHILDREN`` misses them: a thread samples every
process of the tree every ``poll`` seconds and keeps each one's latest (monotonic) CPU time.
What a process spends after its last sample (at most ``poll`` s) is not counted.
"""

from __future__ import annotations

import threading

import psutil


class TreeCpu:
    """``with TreeCpu() as t: ...``; then ``t.cpu_s`` (user + system, every process of the tree)."""

    def __init__(self, poll: float = 0.1) -> None:
        self.poll = poll
        self.cpu_s = 0.0
        self._seen: dict[tuple[int, float], float] = {}  # (pid, create time) -> cpu seconds at start/last
        self._base: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        try:
            procs = [me, *me.children(recursive=True)]
        except psutil.Error:
            procs = [me]
        for p in procs:
            try:
                key = (p.pid, p.create_time())
                t = p.cpu_times()
            except psutil.Error:
                continue
            self._seen[key] = t.user + t.system
            self._base.setdefault(key, self._seen[key] if p is me else 0.0)

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self._sample()

    def __enter__(self) -> TreeCpu:
        self._sample()  # this process's CPU so far is the baseline; children start at 0
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.cpu_s = sum(v - self._base.get(k, 0.0) for k, v in self._seen.items())


def tree_rss(pid: int, poll: float = 0.2) -> dict:
    """Follow process ``pid`` and its descendants until it exits, sampling resident memory every
    ``poll`` s. Returns MB figures: ``sum_peak_mb`` (the largest sum over all processes at one
    instant; shared pages count in each process that maps them), ``max_process_peak_mb`` (the
    largest peak of any one process), ``root_peak_mb`` and ``n_processes``."""
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return {"sum_peak_mb": 0.0, "max_process_peak_mb": 0.0, "root_peak_mb": 0.0, "n_processes": 0}
    peaks: dict[tuple[int, float], int] = {}
    sum_peak = 0
    while True:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        total = 0
        for p in procs:
            try:
                key, rss = (p.pid, p.create_time()), p.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            peaks[key] = max(peaks.get(key, 0), rss)
        sum_peak = max(sum_peak, total)
        try:
            if root.status() == psutil.STATUS_ZOMBIE or not root.is_running():
                break
        except psutil.Error:
            break
        threading.Event().wait(poll)
    mb = 1024 * 1024
    root_key = next((k for k in peaks if k[0] == pid), None)
    return {
        "sum_peak_mb": round(sum_peak / mb, 1),
        "max_process_peak_mb": round(max(peaks.values(), default=0) / mb, 1),
        "root_peak_mb": round(peaks.get(root_key, 0) / mb, 1) if root_key else 0.0,
        "n_processes": len(peaks),
    }
