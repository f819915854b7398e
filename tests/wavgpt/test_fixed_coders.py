"""Settings a WavGPT run cannot train with are refused in one line, before any data is cached."""

from __future__ import annotations

import pytest
from helpers.cli import Entry, assert_clean_error

NOTHING_TO_TRAIN = {
    "fixed wavelet code, no refiner": (
        ["model.learnable_lifting=false", "model.filter_learned=false", "model.refine=false"],
        ["model.learnable_lifting=false", "model.filter_learned=false", "model.refine=false"],
    ),
    "scalar code, no refiner": (
        ["model.coder=scalar", "model.refine=false"],
        ["model.coder=scalar", "model.refine=false"],
    ),
    "value_bits not an integer": (["model.value_bits=8.0"], ["model.value_bits=8.0", "integer"]),
}


@pytest.mark.parametrize(("overrides", "names"), NOTHING_TO_TRAIN.values(), ids=NOTHING_TO_TRAIN)
def test_refused_in_one_line_with_nothing_cached(
    entry, corpus_file, tiny_encoder_dir, tmp_path, overrides, names
):
    entry = Entry(entry.cwd, tmp_path / "own_cache")
    result = entry(
        "run",
        "model=wavgpt",
        f"model.encoder.name_or_path={tiny_encoder_dir}",
        f"data.path={corpus_file}",
        "trainer.max_steps=2",
        *overrides,
    )
    assert_clean_error(result, *names)
    assert not (entry.cache_dir / "teacher").exists(), "a refused run built a teacher cache"


def test_one_learned_part_is_enough(make_cfg):
    from wavelab.core.config import instantiate

    cfg = make_cfg("model=wavgpt", "model.learnable_lifting=false", "model.refine=false")
    module = instantiate(cfg.model)
    assert any(p.requires_grad for p in module.core.parameters())  # the filter's importances
