"""A run dir belongs to one run: resume removes only what this run's checkpointers wrote after
the resumed checkpoint, never a user's file nor a path in another dir; a new run into an old
run's dir is refused, and of two runs started into one dir at once, one gets it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from helpers.cli import assert_clean_error
from helpers.mounts import make_read_only, read_only_dir, tmpfs
from helpers.run_dir_edits import copy_run
from helpers.tiny_runs import TINY_GPT, tiny_run_in


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, cache_dir):
    """A real two-step GPT run (its best and last checkpoints at step 2), and its corpus."""
    return tiny_run_in(tmp_path_factory.mktemp("tiny"), cache_dir)


def snapshot(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def output(result) -> str:
    return result.stdout + result.stderr


def test_resume_keeps_a_users_checkpoints_and_removes_only_its_own_newer_ones(
    tiny, entry, tmp_path
):
    run = copy_run(tiny[0], tmp_path / "run")
    ckpts = run / "checkpoints"
    last = ckpts / "last.ckpt"
    shutil.copy(last, ckpts / "keep_me.ckpt")
    shutil.copy(last, ckpts / "step0000001-val_loss9.0000.ckpt")  # older than the resume point
    shutil.copy(last, ckpts / "step0000099-val_loss0.0001.ckpt")  # a kill's leftover: newer
    result = entry("run", f"resume_dir={run}", "trainer.max_steps=4")
    assert result.returncode == 0, output(result)[-3000:]
    names = {p.name for p in ckpts.iterdir()}
    assert {"keep_me.ckpt", "step0000001-val_loss9.0000.ckpt", "last.ckpt"} <= names
    assert "step0000099-val_loss0.0001.ckpt" not in names


def test_resume_of_a_copied_run_dir_keeps_its_best_and_names_it_there(tiny, entry, tmp_path):
    original = tiny[0]
    before = snapshot(original)
    run = copy_run(original, tmp_path / "elsewhere" / "run")
    (best,) = (run / "checkpoints").glob("step*.ckpt")
    result = entry("run", f"resume_dir={run}", "trainer.max_steps=2")
    assert result.returncode == 0, output(result)[-3000:]
    assert best.exists()
    (line,) = [ln for ln in output(result).splitlines() if "best checkpoint:" in ln]
    assert str(run) in line and str(original) not in line
    assert snapshot(original) == before


def test_a_new_run_into_an_old_run_dir_is_refused(tiny, entry, tmp_path):
    run = copy_run(tiny[0], tmp_path / "old_run")
    before = snapshot(run)
    result = entry("run", *TINY_GPT, f"data.path={tiny[1]}", f"hydra.run.dir={run}")
    assert_clean_error(result, "hydra.run.dir", str(run), "resume_dir")
    assert snapshot(run) == before


def test_two_runs_started_into_one_dir_at_once(tiny, entry, tmp_path):
    target = tmp_path / "shared_run"
    args = [sys.executable, "-m", "wavelab.run", *TINY_GPT, f"data.path={tiny[1]}"]
    procs = [
        subprocess.Popen(
            [*args, f"hydra.run.dir={target}"],
            cwd=entry.cwd,
            env=entry.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [output(r)[-2000:] for r in results]
    loser = next(r for r in results if r.returncode == 2)
    assert_clean_error(loser, "hydra.run.dir", str(target))


def test_a_run_dir_on_a_read_only_filesystem(tiny, entry, tmp_path):
    with read_only_dir(tmp_path / "ro") as ro:
        result = entry("run", *TINY_GPT, f"data.path={tiny[1]}", f"hydra.run.dir={ro / 'run'}")
        assert_clean_error(result, "hydra.run.dir", "cannot be created")
        result = entry("run", *TINY_GPT, f"data.path={tiny[1]}", f"paths.log_dir={ro}")
        assert_clean_error(result, "hydra.run.dir", "cannot be created", "paths.log_dir")


def test_resume_dir_on_a_read_only_filesystem(tiny, entry, tmp_path):
    with tmpfs(tmp_path / "mnt", size="64m") as mnt:
        run = copy_run(tiny[0], mnt / "run")
        make_read_only(mnt)
        before = snapshot(run)
        result = entry("run", f"resume_dir={run}", "trainer.max_steps=4")
        assert_clean_error(result, "resume_dir", "read-only")
        assert snapshot(run) == before
