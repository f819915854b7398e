"""A run dir's saved Hydra files are data: no resolver in them runs, and a damaged one ends in
one line naming the file, through resume_dir= and eval's saved data config alike."""

from __future__ import annotations

import pytest
from helpers.cli import assert_clean_error
from helpers.run_dir_edits import copy_run, edit_saved_config, saved_config
from helpers.tiny_runs import tiny_run_in


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, cache_dir):
    return tiny_run_in(tmp_path_factory.mktemp("tiny"), cache_dir)[0]


def resume(entry, run):
    return entry("run", f"resume_dir={run}", "trainer.max_steps=4")


def evaluate(entry, run):
    return entry("eval", f"ckpt_path={run}/checkpoints/last.ckpt")


@pytest.mark.parametrize(
    ("key", "edit"),
    [
        ("trainer.default_root_dir", lambda cfg, v: cfg["trainer"].update(default_root_dir=v)),
        ("tags[0]", lambda cfg, v: cfg.update(tags=[v])),
        ("paths.log_dir", lambda cfg, v: cfg["paths"].update(log_dir=v)),
    ],
)
def test_resume_dir_runs_no_resolver_of_the_saved_config(tiny, entry, tmp_path, key, edit):
    run = copy_run(tiny, tmp_path / "downloaded")
    target = tmp_path / "outside" / "made_by_the_file"
    edit_saved_config(run, lambda cfg: edit(cfg, f"${{unique_dir:{target}}}"))
    line = assert_clean_error(resume(entry, run), "config.yaml", key, "unique_dir")
    assert "resolver" in line
    assert not target.exists() and not target.parent.exists()


def test_eval_runs_no_resolver_of_the_saved_data_config(tiny, entry, tmp_path):
    run = copy_run(tiny, tmp_path / "downloaded")
    target = tmp_path / "outside"
    edit_saved_config(run, lambda cfg: cfg["data"].update(path=f"${{unique_dir:{target}}}"))
    assert_clean_error(evaluate(entry, run), "config.yaml", "data.path", "unique_dir")
    assert not target.exists()


def test_a_resolver_hidden_in_a_plain_interpolation_is_refused(tiny, entry, tmp_path):
    run = copy_run(tiny, tmp_path / "downloaded")
    target = tmp_path / "outside"
    edit_saved_config(
        run, lambda cfg: cfg.update(tags=[f"${{oc.select:a,${{unique_dir:{target}}}}}"])
    )
    assert_clean_error(resume(entry, run), "config.yaml", "tags[0]", "oc.select")
    assert not target.exists()


def test_the_saved_config_of_a_real_run_still_resumes(tiny, entry, tmp_path):
    run = copy_run(tiny, tmp_path / "downloaded")
    result = resume(entry, run)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_resume_dir_without_hydra_yaml(tiny, entry, tmp_path):
    run = copy_run(tiny, tmp_path / "downloaded")
    (run / ".hydra" / "hydra.yaml").unlink()
    assert_clean_error(resume(entry, run), "hydra.yaml", "does not exist")


@pytest.mark.parametrize("entry_point", ["resume", "eval"])
def test_an_unparsable_saved_config(tiny, entry, tmp_path, entry_point):
    run = copy_run(tiny, tmp_path / "downloaded")
    saved_config(run).write_text("model: [unclosed\n  : :\n")
    result = resume(entry, run) if entry_point == "resume" else evaluate(entry, run)
    assert_clean_error(result, "config.yaml", "not valid YAML")


@pytest.mark.parametrize("entry_point", ["resume", "eval"])
def test_a_saved_config_that_is_a_list(tiny, entry, tmp_path, entry_point):
    run = copy_run(tiny, tmp_path / "downloaded")
    saved_config(run).write_text("- a\n- b\n")
    result = resume(entry, run) if entry_point == "resume" else evaluate(entry, run)
    assert_clean_error(result, "config.yaml", "list", "not a mapping")
