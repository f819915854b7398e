"""``report`` names every job dir it leaves out, and ``report`` and ``bench`` refuse an output
path they cannot write (a file for a dir, a device) in one line, writing nothing."""

from __future__ import annotations

import json

import yaml
from helpers.cli import assert_clean_error


def write_job(sweep, num: int, n_layer: int, with_metrics: bool = True) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"n_layer={n_layer}"]))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"n_layer": n_layer}))
    if with_metrics:
        metrics = {"val/loss": 2.0 - n_layer / 10}
        (job / "metrics.json").write_text(json.dumps({"final": metrics, "best": metrics}))


def test_report_names_a_job_that_crashed_before_writing_metrics(entry):
    sweep = entry.cwd / "multiruns" / "s"
    write_job(sweep, 0, 1)
    write_job(sweep, 1, 2)
    write_job(sweep, 2, 3, with_metrics=False)
    result = entry("report", str(sweep))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    (line,) = [ln for ln in out.splitlines() if "skipping" in ln]
    assert str(sweep / "2") in line and "no metrics.json" in line


def test_report_out_dir_that_is_a_file(entry):
    sweep = entry.cwd / "multiruns" / "s"
    write_job(sweep, 0, 1)
    write_job(sweep, 1, 2)
    (entry.cwd / "taken").write_text("mine\n")
    before = entry.files()
    result = entry("report", str(sweep), f"out_dir={entry.cwd / 'taken'}")
    assert_clean_error(result, "out_dir=", "taken", "is a file")
    assert entry.files() == before


def test_bench_json_on_a_device(entry):
    (entry.cwd / "corpus.txt").write_text("To be, or not to be, that is the question.\n" * 50)
    before = entry.files()
    result = entry("bench", "lm", "data_path=corpus.txt", "json=/dev/full")
    assert_clean_error(result, "json=", "/dev/full", "regular file")
    assert entry.files() == before
