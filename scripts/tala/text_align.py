"""Text-to-text alignment: the official words against the greedy transcript's timed words.

The fallback aligner (``--method text``, the seed's approach) and the source of anchors for the
CTC aligner's band. Words are aligned by a semi-global edit distance: the transcript may have
extra words before the text starts and after it ends (a spoken heading, an outro) at no cost;
inside, inserting or deleting a word costs 1 and pairing two words costs ``1 - similarity``, where
similarity is 1 for equal words and otherwise the Dice coefficient of their letter bigrams
(including a start and an end marker), hashed into 64-bit sets so that a cell costs a few
instructions. The dynamic programme runs in a diagonal band of ``band_words`` either side of the
line from (0, 0) to (N, M), widened by the difference in length, so 10,000 x 10,000 words take
tens of milliseconds; below ``FULL_DP_CELLS`` the whole matrix is used.

Words paired with similarity >= ``MATCH_SIMILARITY`` are *matches* (trusted anchors); the other
pairs keep the transcript word's time too (usually the same word misheard), and words without a
partner get times interpolated between their neighbours in proportion to their length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

MATCH_SIMILARITY = 0.5
# Speaking time per letter (with its share of the space) for text words the transcript lacks:
# read scripture runs at ~12-15 letters per second.
CHAR_S = 0.075
FULL_DP_CELLS = 16_000_000
MIN_BAND_WORDS = 200
BAND_FRACTION = 0.1
_OP_PAIR, _OP_DELETE, _OP_INSERT = 0, 1, 2


@dataclass(frozen=True)
class WordAlignment:
    """For each text word: its transcript word (-1: none), similarity and time in seconds."""

    partner: np.ndarray  # (N,) int64
    similarity: np.ndarray  # (N,) float64, 0 without a partner
    start: np.ndarray  # (N,) float64
    end: np.ndarray  # (N,) float64
    matched: np.ndarray  # (N,) bool: similarity >= MATCH_SIMILARITY


def _signature(word: str) -> int:
    marked = f"\x02{word}\x03"
    bits = 0
    for a, b in zip(marked, marked[1:]):
        bits |= 1 << ((ord(a) * 1_000_003 + ord(b) * 7_919) % 64)
    return bits


def _encode(words: Sequence[str], ids: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    word_ids = np.empty(len(words), np.int64)
    signatures = np.empty(len(words), np.uint64)
    cache: dict[str, int] = {}
    for i, word in enumerate(words):
        word_ids[i] = ids.setdefault(word, len(ids))
        if word not in cache:
            cache[word] = _signature(word)
        signatures[i] = np.uint64(cache[word])
    return word_ids, signatures


@njit(cache=True, inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True)
def _similarity(id_a, id_b, sig_a, sig_b):
    if id_a == id_b:
        return 1.0
    total = _popcount(sig_a) + _popcount(sig_b)
    if total == 0:
        return 0.0
    return 2.0 * _popcount(sig_a & sig_b) / total


@njit(cache=True)
def _banded_dp(ref_ids, ref_sigs, hyp_ids, hyp_sigs, jlo, jhi):
    """Semi-global word alignment inside the band ``jlo[i] <= j <= jhi[i]`` (row i = i text words done).

    Returns (partner per text word, similarity per text word).
    """
    n = ref_ids.shape[0]
    m = hyp_ids.shape[0]
    inf = 1e18
    offsets = np.zeros(n + 2, np.int64)
    for i in range(n + 1):
        offsets[i + 1] = offsets[i] + (jhi[i] - jlo[i] + 1)
    ops = np.empty(offsets[n + 1], np.uint8)
    prev = np.full(m + 1, inf)
    cur = np.full(m + 1, inf)
    # Row 0: transcript words before the text are free.
    for j in range(jlo[0], jhi[0] + 1):
        prev[j] = 0.0
        ops[offsets[0] + j - jlo[0]] = _OP_INSERT
    for i in range(1, n + 1):
        a, b = jlo[i], jhi[i]
        pa, pb = jlo[i - 1], jhi[i - 1]
        for j in range(a, b + 1):
            best = inf
            op = _OP_DELETE
            if pa <= j <= pb:
                best = prev[j] + 1.0
            if j >= 1 and pa <= j - 1 <= pb:
                c = prev[j - 1] + 1.0 - _similarity(ref_ids[i - 1], hyp_ids[j - 1], ref_sigs[i - 1], hyp_sigs[j - 1])
                if c < best:
                    best = c
                    op = _OP_PAIR
            if j - 1 >= a:
                c = cur[j - 1] + 1.0
                if c < best:
                    best = c
                    op = _OP_INSERT
            cur[j] = best
            ops[offsets[i] + j - a] = op
        prev, cur = cur, prev
    # Transcript words after the text are free: end at the best column of the last row.
    best_j = jlo[n]
    for j in range(jlo[n], jhi[n] + 1):
        if prev[j] < prev[best_j]:
            best_j = j
    partner = np.full(n, -1, np.int64)
    similarity = np.zeros(n)
    i, j = n, best_j
    while i > 0:
        op = ops[offsets[i] + j - jlo[i]]
        if op == _OP_PAIR:
            partner[i - 1] = j - 1
            similarity[i - 1] = _similarity(ref_ids[i - 1], hyp_ids[j - 1], ref_sigs[i - 1], hyp_sigs[j - 1])
            i -= 1
            j -= 1
        elif op == _OP_DELETE:
            i -= 1
        else:
            j -= 1
    return partner, similarity


def diagonal_band(num_ref: int, num_hyp: int, band_words: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per text row i (0..N), the transcript columns [lo, hi] the DP visits (monotone)."""
    rows = np.arange(num_ref + 1)
    if band_words is None:
        if (num_ref + 1) * (num_hyp + 1) <= FULL_DP_CELLS:
            return np.zeros(num_ref + 1, np.int64), np.full(num_ref + 1, num_hyp, np.int64)
        band_words = max(MIN_BAND_WORDS, abs(num_hyp - num_ref) + int(BAND_FRACTION * max(num_ref, num_hyp)))
    centre = rows * (num_hyp / max(num_ref, 1))
    lo = np.clip(np.floor(centre - band_words), 0, num_hyp).astype(np.int64)
    hi = np.clip(np.ceil(centre + band_words), 0, num_hyp).astype(np.int64)
    return lo, hi


