"""Text-to-text alignment: the official words against the greedy transcript's timed words.

The fallback aligner (``--method text``, the seed's approach), the source of anchors for the CTC
aligner's band, and the check that a text belongs to its recording. Words are aligned by a
semi-global edit distance: the transcript may have extra words before the text starts and after
it ends (a spoken heading, an outro) at no cost. Inside, costs are in letters, so that the total
approximates the character edit distance: deleting or inserting a word costs its length, pairing
two words ``(1 - similarity) * max(lengths)``, and a text word may also pair with two transcript
words (a word the model split: "criou" / "cre ou") or two text words with one transcript word
("e houve" / "eouve") for the same cost on the joined letters plus one (the space). Similarity
is 1 for equal words and otherwise the Dice coefficient of their letter bigrams (with start and
end markers), hashed into 64-bit sets so that a cell costs a few instructions. The programme runs
in a diagonal band of ``band_words`` either side of the line from (0, 0) to (N, M), widened by the
difference in length; 10,000 x 10,000 words take about 0.1 s. Below ``FULL_DP_CELLS`` the whole
matrix is used.

Words paired with similarity >= ``MATCH_SIMILARITY`` are *matches* (trusted anchors); the other
pairs keep the transcript words' time too (usually the same word misheard), and text words
without a partner get times interpolated between their neighbours (see :func:`_interpolate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from tala.ctc_text import char_edits

MATCH_SIMILARITY = 0.5
# Speaking time per letter (with its share of the space) for text words the transcript lacks:
# read scripture runs at ~12-15 letters per second.
CHAR_S = 0.075
FULL_DP_CELLS = 16_000_000
MIN_BAND_WORDS = 200
BAND_FRACTION = 0.1
_OP_PAIR, _OP_DELETE, _OP_INSERT, _OP_MERGE, _OP_SPLIT = 0, 1, 2, 3, 4
_START, _END = 2, 3  # word boundary markers in the bigram sets


@dataclass(frozen=True)
class WordAlignment:
    """For each text word: its transcript words ``partner..partner_last`` (-1: none), similarity, time (s)."""

    partner: np.ndarray  # (N,) int64 first transcript word
    partner_last: np.ndarray  # (N,) int64 last transcript word (partner + 1 for a split word)
    similarity: np.ndarray  # (N,) float64, 0 without a partner
    start: np.ndarray  # (N,) float64
    end: np.ndarray  # (N,) float64
    matched: np.ndarray  # (N,) bool: similarity >= MATCH_SIMILARITY


@njit(cache=True, inline="always")
def _bigram_bit(a, b):
    return np.uint64(1) << np.uint64((a * 1_000_003 + b * 7_919) % 64)


@dataclass(frozen=True)
class _Words:
    ids: np.ndarray  # int64 word id (equal words, equal ids)
    length: np.ndarray  # int64 letters
    inner: np.ndarray  # uint64 bigram set of the letters alone
    first: np.ndarray  # int64 first letter's code point
    last: np.ndarray  # int64 last letter's code point


def _encode(words: Sequence[str], ids: dict[str, int]) -> _Words:
    n = len(words)
    out = _Words(np.empty(n, np.int64), np.empty(n, np.int64), np.zeros(n, np.uint64), np.zeros(n, np.int64),
                 np.zeros(n, np.int64))
    cache: dict[str, tuple[int, int]] = {}
    for i, word in enumerate(words):
        out.ids[i] = ids.setdefault(word, len(ids))
        out.length[i] = len(word)
        if word:
            out.first[i], out.last[i] = ord(word[0]), ord(word[-1])
        if word not in cache:
            bits = 0
            for a, b in zip(word, word[1:]):
                bits |= 1 << ((ord(a) * 1_000_003 + ord(b) * 7_919) % 64)
            cache[word] = bits
        out.inner[i] = np.uint64(cache[word])
    return out


@njit(cache=True, inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True)
def _full_set(inner, first, last, length):
    if length == 0:
        return np.uint64(0)
    return inner | _bigram_bit(_START, first) | _bigram_bit(last, _END)


@njit(cache=True)
def _joined_set(inner_a, first_a, last_a, inner_b, first_b, last_b):
    """Bigram set of word a followed directly by word b."""
    return inner_a | inner_b | _bigram_bit(last_a, first_b) | _bigram_bit(_START, first_a) | _bigram_bit(last_b, _END)


@njit(cache=True)
def _sets(inner, first, last, length):
    """Per word: its bigram set and size, and those of the word joined to the one before it."""
    n = inner.shape[0]
    full = np.zeros(n, np.uint64)
    joined = np.zeros(n, np.uint64)
    full_size = np.zeros(n, np.int64)
    joined_size = np.zeros(n, np.int64)
    for k in range(n):
        full[k] = _full_set(inner[k], first[k], last[k], length[k])
        full_size[k] = _popcount(full[k])
        if k > 0:
            joined[k] = _joined_set(inner[k - 1], first[k - 1], last[k - 1], inner[k], first[k], last[k])
            joined_size[k] = _popcount(joined[k])
    return full, full_size, joined, joined_size


@njit(cache=True, inline="always")
def _dice_sized(set_a, size_a, set_b, size_b):
    total = size_a + size_b
    if total == 0:
        return 0.0
    return 2.0 * _popcount(set_a & set_b) / total


@njit(cache=True)
def _banded_dp(r_ids, r_inner, r_first, r_last, r_len, h_ids, h_inner, h_first, h_last, h_len, jlo, jhi):
    """Semi-global word alignment inside the band ``jlo[i] <= j <= jhi[i]`` (row i = i text words done).

    Returns (first partner, last partner, similarity) per text word.
    """
    n = r_ids.shape[0]
    m = h_ids.shape[0]
    inf = 1e18
    r_full, r_size, r_join, r_join_size = _sets(r_inner, r_first, r_last, r_len)
    h_full, h_size, h_join, h_join_size = _sets(h_inner, h_first, h_last, h_len)
    offsets = np.zeros(n + 2, np.int64)
    for i in range(n + 1):
        offsets[i + 1] = offsets[i] + (jhi[i] - jlo[i] + 1)
    ops = np.empty(offsets[n + 1], np.uint8)
    rows = np.full((3, m + 1), inf)  # rows i - 2, i - 1, i in rotation
    for j in range(jlo[0], jhi[0] + 1):
        rows[0, j] = 0.0  # transcript words before the text are free
        ops[offsets[0] + j - jlo[0]] = _OP_INSERT
    for i in range(1, n + 1):
        cur = rows[i % 3]
        prev = rows[(i - 1) % 3]
        prev2 = rows[(i - 2) % 3]
        a, b = jlo[i], jhi[i]
        pa, pb = jlo[i - 1], jhi[i - 1]
        ri = i - 1
        split_lo = jlo[i - 2] if i >= 2 else 1
        split_hi = jhi[i - 2] if i >= 2 else 0
        for j in range(a, b + 1):
            best = inf
            op = _OP_DELETE
            if pa <= j <= pb:
                best = prev[j] + r_len[ri]
            if j >= 1 and pa <= j - 1 <= pb:
                sim = 1.0 if r_ids[ri] == h_ids[j - 1] else \
                    _dice_sized(r_full[ri], r_size[ri], h_full[j - 1], h_size[j - 1])
                c = prev[j - 1] + (1.0 - sim) * max(r_len[ri], h_len[j - 1])
                if c < best:
                    best = c
                    op = _OP_PAIR
            if j - 1 >= a:
                c = cur[j - 1] + h_len[j - 1]
                if c < best:
                    best = c
                    op = _OP_INSERT
            if j >= 2 and pa <= j - 2 <= pb:
                sim = _dice_sized(r_full[ri], r_size[ri], h_join[j - 1], h_join_size[j - 1])
                c = prev[j - 2] + (1.0 - sim) * max(r_len[ri], h_len[j - 2] + h_len[j - 1]) + 1.0
                if c < best:
                    best = c
                    op = _OP_MERGE
            if j >= 1 and split_lo <= j - 1 <= split_hi:
                sim = _dice_sized(r_join[ri], r_join_size[ri], h_full[j - 1], h_size[j - 1])
                c = prev2[j - 1] + (1.0 - sim) * max(r_len[ri - 1] + r_len[ri], h_len[j - 1]) + 1.0
                if c < best:
                    best = c
                    op = _OP_SPLIT
            cur[j] = best
            ops[offsets[i] + j - a] = op
        # Row i - 2's buffer is row i + 1 next: clear what row i - 2 wrote.
        if i >= 2:
            for j in range(jlo[i - 2], jhi[i - 2] + 1):
                prev2[j] = inf
    last_row = rows[n % 3]
    best_j = jlo[n]
    for j in range(jlo[n], jhi[n] + 1):
        if last_row[j] < last_row[best_j]:
            best_j = j
    first_partner = np.full(n, -1, np.int64)
    last_partner = np.full(n, -1, np.int64)
    similarity = np.zeros(n)
    i, j = n, best_j
    while i > 0:
        op = ops[offsets[i] + j - jlo[i]]
        ri = i - 1
        if op == _OP_PAIR:
            first_partner[ri] = last_partner[ri] = j - 1
            similarity[ri] = 1.0 if r_ids[ri] == h_ids[j - 1] else \
                _dice_sized(r_full[ri], r_size[ri], h_full[j - 1], h_size[j - 1])
            i -= 1
            j -= 1
        elif op == _OP_MERGE:
            first_partner[ri], last_partner[ri] = j - 2, j - 1
            similarity[ri] = _dice_sized(r_full[ri], r_size[ri], h_join[j - 1], h_join_size[j - 1])
            i -= 1
            j -= 2
        elif op == _OP_SPLIT:
            sim = _dice_sized(r_join[ri], r_join_size[ri], h_full[j - 1], h_size[j - 1])
            for k in (ri - 1, ri):
                first_partner[k] = last_partner[k] = j - 1
                similarity[k] = sim
            i -= 2
            j -= 1
        elif op == _OP_DELETE:
            i -= 1
        else:
            j -= 1
    return first_partner, last_partner, similarity


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
    r = _encode(ref_words, ids)
    h = _encode(hyp_words, ids)
    n, m = len(ref_words), len(hyp_words)
    hyp_start = np.asarray(hyp_start, np.float64)
    hyp_end = np.asarray(hyp_end, np.float64)
    if n == 0:
        empty = np.zeros(0)
        none = np.zeros(0, np.int64)
        return WordAlignment(none, none, empty, empty, empty, np.zeros(0, bool))
    if m == 0:
        partner, partner_last, similarity = np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.zeros(n)
    else:
        lo, hi = diagonal_band(n, m, band_words)
        partner, partner_last, similarity = _banded_dp(r.ids, r.inner, r.first, r.last, r.length, h.ids, h.inner,
                                                       h.first, h.last, h.length, lo, hi)
    if end_s is None:
        end_s = float(hyp_end[-1]) if m else start_s
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    lengths = np.array([len(w) + 1 for w in ref_words], np.float64)
    i = 0
    while i < n:
        if partner[i] < 0:
            i += 1
            continue
        k = i + 1  # text words sharing one transcript word share its time by length
        while k < n and partner[k] == partner[i] and partner_last[k] == partner_last[i]:
            k += 1
        _share(start, end, lengths, i, k, hyp_start[partner[i]], hyp_end[partner_last[i]])
        i = k
    _interpolate(start, end, lengths, start_s, end_s, None if groups is None else np.asarray(groups))
    return WordAlignment(partner, partner_last, similarity, start, end, similarity >= MATCH_SIMILARITY)


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


def text_cer(ref_words: Sequence[str], hyp_words: Sequence[str], alignment: WordAlignment) -> float:
    """Character error rate of the transcript against the text, from the word alignment.

    Paired words count the edits between their letters (joined by a space where one word pairs
    with two), text words without a partner their letters, transcript words between the first and
    the last partner that pair with nothing their letters; transcript words outside (a heading, an
    outro) do not count. Divided by the text's letters (spaces not counted).
    """
    total = sum(len(w) for w in ref_words)
    if total == 0:
        return 0.0
    errors = 0
    partner, partner_last = alignment.partner, alignment.partner_last
    i = 0
    while i < len(ref_words):
        if partner[i] < 0:
            errors += len(ref_words[i])
            i += 1
            continue
        k = i + 1
        while k < len(ref_words) and partner[k] == partner[i] and partner_last[k] == partner_last[i]:
            k += 1
        errors += char_edits(" ".join(ref_words[i:k]), " ".join(hyp_words[partner[i]:partner_last[i] + 1]))
        i = k
    paired = partner >= 0
    if np.any(paired):
        used = np.zeros(len(hyp_words), bool)
        for a, b in zip(partner[paired], partner_last[paired]):
            used[a:b + 1] = True
        for j in range(int(partner[paired].min()), int(partner_last[paired].max()) + 1):
            if not used[j]:
                errors += len(hyp_words[j])
    return errors / total
