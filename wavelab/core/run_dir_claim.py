"""A run dir given on the command line (``hydra.run.dir=<dir>``) is claimed as the generated ones
are: by one run only.

A generated dir is new by construction (:mod:`wavelab.core.run_dirs`). A given one may hold
another run: a new run there would replace its ``last.ckpt`` and ``config.yaml`` and mix two
runs' rows in one ``metrics.csv``. So, before Hydra writes anything into it, a given dir that
holds a run's files is refused (``resume_dir=`` continues that run), and an empty or new one is
claimed by creating :data:`CLAIM_FILE` in it exclusively: of two runs started into it at once,
one gets it and the other a clear error. The extra ranks of a DDP run, which Lightning starts
with the dir of rank 0 on their command line, and a requeued SLURM job, are the run itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from wavelab.core.errors import ConfigError

CLAIM_FILE = ".wavelab_run"  # holds the pid of the run that claimed the dir
# What a run leaves in its dir (Hydra's files, the checkpoints, the logs, the summary).
RUN_FILES = (".hydra", "checkpoints", "csv", "metrics.json", CLAIM_FILE)
RANK_VARIABLES = ("LOCAL_RANK", "RANK", "SLURM_PROCID")


def given_run_dir(argv: Sequence[str]) -> str | None:
    """The last ``hydra.run.dir=`` of a single run's command line, unless it is left to a
    resolver (``${unique_dir:...}`` claims its dir itself)."""
    if any(a in ("-m", "--multirun") for a in argv):
        return None
    values = [a.partition("=")[2] for a in argv if a.startswith("hydra.run.dir=")]
    if not values or "${" in values[-1]:
        return None
    return values[-1].strip("'\"")


def is_this_run_again(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """A DDP rank other than 0, a requeued SLURM job, or a resume: the dir's run continuing."""
    if any(env.get(name, "0") not in ("", "0") for name in RANK_VARIABLES):
        return True
    if env.get("SLURM_RESTART_COUNT", "0") not in ("", "0"):
        return True
    return any(
        a.startswith("resume_dir=") and a.partition("=")[2] not in ("", "null") for a in argv
    )


def claim_given_run_dir(argv: Sequence[str], env: Mapping[str, str]) -> Path | None:
    """Claims the run dir the command line gives, if any; ConfigError if it is another run's."""
    value = given_run_dir(argv)
    if value is None or is_this_run_again(argv, env):
        return None
    path = Path(value).expanduser()
    shown = f"hydra.run.dir={value!r}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{shown} is invalid: it exists and is not a directory")
    found = [name for name in RUN_FILES if (path / name).exists()]
    if found:
        raise ConfigError(
            f"{shown} holds another run ({', '.join(found)}): a new run there would replace its "
            f"files; continue it with resume_dir={value}, or give a new or empty dir"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise ConfigError(
            f"{shown} was claimed by another run started at the same time: give each run its own "
            "dir"
        ) from None
    except OSError as e:
        raise ConfigError(f"{shown} cannot be created: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    return path
