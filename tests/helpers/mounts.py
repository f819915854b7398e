"""Read-only and full filesystems for the tests, made where this machine allows it.

As root a tmpfs is mounted (``mount -t tmpfs``, needs CAP_SYS_ADMIN); without root a read-only
dir is a ``chmod 555`` one, which a non-root process cannot write either. A test skips, saying
why, where neither is possible.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(path: Path, *options: str) -> bool:
    args = ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)]
    return subprocess.run(args, capture_output=True).returncode == 0


def fill_up(directory: Path) -> None:
    """Writes ``directory/filler`` until its filesystem is full."""
    with contextlib.suppress(OSError), open(directory / "filler", "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m", readonly: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path``; ``readonly`` remounts it read-only."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not _mount(path, f"size={size}"):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        if readonly:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[Path]:
    """A directory this process cannot write into."""
    if os.geteuid() != 0:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    with tmpfs(path, size="1m", readonly=True) as p:
        yield p


def make_read_only(mount_point: Path) -> None:
    """Remounts a :func:`tmpfs` read-only."""
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
