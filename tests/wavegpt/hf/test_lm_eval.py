"""lm-evaluation-harness reads an export offline: a local YAML + JSONL task of rolling
log-likelihood (perplexity) gives the bits per byte that wavelab's own logits give.

Needs lm-eval, which the dev extra installs (``pip install -e .[lmeval]`` for users)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers.cli import Entry
from helpers.lm_checkpoint import fit_checkpoint, lm_module

from wavelab.core.checkpoints import load_module
from wavelab.data.tokenizers import CharTokenizer

lm_eval = pytest.importorskip("lm_eval")
pytestmark = pytest.mark.usefixtures("single_thread")
DOCS = ["But soft, what light through yonder window?", "It is the east, and Juliet."]
PREFIX = 0  # wavelab's vocabularies have no end-of-text token: lm-eval is given one to condition on


def expected_bits_per_byte(module) -> float:
    nll = 0.0
    for doc in DOCS:
        ids = torch.tensor([[PREFIX, *module.tokenizer.encode(doc)]])
        with torch.no_grad():
            logp = torch.log_softmax(module(ids[:, :-1], torch.full_like(ids[:, :-1], -1)), -1)
        nll -= logp[0].gather(-1, ids[0, 1:, None]).sum().item()
    return nll / sum(len(d.encode()) for d in DOCS) / math.log(2)


@pytest.mark.parametrize("model", ["gpt", "wavegpt"])
def test_lm_eval_perplexity_of_an_export_is_wavelabs(model, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = CharTokenizer.train("".join(DOCS))
    ckpt = fit_checkpoint(lm_module(model, tokenizer, block_size=64), tmp_path / "m.ckpt")
    result = Entry(tmp_path, cache_dir)("export", f"ckpt_path={ckpt}", f"out={tmp_path / 'hf'}")
    assert result.returncode == 0, result.stderr[-3000:]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "docs.yaml").write_text(
        "task: wavelab_docs\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {tmp_path / 'docs.jsonl'}\n"
        "test_split: test\n"
        "output_type: loglikelihood_rolling\n"
        'doc_to_text: ""\n'
        'doc_to_target: "{{text}}"\n'
        "metric_list:\n  - metric: bits_per_byte\n"
    )
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    results = simple_evaluate(
        model="hf",
        model_args=f"pretrained={tmp_path / 'hf'},trust_remote_code=True,prefix_token_id={PREFIX}",
        tasks=["wavelab_docs"],
        task_manager=TaskManager(include_path=str(tmp_path / "tasks")),
        device="cpu",
        batch_size=1,
    )
    measured = results["results"]["wavelab_docs"]["bits_per_byte,none"]
    assert measured == pytest.approx(expected_bits_per_byte(load_module(ckpt)), rel=1e-5)
