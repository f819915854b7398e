"""A wavelab tokenizer saved for transformers: AutoTokenizer encodes and decodes as wavelab."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from wavelab.data.tokenizers import BPETokenizer, CharTokenizer, WordPieceTokenizer
from wavelab.wavegpt.hf.tokenizer_files import save_tokenizer

TRAIN = "ROMEO:\nBut soft, what light through yonder window breaks?\n\tIt is the east!  " * 4
SAMPLE = "What light?\nIt is\tthe east,  and Juliet is the sun!"


@pytest.mark.parametrize("kind", ["char", "bpe", "wordpiece"])
def test_auto_tokenizer_encodes_as_wavelab(kind, tmp_path, tiny_encoder_dir):
    if kind == "char":
        tokenizer = CharTokenizer.train(TRAIN + SAMPLE)
    elif kind == "bpe":
        tokenizer = BPETokenizer.train(TRAIN, 300)
    else:
        tokenizer = WordPieceTokenizer.from_model_dir(str(tiny_encoder_dir))
    save_tokenizer(tokenizer, tmp_path)
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    ids = auto(SAMPLE)["input_ids"]
    assert ids == tokenizer.encode(SAMPLE)
    assert len(ids) > 5  # a sample that encodes to nothing would prove nothing
    assert auto.decode(ids) == tokenizer.decode(ids)
    if kind != "wordpiece":  # WordPiece lower-cases and re-spaces; the others round-trip
        assert auto.decode(ids) == SAMPLE
