"""Paths and text that Hydra's grammar cannot parse (``ü``, ``=``, a space; Lightning's own
``epoch=0-step=20.ckpt``) are taken literally by the keys that hold files or text, and anywhere
else the error line says how to quote them."""

from __future__ import annotations

import shutil

import pytest
from helpers.cli import assert_clean_error
from helpers.run_dir_edits import copy_run
from helpers.tiny_runs import TINY_GPT, tiny_run_in

ODD = "dir ü/a=b"  # a space, a non-ASCII letter and an `=` in one path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, cache_dir):
    """A real tiny GPT run trained on a corpus under ODD, and that corpus."""
    return tiny_run_in(tmp_path_factory.mktemp("tiny"), cache_dir, f"{ODD}/corpus ü.txt")


def ok(result):
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "cannot parse" not in out
    return out


def test_run_takes_an_odd_data_path(tiny):
    assert (tiny[0] / "checkpoints" / "last.ckpt").is_file()  # the fixture's run used it


def test_eval_and_sample_take_lightnings_checkpoint_names(tiny, entry, tmp_path):
    ckpt = tiny[0] / "checkpoints" / "epoch=0-step=2.ckpt"
    shutil.copy(tiny[0] / "checkpoints" / "last.ckpt", ckpt)
    ok(entry("eval", f"ckpt_path={ckpt}"))
    out = ok(entry("sample", f"ckpt_path={ckpt}", "prompt=ROMEO: a b, c", "max_new_tokens=4"))
    assert "ROMEO: a b, c" in out


def test_sample_takes_a_non_ascii_prompt(tiny, entry):
    ckpt = tiny[0] / "checkpoints" / "last.ckpt"
    result = entry("sample", f"ckpt_path={ckpt}", "prompt=Ünïcode", "max_new_tokens=4")
    assert "cannot parse" not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_resume_dir_takes_an_odd_path(tiny, entry, tmp_path):
    run = copy_run(tiny[0], tmp_path / ODD / "run ü=1")
    ok(entry("run", f"resume_dir={run}", "trainer.max_steps=4"))


def test_other_keys_say_how_to_quote(tiny, entry):
    result = entry("run", *TINY_GPT, f"data.path={tiny[1]}", "tags=[ü]")
    line = assert_clean_error(result, "tags=[ü]", "quote it")
    assert "'tags=\"...\"'" in line
