"""Crafted checkpoints end in one line naming the checkpoint and what is wrong in it, and a
checkpoint's hyperparameters are checked against its own weights before any model is built."""

from __future__ import annotations

import resource

import pytest
import torch
from helpers.cli import assert_clean_error
from helpers.tiny_runs import tiny_run_in

from wavelab.core.checkpoints import load_module
from wavelab.core.errors import ConfigError


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, cache_dir):
    """A real tiny GPT checkpoint, read back as a dict."""
    run_dir, _ = tiny_run_in(tmp_path_factory.mktemp("tiny"), cache_dir)
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def crafted(tiny_ckpt, path, edit):
    ckpt = {**tiny_ckpt, "hyper_parameters": dict(tiny_ckpt["hyper_parameters"])}
    ckpt["state_dict"] = dict(tiny_ckpt["state_dict"])
    edit(ckpt)
    torch.save(ckpt, path)
    return path


def set_net(ckpt, **values):
    ckpt["hyper_parameters"]["net"] = {**ckpt["hyper_parameters"]["net"], **values}


def set_tokenizer(ckpt, tokenizer):
    ckpt["hyper_parameters"]["tokenizer"] = tokenizer


def first_weight(ckpt) -> str:
    return next(k for k, t in ckpt["state_dict"].items() if t.is_floating_point())


def reshape_first(ckpt):
    name = first_weight(ckpt)
    ckpt["state_dict"][name] = torch.zeros(3, 5)


def nan_weights(ckpt):
    ckpt["state_dict"] = {
        k: torch.full_like(t, float("nan")) if t.is_floating_point() else t
        for k, t in ckpt["state_dict"].items()
    }


CASES = {
    "huge_n_embd": (lambda c: set_net(c, n_embd=8192), ["does not fit its own hyperparameters"]),
    "huge_layers": (lambda c: set_net(c, n_layer=4096), ["does not fit", "which its weights lack"]),
    "tokenizer_sentencepiece": (
        lambda c: set_tokenizer(c, {"kind": "sentencepiece", "model": "x"}),
        ["tokenizer kind", "sentencepiece"],
    ),
    "tokenizer_garbage_bpe": (
        lambda c: set_tokenizer(c, {"kind": "bpe", "json": "{not json"}),
        ["BPE JSON is unreadable"],
    ),
    "tokenizer_without_kind": (
        lambda c: set_tokenizer(c, {"chars": "abc"}),
        ["tokenizer kind is None"],
    ),
    "wrong_shaped_tensor": (reshape_first, ["(3, 5)", "net."]),
    "nan_weights": (nan_weights, ["NaN"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sample_refuses_a_crafted_checkpoint_in_one_line(tiny_ckpt, entry, tmp_path, case):
    edit, names = CASES[case]
    path = crafted(tiny_ckpt, tmp_path / f"{case}.ckpt", edit)
    result = entry("sample", f"ckpt_path={path}", "max_new_tokens=4", "device=cpu", timeout=60)
    assert_clean_error(result, f"{case}.ckpt", *names)


def test_huge_hyperparameters_build_nothing_before_they_are_refused(tiny_ckpt, tmp_path):
    """8192 wide would be over 10 GB of weights; on the meta device it costs nothing, so the
    process's peak memory does not move (ru_maxrss is in KiB on Linux)."""
    path = crafted(tiny_ckpt, tmp_path / "huge.ckpt", lambda c: set_net(c, n_embd=8192))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError, match=r"'net[.].*' is .* in its weights but"):
        load_module(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 512 * 1024


def test_the_weights_key_names_the_shape_mismatch(tiny_ckpt, tmp_path):
    path = crafted(tiny_ckpt, tmp_path / "shape.ckpt", reshape_first)
    with pytest.raises(ConfigError, match=first_weight(tiny_ckpt).replace(".", "[.]")):
        load_module(path)


def test_an_intact_checkpoint_still_loads(tiny_ckpt, tmp_path):
    path = crafted(tiny_ckpt, tmp_path / "intact.ckpt", lambda c: None)
    module = load_module(path)
    assert not module.training
