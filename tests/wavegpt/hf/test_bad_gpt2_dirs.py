"""A model.init_from dir that wavelab cannot or must not read ends as one line, exit code 2,
before any data is prepared or any model allocated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers.cli import Entry, assert_clean_error
from helpers.gpt2_dir import save_gpt2_dir
from helpers.tiny_runs import TINY_GPT


class Payload:
    """An object a pickle can carry and a weights-only load refuses."""


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gpt2")
    save_gpt2_dir(path)
    return path


def copy_of(good_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(good_dir, tmp_path / "gpt2"))


def run_from(entry, corpus_file, path: Path, model: str = "gpt"):
    return entry(
        "run", *TINY_GPT, f"model={model}", f"data.path={corpus_file}", f"model.init_from={path}"
    )


def edit_config(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, **changes}))


def as_pickle(path: Path, extra: dict | None = None) -> None:
    """The dir's weights as pytorch_model.bin only (plus ``extra`` objects)."""
    from safetensors.torch import load_file

    state = load_file(str(path / "model.safetensors"))
    (path / "model.safetensors").unlink()
    torch.save({**state, **(extra or {})}, path / "pytorch_model.bin")


def test_a_pickle_that_holds_objects_is_refused(good_dir, tmp_path, entry, corpus_file):
    path = copy_of(good_dir, tmp_path)
    as_pickle(path, {"payload": Payload()})
    result = run_from(entry, corpus_file, path)
    assert_clean_error(result, "model.init_from=", "pytorch_model.bin", "weights-only")


def test_a_pickle_of_plain_tensors_is_read(good_dir, tmp_path, entry, corpus_file):
    path = copy_of(good_dir, tmp_path)
    as_pickle(path)
    result = run_from(entry, corpus_file, path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"n_embd": 64}, ["'transformer.wte.weight'", "config.json implies"]),
        ({"n_embd": 10**9, "n_head": 1}, ["'transformer.wte.weight'", "config.json implies"]),
        ({"n_layer": 3}, ["'transformer.h.2.ln_1.weight'"]),
        ({"model_type": "llama"}, ["model_type='llama'", "gpt2"]),
        ({"activation_function": "relu"}, ["activation_function='relu'"]),
        ({"layer_norm_epsilon": 1e-6}, ["layer_norm_epsilon=1e-06"]),
    ],
)
def test_a_config_json_wavelab_cannot_build_is_refused(
    changes, names, good_dir, tmp_path, entry, corpus_file
):
    path = copy_of(good_dir, tmp_path)
    edit_config(path, **changes)
    own = Entry(entry.cwd, tmp_path / "cache")  # an empty cache: nothing may be tokenized
    result = run_from(own, corpus_file, path, model="wavegpt")
    assert_clean_error(result, "model.init_from=", *names)
    assert not (tmp_path / "cache" / "tokens").exists(), "refused before any data"


def test_a_dir_without_a_tokenizer_is_refused(good_dir, tmp_path, entry, corpus_file):
    path = copy_of(good_dir, tmp_path)
    (path / "tokenizer.json").unlink()
    result = run_from(entry, corpus_file, path)
    assert_clean_error(result, "data.tokenizer=", "tokenizer.json does not exist")


def test_a_dir_without_weights_or_config_is_refused(good_dir, tmp_path, entry, corpus_file):
    path = copy_of(good_dir, tmp_path)
    (path / "model.safetensors").unlink()
    assert_clean_error(run_from(entry, corpus_file, path), "model.init_from=", "neither")
    (path / "config.json").unlink()
    assert_clean_error(run_from(entry, corpus_file, path), "model.init_from=", "config.json")
    assert_clean_error(run_from(entry, corpus_file, tmp_path / "none"), "no such directory")


def test_a_window_longer_than_its_positions_is_refused(good_dir, entry, corpus_file):
    result = entry(
        "run",
        *TINY_GPT,
        f"data.path={corpus_file}",
        f"model.init_from={good_dir}",
        "data.block_size=65",
    )
    assert_clean_error(result, "data.block_size=65", "n_positions=64")
