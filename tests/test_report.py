"""`wavelab.report` over sweep dirs laid out as Hydra and RunSummary write them: seeds are repeats."""

from __future__ import annotations

import csv
import json
import shutil
import statistics

import pytest
import yaml

from wavelab.report import main, report

# (model, seed) -> final val/loss of a made-up 2 x 3 sweep
LOSSES = {
    ("gpt", 1): 1.90,
    ("gpt", 2): 1.92,
    ("gpt", 3): 1.93,
    ("wavegpt", 1): 1.89,
    ("wavegpt", 2): 1.91,
    ("wavegpt", 3): 1.95,
}


@pytest.fixture
def seed_sweep(tmp_path):
    """A multirun dir of 6 finished jobs (model x seed) and one that died before validating."""
    sweep = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    for num, ((model, seed), loss) in enumerate(LOSSES.items()):
        job = sweep / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump([f"model={model}", f"seed={seed}"])
        )
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "model": {}}))
        metrics = {"val/loss": loss, "val/acc": 0.5 + seed / 100}
        (job / "metrics.json").write_text(json.dumps({"final": metrics, "best": metrics}))
    dead = sweep / str(len(LOSSES)) / ".hydra"
    dead.mkdir(parents=True)
    (dead / "overrides.yaml").write_text(yaml.safe_dump(["model=gpt", "seed=4"]))
    return sweep


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_seeds_are_summarised_as_mean_and_std_per_setting(seed_sweep, tmp_path):
    out = report(seed_sweep, metrics=["val/loss"], out_dir=tmp_path / "out")
    jobs = read_csv(out["csv"])
    assert [(j["model"], j["seed"]) for j in jobs] == [(m, str(s)) for m, s in LOSSES]
    summary = {row["model"]: row for row in read_csv(out["summary"])}
    assert set(summary) == {"gpt", "wavegpt"}
    for model in summary:
        losses = [v for (m, _), v in LOSSES.items() if m == model]
        assert int(summary[model]["n"]) == 3
        assert float(summary[model]["val/loss mean"]) == pytest.approx(statistics.fmean(losses))
        assert float(summary[model]["val/loss std"]) == pytest.approx(statistics.stdev(losses))
    md = out["markdown"].read_text()
    assert "Mean and sample std over seed:" in md
    assert "| model | n | val/loss mean | val/loss std |" in md
    assert out["plot"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("kwargs", "header"),
    [
        ({"repeats": None}, "| job | model | seed | val/loss |"),
        ({"x": "seed"}, "| job | seed | model | val/loss |"),  # plotted against the seed
    ],
)
def test_without_repeats_every_job_is_its_own_setting(seed_sweep, tmp_path, kwargs, header):
    out = report(seed_sweep, metrics=["val/loss"], out_dir=tmp_path / "out", **kwargs)
    assert "summary" not in out and "Mean and sample std" not in out["markdown"].read_text()
    assert out["markdown"].read_text().splitlines()[0] == header


def test_a_sweep_over_seeds_alone_plots_against_the_seed(tmp_path, seed_sweep, capsys):
    gpt_only = tmp_path / "gpt_only"
    for job in seed_sweep.iterdir():
        if "model=gpt\n" in (job / ".hydra" / "overrides.yaml").read_text():
            shutil.copytree(job, gpt_only / job.name)
    main([str(gpt_only), "--metrics", "val/loss"])
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "| job | seed | val/loss |"
    assert not (gpt_only / "summary.csv").exists()
