"""What a server's process group costs: CPU ticks and resident memory from /proc, the machine's
load around it, and the report of a memory trend over a long run (minute marks, growth between
them, a least-squares slope)."""
import os
import resource
import threading
import time
from pathlib import Path

import numpy as np

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RSS_MINUTE_MARKS = (1, 2, 5, 10, 20, 30)


def group_processes(pgid):
    """/proc entries of the live processes in process group `pgid` (those ending while we look skipped)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            yield entry, fields


def group_rss_kb(pgid):
    """Resident memory of every process in the process group, in kB (0 when none is left)."""
    total = 0
    for entry, _fields in group_processes(pgid):
        try:
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
    return total


def group_cpu_ticks(pgid):
    """utime + stime of every live process in the process group."""
    return sum(int(fields[11]) + int(fields[12]) for _entry, fields in group_processes(pgid))


def loadavg():
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine_busy_ticks():
    """CPU ticks spent by the whole machine outside idle and iowait (first line of /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class RssSampler(threading.Thread):
    """The process group's RSS every `every_s` seconds: samples of (seconds since start, kB)."""

    def __init__(self, pgid, every_s=1.0):
        super().__init__(name="rss-sampler", daemon=True)
        self.pgid, self.every_s = pgid, every_s
        self.samples = []
        self.stopped = threading.Event()
        self.started_at = time.monotonic()

    def run(self):
        while not self.stopped.is_set():
            self.samples.append((time.monotonic() - self.started_at, group_rss_kb(self.pgid)))
            self.stopped.wait(self.every_s)


def rss_at(samples, seconds):
    """kB of the last sample taken at or before `seconds` (None before the first)."""
    taken = [kb for t, kb in samples if t <= seconds]
    return taken[-1] if taken else None


def minute_marks(elapsed):
    """1, 2, 5, 10, 20, 30 and every 10 minutes after, as far as the run went."""
    marks = [m for m in RSS_MINUTE_MARKS if m * 60 <= elapsed]
    marks += list(range(RSS_MINUTE_MARKS[-1] + 10, int(elapsed // 60) + 1, 10))
    return marks


def growth_pct(before_kb, after_kb):
    return round(100.0 * (after_kb - before_kb) / before_kb, 2) if before_kb else None


def rss_trend(samples, elapsed):
    """RSS at minute marks, growth between them (the issue's checks: minute 10 -> 30 and minute 1
    -> end), growth in each 10-minute window, and a least-squares slope in % per 10 minutes."""
    marks = minute_marks(elapsed)
    at = {m: rss_at(samples, m * 60) for m in marks}
    end = samples[-1][1]
    growth = {}
    if 1 in at:
        growth["minute 1 -> end"] = growth_pct(at[1], end)
    if 10 in at:
        growth["minute 10 -> end"] = growth_pct(at[10], end)
    if 30 in at:
        growth["minute 10 -> 30"] = growth_pct(at[10], at[30])
    windows = [m for m in marks if m >= 10]
    per_10min = {f"minute {a} -> {b}": growth_pct(at[a], at[b]) for a, b in zip(windows, windows[1:])}
    fit_from = 60.0  # past start-up and calibration; a trend needs 5 minutes or more
    fitted = [(t, kb) for t, kb in samples if t >= fit_from and kb]
    slope = None
    if elapsed >= 300 and len(fitted) >= 10:
        t, kb = np.array(fitted, dtype=float).T
        per_second = np.polyfit(t, kb, 1)[0]
        slope = round(float(100.0 * per_second * 600 / kb[0]), 2)
    return {"rss_at_minute_mb": {str(m): round(kb / 1024, 1) for m, kb in at.items() if kb is not None},
            "growth_between_marks_pct": growth, "growth_per_10min_pct": per_10min,
            "fitted_growth_pct_per_10min": slope, "fitted_from_s": round(fit_from, 1)}


def rss_summary(samples, elapsed):
    """RSS after warm-up (first sample after 10% of the run), at the end, growth and peak, in MB,
    plus the trend over minute marks (rss_trend)."""
    if not samples or not any(kb for _, kb in samples):
        return None
    after_warmup = next((kb for t, kb in samples if t >= 0.1 * elapsed), samples[-1][1])
    end = samples[-1][1]
    return {"after_warmup_mb": round(after_warmup / 1024, 1), "end_mb": round(end / 1024, 1),
            "peak_mb": round(max(kb for _, kb in samples) / 1024, 1),
            "growth_pct": growth_pct(after_warmup, end),
            "samples": len(samples), **rss_trend(samples, elapsed)}
