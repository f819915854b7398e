"""What keeps a teacher-cache build safe: a size check before writing, a lock that says whom it
waits for, files preallocated (a full disk is an error, not a SIGBUS), a SIGTERM that cleans up,
and content checks of an entry on its first open in a process."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from wavelab.core.errors import ConfigError
from wavelab.data.writer import free_bytes, gb

log = logging.getLogger("wavelab.wavgpt.data.teacher_cache")

WAIT_LOG_S = 60.0  # how often a job waiting for another's build says so again
STOPPED_GRACE_S = 2.0  # a holder stopped this long is reported instead of waited for
READ_BYTES = 1 << 24


def size_problem(n_bytes: int, directory: Path, max_gb: float) -> str | None:
    """Why ``n_bytes`` of cache cannot go into ``directory`` (None when they fit)."""
    free = free_bytes(directory)
    if n_bytes > max_gb * 1e9:
        return f"over data.teacher_cache_max_gb={max_gb:g} ({gb(free)} free on its disk)"
    if n_bytes > free:
        return f"more than the {gb(free)} free on its disk (budget {max_gb:g} GB)"
    return None


def too_big(n_bytes: int, what: str, directory: Path, problem: str) -> ConfigError:
    return ConfigError(
        f"the teacher cache for {what} would take {gb(n_bytes)} in {directory}: {problem}; set "
        "data.teacher_cache=false (the frozen encoder then runs every step), or use a smaller "
        "corpus or data.block_size"
    )


def _state(pid: int) -> str | None:
    """The process state letter from /proc (R, S, D, T, t, Z...), None when unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


@contextlib.contextmanager
def locked(path: Path, what: str):
    """An exclusive lock on ``path`` (holding the holder's pid), released on exit or death.

    A job that finds it taken says whose pid holds it and waits; a holder that stays stopped
    (Ctrl-Z, SIGSTOP) is a ConfigError that says how to go on, instead of a silent wait.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _wait(f, path, what)
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _wait(f, path: Path, what: str) -> None:
    f.seek(0)
    text = f.read().strip()
    pid = int(text) if text.isdigit() else None
    holder = f"pid {pid}" if pid else "another process"
    log.info("waiting for %s, which is building %s (lock file %s)", holder, what, path)
    stopped_since, said = None, time.monotonic()
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        now = time.monotonic()
        if pid and _state(pid) in ("T", "t"):
            stopped_since = stopped_since or now
            if now - stopped_since >= STOPPED_GRACE_S:
                raise ConfigError(
                    f"{what} is being built by pid {pid}, which is stopped (Ctrl-Z or SIGSTOP) "
                    f"and holds {path}: resume it (fg, or kill -CONT {pid}) or end it "
                    f"(kill {pid}), then rerun"
                )
        else:
            stopped_since = None
        if now - said >= WAIT_LOG_S:
            log.info("still waiting for %s (building %s; lock file %s)", holder, what, path)
            said = now
        time.sleep(0.2)


def preallocate(path: Path, n_bytes: int) -> None:
    """Creates ``path`` with ``n_bytes`` allocated on disk, so that filling it through a memmap
    never faults; a full disk is a ConfigError here, before any work."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, max(n_bytes, 1))
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ConfigError(
                f"disk full while allocating {path} ({gb(n_bytes)}; {gb(free_bytes(path))} "
                "free): nothing was cached; free some space, set paths.cache_dir to a larger "
                "disk, or data.teacher_cache=false"
            ) from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems without fallocate
            raise
    finally:
        os.close(fd)
    os.truncate(path, n_bytes)


class Terminated(Exception):
    """SIGTERM arrived during a build."""


@contextlib.contextmanager
def terminable(cleanup):
    """SIGTERM raises ``Terminated`` inside the block (main thread only); ``cleanup()`` removes
    what the build wrote, then the signal is delivered again to the previous handler (by
    default it ends the process at once, so the cleanup cannot wait for a ``finally``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, previous)
        cleanup()
        log.error("teacher cache build stopped by SIGTERM: its partial files are removed")
        if previous in (signal.SIG_DFL, None):
            os.kill(os.getpid(), signal.SIGTERM)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def file_digest(path: Path, dtype: str, check) -> str:
    """sha256 of ``path``; ``check(values)`` sees its values chunk by chunk on the way."""
    digest = hashlib.sha256()
    itemsize = np.dtype(dtype).itemsize
    with open(path, "rb") as f:
        while chunk := f.read(READ_BYTES - READ_BYTES % itemsize):
            digest.update(chunk)
            if check is not None:
                check(np.frombuffer(chunk, dtype=dtype))
    return digest.hexdigest()


def verify(entry: Path, meta: Mapping, vocab_size: int) -> None:
    """ConfigError naming the file unless every array matches its recorded sha256, ``h`` is
    finite and ``idx`` holds ids of the vocabulary."""
    hashes = meta.get("sha256") or {}
    for split, arrays in meta["arrays"].items():
        for name, spec in arrays.items():
            path = entry / f"{split}_{name}.bin"
            problem = []

            def check(values, name=name, problem=problem):
                if problem:
                    return
                if name == "h" and not np.isfinite(values).all():
                    problem.append("holds non-finite hidden states")
                elif name == "idx" and len(values) and int(values.max()) >= vocab_size:
                    problem.append(f"holds token ids >= the vocabulary's {vocab_size}")

            digest = file_digest(path, spec["dtype"], check)
            if not problem and digest != hashes.get(f"{split}_{name}"):
                problem.append("does not match its recorded sha256")
            if problem:
                raise ConfigError(
                    f"teacher cache {entry} is damaged: {path.name} {problem[0]}: delete that "
                    "directory and it is rebuilt"
                )


def expected_bytes(shapes: Mapping[str, Mapping[str, tuple]], dtypes: Mapping[str, str]) -> int:
    return sum(
        math.prod(shape) * np.dtype(dtypes[name]).itemsize
        for split in shapes.values()
        for name, shape in split.items()
    )
