"""Files that are either absent, the old version or the new one: never half written.

Every write goes to a temp file beside the target (same filesystem, so the final rename is atomic
on POSIX; a temp file in /tmp would make it a copy), is fsync'ed, and is then ``os.replace``-d
over the target. Temp files are named ``.<name>.tmp<pid>``, so a later start can tell the ones a
killed process left behind (:func:`remove_stale_temp_files`) from those a live writer is filling.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_NAME = re.compile(r"^\..+\.tmp(\d+)$")


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """``with atomic_open(p) as f: f.write(...)``: ``p`` appears, complete, when the block ends.

    If the block raises, ``p`` is untouched and the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Deletes the temp files in ``directory`` whose writer process is gone; returns them."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = []
    for path in directory.iterdir():
        match = TEMP_NAME.match(path.name)
        if match and path.is_file() and not pid_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            stale.append(path)
    return stale
