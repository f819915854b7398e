"""model.init_from=<GPT-2 dir>: a GPT or WaveGPT that starts as the GPT-2, then trains."""

from __future__ import annotations

import pytest
import torch
from helpers.gpt2_dir import N_POSITIONS, save_gpt2_dir
from transformers import AutoTokenizer

from wavelab.core.checkpoints import load_module
from wavelab.core.config import instantiate
from wavelab.data.tokenizers import HFTokenizer
from wavelab.wavegpt.hf.gpt2_map import from_gpt2

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    return path, save_gpt2_dir(path)


@pytest.mark.parametrize("model", ["gpt", "wavegpt", "wavegpt_causal"])
@pytest.mark.parametrize("block", [32, N_POSITIONS])
def test_step_zero_computes_the_gpt2s_logits(model, block, gpt2_dir, make_cfg):
    path, gpt2 = gpt2_dir
    cfg = make_cfg(f"model={model}", f"model.init_from={path}", f"data.block_size={block}")
    tokenizer = HFTokenizer.from_spec(f"hf:{path}")
    module = instantiate(cfg.model, "model", tokenizer=tokenizer.to_dict()).eval()
    c = module.net.config
    assert (c.n_layer, c.n_embd, c.vocab_size, c.bias, c.activation) == (
        2,
        32,
        gpt2.config.vocab_size,
        True,
        "gelu_tanh",
    )
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, c.vocab_size, (32, block), generator=g)
    prev = torch.randint(0, c.vocab_size, (32, block), generator=g)
    with torch.no_grad():
        difference = (module(ids, prev) - gpt2(ids).logits).abs().max()
    assert difference <= 1e-5


def test_the_dirs_tokenizer_is_the_datas(gpt2_dir):
    path, _ = gpt2_dir
    text = "O Romeo, Romeo! wherefore art thou Romeo?\n  Deny thy father."
    ids = HFTokenizer.from_spec(f"hf:{path}").encode(text)
    assert ids == AutoTokenizer.from_pretrained(str(path))(text)["input_ids"] and len(ids) > 5


def test_a_wavegpt_from_gpt2_trains_through_the_real_config(gpt2_dir, train_cli, tmp_path):
    path, gpt2 = gpt2_dir
    args = ["model=wavegpt", f"model.init_from={path}", "trainer.max_steps=3"]
    train_cli([*args, "trainer.val_check_interval=3", "data.block_size=32"], tmp_path)
    (ckpt,) = (tmp_path / "logs").rglob("last.ckpt")
    module = load_module(ckpt)  # without the dir: the checkpoint holds the whole net
    assert module.tokenizer.kind == "hf" and module.hparams["init_from"] is None
    assert module.net.wavenet_gate.abs().sum() > 0  # the branch started to learn
    start = from_gpt2(gpt2.state_dict(), module.net.config)
    moved = module.net.state_dict()["transformer.h.0.attn.c_attn.weight"]
    assert moved.shape == start["transformer.h.0.attn.c_attn.weight"].shape
    assert not torch.equal(moved, start["transformer.h.0.attn.c_attn.weight"])
    # and it still starts near the GPT-2: three small steps move the weights a little
    assert (moved - start["transformer.h.0.attn.c_attn.weight"]).abs().max() < 0.05
