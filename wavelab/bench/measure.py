"""A command run in a fresh process, with its wall time and peak RSS: the kernel's own
``ru_maxrss`` of the process and its waited-for children (``os.wait4``), while ``/proc`` is polled
so that a command outgrowing ``rss_limit_bytes`` is killed rather than left to run the machine
out of memory."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Measured:
    returncode: int
    seconds: float
    peak_rss_bytes: int
    over_limit: bool  # killed for passing the RSS limit: the peak is a lower bound
    output: str  # the end of stdout and stderr together


def rss_bytes(pid: int) -> int:
    """The process's resident set now (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run_measured(
    args: list[str], log_path: Path, rss_limit_bytes: int, env: dict | None = None
) -> Measured:
    """Runs ``args`` with stdout and stderr to ``log_path``; its time, peak RSS and output."""
    start = time.perf_counter()
    over = False
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if not over and rss_bytes(proc.pid) > rss_limit_bytes:
                over = True
                os.kill(proc.pid, signal.SIGKILL)
            time.sleep(POLL_SECONDS)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    seconds = time.perf_counter() - start
    output = log_path.read_bytes()[-4000:].decode("utf-8", "replace")
    peak = usage.ru_maxrss * 1024  # KiB on Linux
    return Measured(proc.returncode, seconds, peak, over, output)
