"""WavGPT's plots and reconstruction callbacks in a real tiny fit, and ``python -m wavelab.wavgpt.plots``."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.wavgpt_checkpoint import fit_checkpoint

from wavelab.core.config import instantiate
from wavelab.wavgpt.plots.callback import Reconstructions, WavGPTPlots
from wavelab.wavgpt.plots.figures import FIGURES, tiling

pytestmark = pytest.mark.usefixtures("single_thread")


def test_callbacks_write_plots_and_reconstructions_during_fit(tiny_encoder_dir, tmp_path):
    plots = WavGPTPlots(str(tmp_path / "plots"), every_n_validations=1, num_blocks=6)
    recs = Reconstructions(str(tmp_path / "recs"), every_n_validations=1, num_examples=3)
    fit_checkpoint(tiny_encoder_dir, tmp_path / "tiny.ckpt", callbacks=[plots, recs])
    # one validation at the end of the 2 steps; fit's end adds nothing at the same step
    (step_dir,) = (tmp_path / "plots").iterdir()
    assert step_dir.name == "step_0000002"
    for name in FIGURES:
        png = (step_dir / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    (text,) = (tmp_path / "recs").glob("step_*.txt")
    body = text.read_text()
    assert body.count("--- example") == 3
    assert body.count("original: ") == body.count("head:     ") == body.count("code:     ") == 3
    assert len(recs._rows) == 3


def test_command_renders_a_checkpoint(tiny_encoder_dir, tmp_path, entry):
    ckpt = tmp_path / "tiny.ckpt"
    fit_checkpoint(tiny_encoder_dir, ckpt, steps=1, filter_learned=False)
    text = tmp_path / "text, with a comma.txt"  # file names are taken literally
    text.write_text("To be, or not to be: that is the question.\n\n" * 40)
    out = tmp_path / "p"
    result = entry(
        "wavgpt.plots", f"ckpt_path={ckpt}", f"text_file={text}", "blocks=4", f"out={out}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    printed = [line for line in result.stdout.split() if line.endswith(".png")]
    # without a learned filter there are no band importances to draw
    assert sorted(printed) == sorted(str(out / f"{n}.png") for n in FIGURES[1:])
    assert all((out / f"{n}.png").stat().st_size > 5000 for n in FIGURES[1:])


def test_command_help_lists_the_keys(entry):
    result = entry("wavgpt.plots", "--help")
    assert result.returncode == 0, result.stderr
    for key in ("ckpt_path", "out", "text_file", "blocks", "device"):
        assert f"{key}:" in result.stdout


def test_tiling_stretches_each_band_over_its_time_steps():
    # T=8, 2 levels: [a0 a1 | d2_0 d2_1 | d1_0 d1_1 d1_2 d1_3]
    image = tiling(np.arange(8.0), levels=2)
    assert image.tolist() == [
        [0, 0, 0, 0, 1, 1, 1, 1],
        [2, 2, 2, 2, 3, 3, 3, 3],
        [4, 4, 5, 5, 6, 6, 7, 7],
    ]


def test_config_wires_both_callbacks(make_cfg):
    cfg = make_cfg("model=wavgpt")
    assert cfg.callbacks.samples is None
    for key, cls in (("plots", WavGPTPlots), ("reconstructions", Reconstructions)):
        assert isinstance(instantiate(cfg.callbacks[key]), cls)
