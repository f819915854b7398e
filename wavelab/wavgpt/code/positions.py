"""Entropy coding of the kept positions of a WavGPT code: per-band adaptive Rice codes of gaps.

The positions of a code are flat indices t * d + c into its (T, d) coefficients, increasing. The
wavelet bands are contiguous row ranges (``band_bounds``), and the filter keeps them at very
different rates (the approximation almost fully, the finest details rarely), so each band gets
its own code: the gaps g (zeros skipped between kept coefficients, counted from the band's start)
of a band are Rice-coded with the parameter r that makes that band smallest, i.e. r low bits of
g in binary, then g >> r in unary. A Rice code is the optimal prefix code (within a fraction of
a bit per gap) for the geometric gaps of a constant keep rate, so per band it is close to the
entropy of the band's keep rate, and it can beat the one-rate ideal log2 C(T·d, k) of
``sparse_code.code_bits`` since the rates differ between bands.

Why Rice and not an arithmetic/ANS coder with per-band keep rates: on real codes the Rice stream
stays within a few percent of the per-band Bernoulli entropy (the size such a coder approaches,
before it sends the rates), and that small gap buys no dependency and
coding in a few numpy calls, with no Python loop per coefficient, where an ANS coder codes all
T·d keep/drop symbols.

Stream layout, bits most significant first, bit-packed and zero-padded to whole bytes:

    per band, G = levels + 1 of them:    r_b in 5 bits
    per band but the last:               k_b, the band's kept count, in bit_length(n_b) bits
                                         (n_b = coefficients of the band; the last k_b is
                                         k - the others)
    per band, per kept coefficient:      the r_b low bits of its gap
    per kept coefficient, in order:      gap >> r_b zeros, then a one

Keeping the low bits and the unary parts in two runs makes decoding vectorised: the unary run is
split at its ones with one ``flatnonzero``.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

RICE_PARAMETER_BITS = 5  # r <= 31: gaps are < 2^24 (sparse_code.MAX_COEFFICIENTS)


def band_bounds(block_size: int, d: int, levels: int) -> np.ndarray:
    """(levels + 2,) int64 flat boundaries of the bands: band b is [bounds[b], bounds[b+1]).

    Rows follow ``LiftingDWT``'s layout [approx_L, detail_L, ..., detail_1]: approx_L and
    detail_l hold block_size >> levels and block_size >> l rows (``lifting.band_index``)."""
    rows = [0] + [block_size >> level for level in range(levels, -1, -1)]
    return np.asarray(rows, dtype=np.int64) * d


def check_levels(block_size: int, levels: int) -> None:
    """Raises ValueError unless every band of a ``levels``-level code has at least one row."""
    if not 0 <= levels < block_size.bit_length():
        raise ValueError(
            f"levels={levels} is invalid for block_size={block_size}: must be in "
            f"[0, {block_size.bit_length() - 1}]"
        )


def _gaps(local: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Zeros skipped before each index; local increasing within each run of equal segment."""
    previous = np.empty_like(local)
    previous[1:] = local[:-1]
    first = np.ones(len(local), dtype=bool)
    first[1:] = segment[1:] != segment[:-1]
    previous[first] = -1
    return local - previous - 1


def _rice_choice(gaps: np.ndarray, segment: np.ndarray, n_segments: int):
    """Best Rice parameter and its size in bits, per segment: ((n,) int64, (n,) int64).

    The cost k * (1 + r) + sum(g >> r) is convex in r and least near log2(mean gap); the four
    parameters around it are tried and the smallest (first on ties) wins."""
    counts = np.bincount(segment, minlength=n_segments)
    totals = np.bincount(segment, weights=gaps, minlength=n_segments)
    mean = totals / np.maximum(counts, 1)
    centre = np.floor(np.log2(mean + 1)).astype(np.int64)
    candidates = np.clip(centre[:, None] + np.arange(-2, 2), 0, 2**RICE_PARAMETER_BITS - 1)
    costs = np.stack(
        [
            counts * (1 + r)
            + np.bincount(segment, weights=gaps >> r[segment], minlength=n_segments).astype(
                np.int64
            )
            for r in candidates.T
        ],
        axis=1,
    )  # (n, 4)
    best = costs.argmin(axis=1)
    rows = np.arange(n_segments)
    return candidates[rows, best], costs[rows, best]


def _prefix_widths(bounds: np.ndarray) -> np.ndarray:
    """Bit widths of the stream's prefix: G Rice parameters, then G - 1 band counts."""
    sizes = np.diff(bounds)
    count_widths = [int(n).bit_length() for n in sizes[:-1]]
    return np.asarray([RICE_PARAMETER_BITS] * len(sizes) + count_widths, dtype=np.int64)


