"""Files a user names on the command line: what they are, checked before they are read or written.

An input must be a regular file: a directory, a FIFO (whose read blocks until someone writes)
or a device (``/dev/zero`` never ends) exists but is not one, and is named as what it is. An
output must be a path to create, or a regular file to replace, in a directory this process can
write; it is never one of the files the command reads (``protect``), and an existing file that
``replaceable`` does not recognise as the command's own output is replaced only on request. It
is written through :mod:`wavelab.core.atomic`, so a failed write leaves the old file.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from wavelab.core import atomic
from wavelab.core.errors import ConfigError


def kind_of(path: Path) -> str:
    """What ``path`` is, in words: "a regular file", "a directory", "a FIFO", ..."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({e.strerror})"
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def input_file(value: str, key: str) -> Path:
    """``value`` as an existing regular file; ConfigError naming ``key`` and what it is else."""
    path = Path(value).expanduser()
    kind = kind_of(path)
    if kind == "missing":
        raise ConfigError(f"{key}={value!r} is invalid: no such file")
    if kind != "a regular file":
        raise ConfigError(f"{key}={value!r} is invalid: it is {kind}; it must be a regular file")
    return path


def output_file(
    value: str,
    key: str,
    protect: Iterable[str | Path] = (),
    replaceable: Callable[[Path], bool] = lambda _: True,
    overwrite: bool = False,
) -> Path:
    """``value`` as a file this command may write; ConfigError naming ``key`` otherwise."""
    path = Path(value).expanduser()
    shown = f"{key}={value!r}"
    kind = kind_of(path)
    if kind == "missing":
        parent = path.parent
        if not parent.is_dir():
            raise ConfigError(f"{shown} is invalid: its directory {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise ConfigError(f"{shown} cannot be written: its directory {parent} is read-only")
        return path
    if kind != "a regular file":
        raise ConfigError(f"{shown} is invalid: it is {kind}; give a path to a regular file")
    for other in protect:
        if Path(other).exists() and os.path.samefile(path, other):
            raise ConfigError(f"{shown} is refused: it is the input file {other}")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"{shown} cannot be written: its directory {path.parent} is read-only")
    if not overwrite and not replaceable(path):
        raise ConfigError(
            f"{shown} is refused: the file exists and is not an output of this command; "
            "give another path, or overwrite=true to replace it"
        )
    return path


def write_output(path: Path, data: bytes, key: str) -> None:
    """``data`` into ``path`` atomically; ConfigError with the reason (disk full, read-only)."""
    try:
        atomic.write_bytes(path, data)
    except OSError as e:
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise ConfigError(
            f"{key}={str(path)!r} could not be written: {why}; the path is as it was before"
        ) from None


def output_dir(
    value: str, key: str, protect: Iterable[str | Path] = (), overwrite: bool = False
) -> Path:
    """``value`` as a directory this command may fill: new, empty, or non-empty with
    ``overwrite``; never one holding the working dir or a ``protect`` path (an input), which
    replacing it would delete. ConfigError naming ``key`` otherwise."""
    path = Path(value).expanduser().resolve()
    shown = f"{key}={value!r}"
    kind = kind_of(path)
    if kind not in ("missing", "a directory"):
        raise ConfigError(f"{shown} is invalid: it is {kind}; give a directory")
    if kind == "a directory" and any(path.iterdir()) and not overwrite:
        raise ConfigError(
            f"{shown} is a non-empty directory: give overwrite=true to replace its contents, "
            "or a new or empty directory"
        )
    for inside in (Path.cwd(), *map(Path, protect)):
        if inside.resolve().is_relative_to(path):
            raise ConfigError(
                f"{shown} is refused: it holds {inside}, which replacing it would delete"
            )
    if not path.parent.is_dir():
        raise ConfigError(f"{shown} is invalid: its directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"{shown} cannot be written: its directory {path.parent} is read-only")
    return path


def write_dir(path: Path, fill: Callable[[Path], None], key: str) -> Path:
    """``fill(tmp)`` writes a new directory beside ``path``, which then replaces ``path`` whole:
    a failed or interrupted write leaves ``path`` as it was."""
    tmp = path.parent / f".{path.name}.new-{os.getpid()}"
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    try:
        tmp.mkdir()
        fill(tmp)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
    except OSError as e:
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise ConfigError(
            f"{key}={str(path)!r} could not be written: {why}; the path is as it was before"
        ) from None
    finally:
        for leftover in (tmp, old):
            shutil.rmtree(leftover, ignore_errors=True)
    return path
