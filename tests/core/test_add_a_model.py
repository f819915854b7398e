"""CONTRIBUTING's "add a model" recipe, followed to the letter by a third model outside wavelab:
a package with a LightningModule that carries a ModelSpec, and a ``model/*.yaml`` in a config
dir of its own. Nothing in wavelab changes, yet training, resuming, sampling and evaluating it
all run through the real entry points."""

from __future__ import annotations

import json
import math
import os
import textwrap
from pathlib import Path

import pytest
from helpers.cli import REPO, Entry, assert_clean_error

pytestmark = pytest.mark.slow

TOY_MODULE = '''
"""A bigram language model: the smallest model wavelab's char data can train."""

import lightning as L
import torch
import torch.nn.functional as F

from wavelab.core.optim import plain
from wavelab.core.records import RecordsItsClass
from wavelab.core.registry import ModelSpec
from wavelab.data.tokenizers import tokenizer_from_dict


class BigramModule(RecordsItsClass, L.LightningModule):
    spec = ModelSpec(
        label="Bigram",
        headline_metrics=("val/loss", "val/loss_best"),
        generates_text=True,
        flops_per_token=lambda module: 6.0 * module.table.weight.numel(),
    )

    def __init__(self, lr: float, tokenizer: dict):
        super().__init__()
        tokenizer = plain(tokenizer)  # Hydra passes a config node; checkpoints hold plain types
        self.save_hyperparameters({"lr": lr, "tokenizer": tokenizer})
        self.tokenizer = tokenizer_from_dict(tokenizer)
        vocab = self.tokenizer.vocab_size
        self.table = torch.nn.Embedding(vocab, vocab)
        torch.nn.init.zeros_(self.table.weight)  # uniform next-token guesses: loss ln(vocab)
        self.best = float("inf")

    def loss(self, batch):
        _, x, y = batch
        return F.cross_entropy(self.table(x).flatten(0, 1), y.flatten())

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.loss(batch), prog_bar=True)

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self.best = min(self.best, float(self.trainer.callback_metrics["val/loss"]))
            self.log("val/loss_best", self.best)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    @torch.no_grad()
    def generate_text(self, prompt, max_new_tokens, temperature=1.0, top_k=None, seed=None):
        gen = torch.Generator().manual_seed(seed or 0)
        ids = self.tokenizer.encode(prompt) or [0]
        for _ in range(max_new_tokens):
            probs = F.softmax(self.table.weight[ids[-1]] / temperature, dim=-1)
            ids.append(int(torch.multinomial(probs, 1, generator=gen)))
        return self.tokenizer.decode(ids)
'''

TOY_CONFIG = """
# A bigram language model (toymodel.module.BigramModule): one table of next-token logits.
_target_: toymodel.module.BigramModule
lr: 0.1                   # AdamW's learning rate
"""


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """A model package and its config dir, outside the wavelab checkout."""
    root = tmp_path_factory.mktemp("toy")
    (root / "toymodel").mkdir()
    (root / "toymodel" / "__init__.py").write_text("")
    (root / "toymodel" / "module.py").write_text(TOY_MODULE)
    (root / "conf" / "model").mkdir(parents=True)
    (root / "conf" / "model" / "toy.yaml").write_text(textwrap.dedent(TOY_CONFIG))
    return root


def run_toy(entry: Entry, toy: Path, module: str, *args: str):
    """``python -m wavelab.<module>`` with the toy's package importable and its conf searched."""
    return entry(
        module,
        f"hydra.searchpath=[file://{toy / 'conf'}]",
        *args,
        PYTHONPATH=os.pathsep.join([str(REPO), str(toy)]),
        timeout=240,
    )


def test_a_model_added_by_the_recipe_trains_resumes_samples_and_evaluates(entry, toy, corpus_file):
    small = ["data=tinyshakespeare_char", f"data.path={corpus_file}", "data.block_size=16"]
    small += ["data.batch_size=8", "data.num_val_windows=16", "trainer.accelerator=cpu"]
    small += ["trainer.val_check_interval=3", "callbacks.progress_bar=null", "logger=csv"]
    first = run_toy(entry, toy, "run", "model=toy", "trainer.max_steps=6", *small)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout + first.stderr
    assert "final (step 6): val/loss" in out  # the spec's headline metrics
    (run_dir,) = (entry.cwd / "logs" / "train" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    vocab = len(set(corpus_file.read_text()))
    assert metrics["final"]["val/loss"] < math.log(vocab)  # ln(vocab) at init: it learned
    assert (run_dir / "samples").is_dir()  # TextSamples found generate_text through the spec

    resumed = run_toy(entry, toy, "run", f"resume_dir={run_dir}", "trainer.max_steps=9")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "final (step 9)" in resumed.stdout + resumed.stderr

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    sampled = run_toy(entry, toy, "sample", f"ckpt_path={ckpt}", "max_new_tokens=20")
    assert sampled.returncode == 0, sampled.stdout[-3000:] + sampled.stderr[-3000:]
    evaluated = run_toy(entry, toy, "eval", f"ckpt_path={ckpt}")
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    assert "val/loss" in json.loads(
        (entry.cwd / "logs").rglob("eval_metrics.json").__next__().read_text()
    )


def test_without_its_config_dir_the_model_and_its_checkpoints_are_refused(entry, toy, tmp_path):
    result = entry("run", "model=toy", PYTHONPATH=os.pathsep.join([str(REPO), str(toy)]))
    assert_clean_error(result, "model/toy")
    # A checkpoint naming the toy's class is refused where no config dir registers it.
    import torch

    from wavelab.core.records import MODULE_KEY

    ckpt = tmp_path / "toy.ckpt"
    torch.save({"state_dict": {}, MODULE_KEY: "toymodel.module:BigramModule"}, ckpt)
    refused = entry(
        "sample", f"ckpt_path={ckpt}", PYTHONPATH=os.pathsep.join([str(REPO), str(toy)])
    )
    assert_clean_error(refused, "toymodel.module:BigramModule", "refused")