def align_words(ref_words: Sequence[str], hyp_words: Sequence[str], hyp_start: Sequence[float],
                hyp_end: Sequence[float], *, band_words: int | None = None, start_s: float = 0.0,
                end_s: float | None = None, groups: Sequence[int] | None = None) -> WordAlignment:
    """Align text words to timed transcript words; times for every text word (see module docstring).

    ``start_s``/``end_s`` bound the interpolation of text words before the first / after the last
    transcript partner (default: the transcript's first start / last end). ``groups`` (e.g. the
    verse of each text word): see :func:`_interpolate`.
    """
    ids: dict[str, int] = {}
    ref_ids, ref_sigs = _encode(ref_words, ids)
    hyp_ids, hyp_sigs = _encode(hyp_words, ids)
    n, m = len(ref_words), len(hyp_words)
    hyp_start = np.asarray(hyp_start, np.float64)
    hyp_end = np.asarray(hyp_end, np.float64)
    if n == 0:
        empty = np.zeros(0)
        return WordAlignment(np.zeros(0, np.int64), empty, empty, empty, np.zeros(0, bool))
    if m == 0:
        partner, similarity = np.full(n, -1, np.int64), np.zeros(n)
    else:
        lo, hi = diagonal_band(n, m, band_words)
        partner, similarity = _banded_dp(ref_ids, ref_sigs, hyp_ids, hyp_sigs, lo, hi)
    if end_s is None:
        end_s = float(hyp_end[-1]) if m else start_s
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    paired = partner >= 0
    start[paired] = hyp_start[partner[paired]]
    end[paired] = hyp_end[partner[paired]]
    lengths = np.array([len(w) + 1 for w in ref_words], np.float64)
    _interpolate(start, end, lengths, start_s, end_s, None if groups is None else np.asarray(groups))
    return WordAlignment(partner, similarity, start, end, similarity >= MATCH_SIMILARITY)