def _uint_bits(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Unsigned ints of varying widths -> their bits, most significant first, concatenated."""
    ends = np.cumsum(widths)
    owner = np.repeat(np.arange(len(widths)), widths)
    shift = ends[owner] - 1 - np.arange(int(ends[-1]) if len(ends) else 0)
    return ((values[owner] >> shift) & 1).astype(np.uint8)


def _read_uints(bits: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Inverse of ``_uint_bits``: len(widths) unsigned ints from the first sum(widths) bits."""
    ends = np.cumsum(widths)
    owner = np.repeat(np.arange(len(widths)), widths)
    shift = ends[owner] - 1 - np.arange(len(owner))
    weights = bits[: len(owner)].astype(np.int64) << shift
    return np.bincount(owner, weights=weights, minlength=len(widths)).astype(np.int64)


def encode_positions(positions: np.ndarray, bounds: np.ndarray) -> bytes:
    """(k,) increasing flat positions -> the Rice stream described in the module docstring."""
    n_bands = len(bounds) - 1
    band = np.searchsorted(bounds, positions, side="right") - 1  # (k,)
    gaps = _gaps(positions - bounds[band], band)
    rice, _ = _rice_choice(gaps, band, n_bands)
    counts = np.bincount(band, minlength=n_bands)
    prefix = np.concatenate([rice, counts[:-1]])
    r = rice[band]
    quotients = gaps >> r
    unary = np.zeros(int(quotients.sum()) + len(gaps), dtype=np.uint8)
    unary[np.cumsum(quotients + 1) - 1] = 1
    bits = np.concatenate(
        [
            _uint_bits(prefix, _prefix_widths(bounds)),
            _uint_bits(gaps & ((1 << r) - 1), r),
            unary,
        ]
    )
    return np.packbits(bits).tobytes()


def decode_positions(data: bytes, k: int, bounds: np.ndarray) -> np.ndarray:
    """The Rice stream of k positions -> (k,) int64 positions; ValueError if it is corrupt."""
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    widths = _prefix_widths(bounds)
    if len(bits) < widths.sum():
        raise ValueError("corrupt WavGPT code: the position stream is shorter than its prefix")
    n_bands = len(bounds) - 1
    prefix = _read_uints(bits, widths)
    rice, counts = prefix[:n_bands], prefix[n_bands:]
    counts = np.append(counts, k - counts.sum())
    if counts[-1] < 0 or np.any(counts > np.diff(bounds)):
        raise ValueError("corrupt WavGPT code: band counts do not add up to k")
    band = np.repeat(np.arange(n_bands), counts)  # (k,)
    r = rice[band]
    start = int(widths.sum())
    low_end = start + int(r.sum())
    ones = np.flatnonzero(bits[low_end:])
    if low_end > len(bits) or len(ones) < k:
        raise ValueError("corrupt WavGPT code: the position stream ends early")
    used = low_end + (int(ones[k - 1]) + 1 if k else 0)
    if -(-used // 8) != len(data):
        raise ValueError("corrupt WavGPT code: trailing bytes after the position stream")
    low = _read_uints(bits[start:low_end], r)
    quotients = np.diff(ones[:k], prepend=-1) - 1
    steps = (quotients << r) + low + 1  # (k,) distance from the previous kept index
    starts = np.cumsum(counts) - counts  # first coefficient of each band in the stream
    # a cumulative sum restarted at every band: subtract each band's running total before it
    running = np.concatenate([[0], np.cumsum(steps)])  # (k + 1,)
    positions = running[1:] - np.repeat(running[starts], counts) - 1 + bounds[band]
    if k and np.any(positions >= bounds[band + 1]):
        raise ValueError("corrupt WavGPT code: a position falls outside its band")
    return positions


def position_bits(keep: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """(B,) int64 bytes * 8 that ``encode_positions`` writes for each row of a (B, T * d) keep
    mask, without building the streams: the same Rice choice, one pass per band."""
    B = keep.shape[0]
    total = np.full(B, int(_prefix_widths(bounds).sum()), dtype=np.int64)
    for lo, hi in pairwise(bounds):  # one vectorised pass per band (<= 17)
        rows, cols = np.nonzero(keep[:, lo:hi])  # row-major: cols increase within a row
        _, bits = _rice_choice(_gaps(cols.astype(np.int64), rows), rows, B)
        total += bits
    return 8 * -(-total // 8)
