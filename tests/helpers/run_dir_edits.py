"""Copies of a real run dir with one of its saved files damaged or edited."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml


def copy_run(run_dir: Path, to: Path) -> Path:
    shutil.copytree(run_dir, to)
    return to


def saved_config(run_dir: Path) -> Path:
    return run_dir / ".hydra" / "config.yaml"


def edit_saved_config(run_dir: Path, edit) -> None:
    path = saved_config(run_dir)
    cfg = yaml.safe_load(path.read_text())
    edit(cfg)
    path.write_text(yaml.safe_dump(cfg))
