"""A token split read with pread gives the memmap's windows, in this process and in a
DataLoader's worker processes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from wavelab.data.lm import WindowDataset
from wavelab.data.token_file import TokenFile


@pytest.fixture
def split(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 60_000, 10_001).astype(np.uint16)
    path = tmp_path / "train.bin"
    tokens.tofile(path)
    return tokens, TokenFile(path, "uint16")


def test_slices_are_the_arrays_slices(split):
    tokens, file = split
    assert len(file) == len(tokens)
    for a, b in [(0, 1), (0, 65), (9_936, 10_001), (5, 5), (10_000, 20_000), (-10, None)]:
        np.testing.assert_array_equal(file[a:b], tokens[a:b])
    np.testing.assert_array_equal(np.asarray(file), tokens)
    with pytest.raises(TypeError, match="contiguous slices"):
        file[::2]


def test_a_pickled_file_opens_its_own_descriptor(split):
    tokens, file = split
    file[0:4]  # opens this process's descriptor, which a pickle must not carry
    copy = pickle.loads(pickle.dumps(file))
    assert copy._fd is None
    np.testing.assert_array_equal(copy[100:200], tokens[100:200])


def test_worker_processes_read_the_same_windows(split):
    tokens, file = split
    on_file, in_memory = WindowDataset(file, 64), WindowDataset(tokens, 64)
    loader = DataLoader(on_file, batch_size=16, num_workers=2, shuffle=False)
    for i, (x_prev, x, y) in enumerate(loader):
        if i == 3:
            break
        for j in range(16):
            expected = in_memory[i * 16 + j]
            for got, want in zip((x_prev[j], x[j], y[j]), expected, strict=True):
                assert torch.equal(got, want)


def test_a_file_of_rows_reads_rows(tmp_path):
    blocks = np.random.default_rng(1).random((7, 4, 3)).astype(np.float16)
    blocks.tofile(tmp_path / "h.bin")
    file = TokenFile(tmp_path / "h.bin", "float16", (4, 3))
    assert len(file) == 7 and file.shape == (7, 4, 3) and file.nbytes == blocks.nbytes
    np.testing.assert_array_equal(file[2], blocks[2])
    np.testing.assert_array_equal(file[-1], blocks[-1])
    np.testing.assert_array_equal(file[1:5], blocks[1:5])
    np.testing.assert_array_equal(np.asarray(file), blocks)
    with pytest.raises(IndexError):
        file[7]
    copy = pickle.loads(pickle.dumps(file))
    np.testing.assert_array_equal(copy[3], blocks[3])
