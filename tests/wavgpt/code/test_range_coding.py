"""Range coding: every id round-trips under any table, within a few bits of the ideal, and a
row's table does not depend on the rows computed with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wavelab.wavgpt.code import range_coding
from wavelab.wavgpt.code.exact_format import ExactBlock, ExactFile, ids_crc

V = 30522  # the WordPiece vocabulary of all-MiniLM-L6-v2


def random_block(seed: int, m: int, sharp: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    logp = torch.log_softmax(sharp * torch.randn(m, V, generator=gen), dim=-1)
    probabilities = range_coding.tables(logp)
    rng = np.random.default_rng(seed)
    p = probabilities / probabilities.sum(1, keepdims=True)
    symbols = np.array([rng.choice(V, p=row) for row in p])
    return symbols, probabilities


@pytest.mark.parametrize("m", [0, 1, 7, 62])
def test_ids_round_trip_within_32_bits_of_the_ideal(m):
    symbols, probabilities = random_block(m, m)
    payload = range_coding.encode(symbols, probabilities)
    assert np.array_equal(range_coding.decode_all(payload, probabilities), symbols)
    stream = range_coding.Decoder(payload)
    assert [stream.next(row) for row in probabilities] == symbols.tolist()
    ideal = range_coding.ideal_bits(symbols, probabilities) if m else 0.0
    # the length is sent beside it, so a payload may end a few bits short of the ideal
    assert ideal - 8 <= 8 * len(payload) <= ideal + 32


def test_an_id_the_table_calls_impossible_still_round_trips():
    logp = torch.full((3, V), -1e30)
    logp[:, 0] = 0.0  # all the mass on id 0
    probabilities = range_coding.tables(logp)
    symbols = np.array([V - 1, 5, 0])
    payload = range_coding.encode(symbols, probabilities)
    assert range_coding.decode_all(payload, probabilities).tolist() == symbols.tolist()
    # the floor count of an id of probability ~0: 1 of 2^24, so about 24 bits
    assert 8 * len(payload) <= 2 * 24 + 32 + 32


def test_a_rows_table_is_the_same_alone_or_among_others():
    logp = torch.log_softmax(torch.randn(9, V), dim=-1)
    together = range_coding.tables(logp)
    for t in range(len(logp)):
        assert np.array_equal(range_coding.tables(logp[t : t + 1])[0], together[t])


def test_trailing_bytes_the_decoder_pads_back_are_dropped():
    lengths = []
    for seed in range(20):
        symbols, probabilities = random_block(100 + seed, 30)
        payload = range_coding.encode(symbols, probabilities)
        assert np.array_equal(range_coding.decode_all(payload, probabilities), symbols)
        lengths.append(len(payload) % 4)
    assert any(lengths)  # not whole words every time: bytes were dropped


def exact_file() -> ExactFile:
    symbols, probabilities = random_block(1, 5)
    ids = [101, *symbols.tolist(), 102]
    block = ExactBlock(len(ids), b"code", range_coding.encode(symbols, probabilities), ids_crc(ids))
    return ExactFile("prior", 1.0, 0.5, bytes(range(8)), (block, block))


def test_the_exact_file_round_trips():
    file = exact_file()
    assert ExactFile.from_bytes(file.to_bytes()) == file


def test_a_file_cut_at_any_byte_or_altered_anywhere_is_refused():
    data = exact_file().to_bytes()
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            ExactFile.from_bytes(data[:cut])
    for i in range(len(data)):
        altered = bytearray(data)
        altered[i] ^= 0x10
        with pytest.raises(ValueError):
            ExactFile.from_bytes(bytes(altered))


def test_an_unknown_version_or_mode_is_refused_by_name():
    file = exact_file()
    with pytest.raises(ValueError, match="mode"):
        ExactFile("beam", 1.0, 1.0, bytes(8), ())
    data = bytearray(file.to_bytes()[:-4])
    data[4] = 9
    import zlib

    with pytest.raises(ValueError, match="version 9"):
        ExactFile.from_bytes(bytes(data) + zlib.crc32(bytes(data)).to_bytes(4, "little"))


def test_bits_no_table_can_have_produced_are_a_value_error():
    symbols, probabilities = random_block(3, 20)
    payload = range_coding.encode(symbols, probabilities)
    for damaged in (bytes(len(payload)), b"\xff" * len(payload), payload[: len(payload) // 2]):
        try:
            decoded = range_coding.decode_all(damaged, probabilities)
        except ValueError as e:
            assert "damaged" in str(e)
        else:
            assert not np.array_equal(decoded, symbols)