def _interpolate(start: np.ndarray, end: np.ndarray, lengths: np.ndarray, start_s: float, end_s: float,
                 groups: np.ndarray | None = None, char_s: float = CHAR_S) -> None:
    """Fill NaN runs in place from the neighbours' times.

    Without ``groups`` a run shares the gap between its neighbours in proportion to its words'
    lengths. With ``groups`` (e.g. the verse of each word) the words of a run that belong to the
    left (right) neighbour's group get ``char_s`` per letter right after (before) it, so a verse's
    unrecognised last word is not stretched over the pause after it; the rest shares what is left.
    """
    n = len(start)
    i = 0
    while i < n:
        if not np.isnan(start[i]):
            i += 1
            continue
        j = i
        while j < n and np.isnan(start[j]):
            j += 1
        gap_start = end[i - 1] if i > 0 else min(start_s, start[j] if j < n else start_s)
        gap_end = start[j] if j < n else max(end_s, gap_start)
        gap_end = max(gap_end, gap_start)
        left, right = i, j  # words [i, left) hang on the left neighbour, [right, j) on the right one
        if groups is not None:
            if i > 0:
                while left < j and groups[left] == groups[i - 1]:
                    left += 1
            if j < n:
                while right > left and groups[right - 1] == groups[j]:
                    right -= 1
        need = char_s * (lengths[i:left].sum() + lengths[right:j].sum())
        if left == i and right == j or need >= gap_end - gap_start:
            _share(start, end, lengths, i, j, gap_start, gap_end)
        else:
            head_end = gap_start + char_s * lengths[i:left].sum()
            tail_start = gap_end - char_s * lengths[right:j].sum()
            _share(start, end, lengths, i, left, gap_start, head_end)
            _share(start, end, lengths, right, j, tail_start, gap_end)
            _share(start, end, lengths, left, right, head_end, tail_start)
        i = j


def _share(start: np.ndarray, end: np.ndarray, lengths: np.ndarray, i: int, j: int, t0: float, t1: float) -> None:
    if j <= i:
        return
    edges = t0 + (t1 - t0) * np.concatenate([[0.0], np.cumsum(lengths[i:j])]) / lengths[i:j].sum()
    start[i:j] = edges[:-1]
    end[i:j] = edges[1:]


@njit(cache=True)
def levenshtein(a, b):
    """Edit distance of two int arrays (code points)."""
    n = a.shape[0]
    m = b.shape[0]
    row = np.arange(m + 1)
    for i in range(1, n + 1):
        diag = row[0]
        row[0] = i
        for j in range(1, m + 1):
            above = row[j]
            cost = 0 if a[i - 1] == b[j - 1] else 1
            best = diag + cost
            if above + 1 < best:
                best = above + 1
            if row[j - 1] + 1 < best:
                best = row[j - 1] + 1
            row[j] = best
            diag = above
    return row[m]


def codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)


def char_errors(reference: str, hypothesis: str) -> int:
    return int(levenshtein(codepoints(reference), codepoints(hypothesis)))


def text_cer(ref_words: Sequence[str], hyp_words: Sequence[str], alignment: WordAlignment) -> float:
    """Character error rate of the transcript against the text, from the word alignment.

    Paired words count their letter edits, text words without a partner their letters, transcript
    words between the first and the last partner that pair with nothing their letters; transcript
    words outside (a heading, an outro) do not count. Spaces are not counted.
    """
    total = sum(len(w) for w in ref_words)
    if total == 0:
        return 0.0
    errors = 0
    for word, partner in zip(ref_words, alignment.partner):
        errors += len(word) if partner < 0 else char_errors(word, hyp_words[partner])
    paired = alignment.partner[alignment.partner >= 0]
    if len(paired):
        used = np.zeros(len(hyp_words), bool)
        used[paired] = True
        for j in range(int(paired.min()), int(paired.max()) + 1):
            if not used[j]:
                errors += len(hyp_words[j])
    return errors / total
