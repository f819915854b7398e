"""wavelab.export: the dir transformers loads computes wavelab's logits and generations, in a
process that never imports wavelab, and refuses what it cannot represent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.cli import Entry, assert_clean_error
from helpers.lm_checkpoint import BLOCK, MODES, fit_checkpoint, lm_module

from wavelab.core.checkpoints import load_module
from wavelab.data.tokenizers import CharTokenizer

pytestmark = pytest.mark.usefixtures("single_thread")
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet."
PROMPT = "But "
PROBE = Path(__file__).with_name("probe_export.py")


@pytest.fixture(scope="module")
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer.train(TEXT)


@pytest.fixture(scope="module", params=list(MODES))
def exported(request, tmp_path_factory, cache_dir, char_tokenizer):
    """(model option, checkpoint, export dir, python -m wavelab.export's process)."""
    root = tmp_path_factory.mktemp(request.param)
    ckpt = fit_checkpoint(lm_module(request.param, char_tokenizer), root / "model.ckpt")
    entry = Entry(root, cache_dir)
    result = entry("export", f"ckpt_path={ckpt}", f"out={root / 'hf'}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return request.param, ckpt, root / "hf", result


def probe(model_dir: Path, inputs: dict, tmp: Path, new: int) -> dict:
    """What a fresh process with transformers alone computes with the exported dir."""
    torch.save(inputs, tmp / "inputs.pt")
    result = subprocess.run(
        [
            sys.executable,
            str(PROBE),
            str(model_dir),
            str(tmp / "inputs.pt"),
            PROMPT,
            str(new),
            str(tmp / "out.pt"),
        ],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(tmp / "out.pt", weights_only=True)


def test_the_export_computes_wavelabs_logits_and_greedy_tokens(exported, tmp_path, entry):
    model, ckpt, model_dir, _ = exported
    module = load_module(ckpt)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, module.net.config.vocab_size, (32, BLOCK), generator=g)
    inputs = {"ids": ids}
    before = torch.full_like(ids, -1)  # what transformers' model reads with no prev_input_ids
    if module.uses_prev_block:
        inputs["prev"] = torch.randint(0, module.net.config.vocab_size, ids.shape, generator=g)
    new = BLOCK - len(PROMPT)
    got = probe(model_dir, inputs, tmp_path, new)
    assert got["wavelab_imported"] is False
    assert got["class"] == ("GPT2LMHeadModel" if model == "gpt" else "WaveGPTForCausalLM")
    with torch.no_grad():
        expected = module(ids, before)
        assert (got["logits"] - expected).abs().max() <= 1e-5
        if module.uses_prev_block:
            assert (got["with_prev"] - module(ids, inputs["prev"])).abs().max() <= 1e-5
    sampled = entry(
        "sample", f"ckpt_path={ckpt}", f"prompt={PROMPT}", "top_k=1", f"max_new_tokens={new}"
    )
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    text = module.tokenizer.decode(got["greedy"][0].tolist())
    assert sampled.stdout.startswith(text + "\n" + "-" * 40), (sampled.stdout, text)
    assert got["pipeline"].startswith(PROMPT) and len(got["pipeline"]) == len(PROMPT) + 4


def test_a_gpt_export_is_plain_gpt2(exported):
    model, _, model_dir, _ = exported
    config = json.loads((model_dir / "config.json").read_text())
    files = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    if model == "gpt":
        assert config["model_type"] == "gpt2" and "auto_map" not in config
        assert config["activation_function"] == "gelu" and config["tie_word_embeddings"]
        assert not any(name.endswith(".py") for name in files)
    else:
        assert config["model_type"] == "wavegpt"
        assert config["auto_map"]["AutoModelForCausalLM"].startswith("modeling_wavegpt.")
        source = (model_dir / "modeling_wavegpt.py").read_text()
        imports = {
            line.split()[1].split(".")[0]
            for line in source.splitlines()
            if line.startswith(("import ", "from "))
        }
        assert imports == {"__future__", "typing", "torch", "transformers"}


def test_out_onto_a_non_empty_dir_needs_overwrite(exported, cache_dir):
    _, ckpt, model_dir, _ = exported
    entry = Entry(ckpt.parent, cache_dir)
    before = (model_dir / "model.safetensors").read_bytes()
    result = entry("export", f"ckpt_path={ckpt}", f"out={model_dir}")
    assert_clean_error(result, "out=", "overwrite=true")
    assert (model_dir / "model.safetensors").read_bytes() == before
    (model_dir / "stale.txt").write_text("from an older export")
    result = entry("export", f"ckpt_path={ckpt}", f"out={model_dir}", "overwrite=true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (model_dir / "stale.txt").exists()
    assert (model_dir / "model.safetensors").read_bytes() == before


def test_a_setting_with_no_equivalent_is_refused(tmp_path, char_tokenizer, entry):
    with pytest.warns(UserWarning, match="leaks"):
        module = lm_module("wavegpt", char_tokenizer)
        module = type(module)(
            **{
                **module.hparams,
                "net": {
                    **module.hparams["net"],
                    "wavenet": {"mode": "block", "allow_future_leak": True},
                },
            }
        )
    ckpt = fit_checkpoint(module, tmp_path / "block.ckpt")
    result = entry("export", f"ckpt_path={ckpt}", f"out={tmp_path / 'hf'}")
    assert_clean_error(result, "model.net.wavenet.mode='block'")
    assert not (tmp_path / "hf").exists()
