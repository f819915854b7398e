"""Decoding with a language-model prior: beam search finds what it promises, a prior trained on
the encoder's WordPiece moves ambiguous positions toward likely text, λ = 0 is the head alone,
and the study entry reproduces a run's own figures at λ = 0."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from helpers.cli import assert_clean_error
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from wavelab.core.checkpoints import load_module
from wavelab.core.errors import ConfigError
from wavelab.data.lm import LMDataModule
from wavelab.wavgpt.codec import WavGPTCodec
from wavelab.wavgpt.codec.prior import PriorDecoder, check_prior
from wavelab.wavgpt.config import PriorSettings

pytestmark = pytest.mark.usefixtures("single_thread")


def encoder_vocab(tiny_encoder_dir) -> dict[str, int]:
    return AutoTokenizer.from_pretrained(tiny_encoder_dir).get_vocab()


def test_the_wordpiece_lm_data_is_the_encoders_ids_of_the_text(tiny_encoder_dir, tmp_path):
    text = "The wave, let lab!\nA text is in it.\n" * 50
    (tmp_path / "t.txt").write_text(text)
    # as a real encoder's tokenizer.json does, this one truncates to its model's length
    truncating = tmp_path / "encoder"
    truncating.mkdir()
    tokenizer = Tokenizer.from_file(str(tiny_encoder_dir / "tokenizer.json"))
    tokenizer.enable_truncation(16)
    tokenizer.save(str(truncating / "tokenizer.json"))
    data = LMDataModule(
        tokenizer="wordpiece",
        wordpiece_from=str(truncating),
        path=str(tmp_path / "t.txt"),
        block_size=8,
        batch_size=2,
        cache_dir=str(tmp_path / "cache"),
    )
    data.prepare_data()
    data.setup("fit")
    ids = [*data.splits["train"][:].tolist(), *data.splits["val"][:].tolist()]
    expected = AutoTokenizer.from_pretrained(tiny_encoder_dir)(text, add_special_tokens=False)
    assert ids == expected["input_ids"]
    assert data.tokenizer.kind == "wordpiece" and data.tokenizer.vocab() == encoder_vocab(
        tiny_encoder_dir
    )
    with pytest.raises(ConfigError, match=r"data\.tokenizer=wordpiece needs data\.wordpiece_from"):
        LMDataModule(tokenizer="wordpiece", path=str(tmp_path / "t.txt"))
    with pytest.raises(ConfigError, match=r"data.wordpiece_from='/nope'.*tokenizer.json"):
        LMDataModule(tokenizer="wordpiece", wordpiece_from="/nope", path=str(tmp_path / "t.txt"))


def random_head(n: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(3 * torch.randn(n, vocab, generator=g), dim=-1)


def test_weight_0_is_the_heads_argmax(made):
    _, ckpts, _ = made
    lm = load_module(str(ckpts["prior"]))
    ids = torch.randint(lm.tokenizer.vocab_size, (3, 7))
    assert torch.allclose(lm.next_token_logits(ids), lm(ids)[:, -1], atol=1e-6)
    decoder = PriorDecoder(lm, PriorSettings(weight=0.0))
    for n, seed in ((2, 0), (5, 1), (17, 2), (40, 3)):
        head = random_head(n, lm.tokenizer.vocab_size, seed)
        assert decoder.decode(head) == head.argmax(-1).tolist()


def test_a_wide_beam_finds_the_best_sequence_and_a_narrow_one_no_better(made):
    _, ckpts, _ = made
    lm = load_module(str(ckpts["prior"]))
    n, candidates = 6, 3  # a body of 4 tokens: 3**4 = 81 sequences
    head = random_head(n, lm.tokenizer.vocab_size, seed=4)
    wide = PriorDecoder(lm, PriorSettings(weight=1.0, beam=81, candidates=candidates))
    top = head[1:-1].topk(candidates, dim=-1).indices.tolist()
    ends = head.argmax(-1).tolist()
    sequences = [[ends[0], *body, ends[-1]] for body in itertools.product(*top)]
    best = max(sequences, key=lambda ids: wide.score(head, ids))
    found = wide.decode(head)
    assert found == best
    narrow = PriorDecoder(lm, PriorSettings(weight=1.0, beam=1, candidates=candidates))
    assert wide.score(head, narrow.decode(head)) <= wide.score(head, found) + 1e-5


def test_the_prior_settles_what_the_head_leaves_open(made, tiny_encoder_dir):
    """A head torn between "let" and "text" after "the wave": the pattern's prior says "let"."""
    _, ckpts, _ = made
    lm = load_module(str(ckpts["prior"]))
    vocab = encoder_vocab(tiny_encoder_dir)
    words = ["[CLS]", "the", "wave", "let", "lab", "[SEP]"]
    head = torch.full((len(words), lm.tokenizer.vocab_size), -20.0)
    for t, word in enumerate(words):
        head[t, vocab[word]] = 0.0
    head[3, vocab["let"]] = head[3, vocab["text"]] = -0.7  # equally likely to the head
    head[3, vocab["text"]] += 0.01  # the head alone takes "text"
    assert PriorDecoder(lm, PriorSettings(weight=0.0)).decode(head)[3] == vocab["text"]
    assert PriorDecoder(lm, PriorSettings(weight=1.0)).decode(head)[3] == vocab["let"]


