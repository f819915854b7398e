"""The command-line entries run as a user runs them, and what a user error must look like."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Entry:
    """Runs ``python -m wavelab.<entry> ...`` in a scratch working dir, as a user would.

    The subprocess imports *this* checkout's wavelab (PYTHONPATH), logs under ``<cwd>/logs`` and
    caches under ``<cwd>/cache``, so a test can see every file an entry writes.
    """

    def __init__(self, cwd: Path, cache_dir: Path):
        self.cwd = cwd
        self.cache_dir = cache_dir

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            WAVELAB_LOG_DIR=str(self.cwd / "logs"),
            WAVELAB_CACHE_DIR=str(self.cache_dir),
            WANDB_MODE="offline",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def __call__(self, entry: str, *args: str, timeout: float = 300, **env: str):
        import subprocess
        import sys

        return subprocess.run(
            [sys.executable, "-m", f"wavelab.{entry}", *args],
            cwd=self.cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def files(self) -> set[Path]:
        """Every file under the working dir and the cache, for before/after comparisons."""
        roots = (self.cwd, self.cache_dir)
        return {p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


def assert_clean_error(result, *names: str) -> str:
    """A user error as wavelab promises it: exit code 2, no traceback, exactly one line that
    says ``error:`` and names each of ``names`` (the key or file, the bad value). Returns it."""
    out = result.stdout + result.stderr
    assert result.returncode == 2, f"exit {result.returncode}, expected 2:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if "error:" in line.lower()]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{out[-3000:]}"
    for name in names:
        assert name in lines[0], f"{name!r} not in the error line: {lines[0]}"
    return lines[0]
