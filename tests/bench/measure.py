"""Shared by the benchmarks: run one measurement in a fresh interpreter and read its own peak
memory and CPU time (``os.wait4``), so that one run's allocations never count for another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def run_measured(command: list[str], env: dict[str, str]) -> tuple[int, dict | None, str, os.struct_rusage]:
    """(exit code, the JSON object on stdout's last line or None, stderr, rusage) of ``command``."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=env, text=True)
        stdout = process.stdout.read()
        process.stdout.close()
        # Reaped here rather than by Popen.wait, which would not hand over the child's rusage.
        _, status, usage = os.wait4(process.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    lines = stdout.strip().splitlines()
    result = json.loads(lines[-1]) if code == 0 and lines else None
    return code, result, stderr, usage


def peak_rss_mb(usage: os.struct_rusage) -> float:
    return usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20  # kB on Linux


def own_peak_rss_mb() -> float:
    """This process's peak RSS, measured inside a child: VmHWM where there is /proc (ru_maxrss of a
    child started by fork + exec starts from the parent's peak on Linux, so it would measure the
    bench, not the child's work), else ru_maxrss."""
    from pathlib import Path

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return peak_rss_mb(resource.getrusage(resource.RUSAGE_SELF))


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(rows: list[tuple[str, ...]], load_before: float, started: float, noisy: str = "wall times are noisy") -> None:
    """The bench's rows as aligned columns, after a note when other work shared the CPU."""
    if load_before > 0.5:
        print(f"note: load average {load_before:.1f} on {os.cpu_count()} cores before the bench: other work shared "
              f"the CPU, so {noisy}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"(total bench time {time.perf_counter() - started:.0f} s)")