def test_a_prior_must_be_a_language_model_on_the_encoders_wordpiece(made, tiny_encoder_dir):
    _, ckpts, _ = made
    vocab = encoder_vocab(tiny_encoder_dir)
    check_prior(load_module(str(ckpts["prior"])), vocab, "prior")
    with pytest.raises(ConfigError, match="reads char tokens"):
        check_prior(load_module(str(ckpts["char"])), vocab, "prior")
    with pytest.raises(ConfigError, match="not a language model"):
        check_prior(load_module(str(ckpts["wavgpt"])), vocab, "prior")
    with pytest.raises(ConfigError, match="not the encoder's"):
        check_prior(load_module(str(ckpts["prior"])), {"[PAD]": 0}, "prior")
    with pytest.raises(ConfigError, match=r"prior_beam=0 is invalid"):
        PriorSettings(0.5, 0, 8)


def test_the_entry_reproduces_the_runs_figures_at_weight_0(made, tmp_path):
    entry, ckpts, root = made
    out = tmp_path / "prior.json"
    args = [f"ckpt_paths=[{ckpts['wavgpt']}]", f"prior={ckpts['prior']}", "max_blocks=8"]
    result = entry("wavgpt.study.prior_eval", *args, "weights=[0,1]", f"out={out}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    scored = json.loads(out.read_text())
    final = json.loads((root / "wavgpt" / "metrics.json").read_text())["final"]
    plain = scored[f"{ckpts['wavgpt']} weight=0.0"]
    assert plain["blocks"] == 8
    assert plain["acc"] == pytest.approx(final["val/acc"], abs=1e-6)
    assert plain["exact_blocks"] == pytest.approx(final["val/exact_blocks"], abs=1e-6)
    assert plain["bits_per_token"] == pytest.approx(final["val/bits_per_token"], rel=1e-5)
    for weight in ("0.0", "1.0"):
        row = scored[f"{ckpts['wavgpt']} weight={weight}"]
        assert 0 <= row["acc"] <= row["acc_candidates"] <= 1  # a decoded token is a candidate
        assert row["exact_blocks"] <= row["exact_blocks_candidates"]
    one = tmp_path / "one.json"
    result = entry("wavgpt.study.prior_eval", *args, "weights=[0]", "candidates=1", f"out={one}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    argmax = json.loads(one.read_text())[f"{ckpts['wavgpt']} weight=0.0"]
    assert argmax["acc_candidates"] == pytest.approx(plain["acc"])  # one candidate: the argmax
    assert argmax["exact_blocks_candidates"] == pytest.approx(plain["exact_blocks"])
    assert_clean_error(entry("wavgpt.study.prior_eval", *args[:2], "weights=[-1]"), "weights=-1")
    bad = [f"ckpt_paths=[{ckpts['wavgpt']}]", f"prior={ckpts['char']}"]
    assert_clean_error(entry("wavgpt.study.prior_eval", *bad), "prior=", "char")


def test_the_codec_decodes_with_a_prior_and_refuses_a_wrong_one(made):
    entry, ckpts, _ = made

    codec = WavGPTCodec.from_checkpoint(ckpts["wavgpt"])
    codes = codec.encode(["the wave let lab", "a text is in it"])
    plain = codec.decode(codes)
    lm = load_module(str(ckpts["prior"]))
    codec.prior = PriorDecoder(lm, PriorSettings(weight=0.0))
    assert codec.decode(codes) == plain  # λ = 0: the head alone
    codec.prior = PriorDecoder(lm, PriorSettings(weight=1.0))
    assert len(codec.decode(codes)) == 2
    args = ["roundtrip", f"ckpt_path={ckpts['wavgpt']}", "text=the wave let lab"]
    result = entry("wavgpt.codec", *args, f"prior={ckpts['prior']}", "prior_weight=1")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "decoded:" in result.stdout
    assert_clean_error(entry("wavgpt.codec", *args, f"prior={ckpts['char']}"), "prior=", "char")
    assert_clean_error(
        entry("wavgpt.codec", *args, f"prior={ckpts['prior']}", "prior_beam=0"), "prior_beam=0"
    )
