"""Bad input to ``python -m wavelab.report`` and ``python -m wavelab.bench`` through the real CLI:
exit code 2, one line naming the key and the bad value, no traceback, nothing written."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers.cli import assert_clean_error


def write_job(sweep, num: int, n_layer: int, metrics_text: str | None = None) -> None:
    """One job dir as Hydra and the run summary write it."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"n_layer={n_layer}"]))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"n_layer": n_layer}))
    metrics = {"val/loss": 2.0 - n_layer / 10, "val/acc": 0.4 + n_layer / 10}
    text = json.dumps({"final": metrics, "best": metrics})
    (job / "metrics.json").write_text(text if metrics_text is None else metrics_text)


@pytest.fixture
def sweep(entry):
    """A finished two-job sweep (n_layer=1,2) inside the entry's working dir."""
    sweep = entry.cwd / "multiruns" / "2026-01-01_00-00-00"
    write_job(sweep, 0, 1)
    write_job(sweep, 1, 2)
    return sweep


REPORT_CASES = {  # arguments ({sweep}: the sweep fixture's dir), what the error line names
    "missing_dir": (["multiruns/nope"], ["sweep_dir=multiruns/nope", "no such directory"]),
    "no_sweep_dir": ([], ["sweep_dir=null"]),
    "unknown_metric": (["{sweep}", "metrics=[val/loss,val/nope]"], ["metrics=val/nope", "val/acc"]),
    "unknown_baseline": (["{sweep}", "baseline=val/nope"], ["baseline=val/nope"]),
    "unknown_x": (["{sweep}", "x=model.nope"], ["x=model.nope", "n_layer"]),
    "bad_which": (["{sweep}", "which=middle"], ["which=middle", "final, best"]),
    "no_columns": (["{sweep}", "columns=0"], ["columns=0"]),
}


@pytest.mark.parametrize("case", REPORT_CASES)
def test_report_refuses(entry, sweep, case):
    args, names = REPORT_CASES[case]
    before = entry.files()
    assert_clean_error(entry("report", *(a.format(sweep=sweep) for a in args)), *names)
    assert entry.files() == before


def test_report_on_a_dir_without_jobs(entry):
    (entry.cwd / "empty").mkdir()
    before = entry.files()
    assert_clean_error(entry("report", "sweep_dir=empty"), "sweep_dir=empty", "no finished jobs")
    assert entry.files() == before


def test_report_when_every_metrics_json_is_cut_short(entry):
    sweep = entry.cwd / "sweep"
    write_job(sweep, 0, 1, metrics_text='{"final": {"val/lo')
    result = entry("report", str(sweep))
    assert_clean_error(result, f"sweep_dir={sweep}", "no finished jobs")
    assert f"skipping {sweep / '0' / 'metrics.json'}" in result.stdout + result.stderr
    assert not (sweep / "report").exists()


def test_report_skips_a_cut_short_metrics_json_and_reports_the_rest(entry, sweep):
    write_job(sweep, 2, 3, metrics_text='{"final": {"val/lo')
    result = entry("report", str(sweep), "metrics=[val/loss]")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-2000:]
    assert f"skipping {sweep / '2' / 'metrics.json'}" in out  # the warning names the file
    rows = (sweep / "report" / "report.csv").read_text().splitlines()
    assert rows == ["job,n_layer,val/loss", "0,1,1.9", "1,2,1.8"]


BENCH_CASES = {
    "unknown_benchmark": (["nope"], ["bench=nope", "lm, sample, wavgpt"]),
    "unknown_benchmark_key": (["bench=nope"], ["bench=nope", "lm, sample, wavgpt"]),
    "no_steps": (["lm", "steps=0"], ["steps=0"]),
    "steps_not_a_number": (["wavgpt", "steps=abc"], ["steps=abc"]),
    "negative_warmup": (["wavgpt", "warmup=-1"], ["warmup=-1"]),
    "no_threads": (["wavgpt", "threads=0"], ["threads=0"]),
    "no_repeats": (["lm", "repeats=0"], ["repeats=0"]),
    "missing_corpus": (["lm", "data_path=nope.txt"], ["data_path=nope.txt", "no such file"]),
    "unknown_model": (["lm", "models=[gpt,nope]", "data_path=corpus.txt"], ["model/nope"]),
    "unknown_override": (["wavgpt", "model.nope=1"], ["model.nope"]),
    "both_override_forms": (
        ["wavgpt", "model.keep_ratio=0.5", "overrides=[seed=1]"],
        ["model.keep_ratio=0.5", "overrides"],
    ),
}


@pytest.mark.parametrize("case", BENCH_CASES)
def test_bench_refuses(entry, case):
    args, names = BENCH_CASES[case]
    (entry.cwd / "corpus.txt").write_text("To be, or not to be, that is the question.\n" * 50)
    before = entry.files()
    assert_clean_error(entry("bench", *args), *names)
    assert entry.files() == before
