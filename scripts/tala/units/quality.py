"""How well acoustic units match the letters the forced alignment places in time, and how units behave.

Units against letters, as the HuBERT paper scores clusters against phones (Hsu et al. 2021,
"HuBERT: Self-Supervised Speech Representation Learning by Masked Prediction of Hidden Units",
section on the quality of the cluster assignments): every frame that lies in a letter's aligned
span gets that letter (y) and its unit (z); from the joint counts, ``p(y, z)``,

* letter purity (their *phone purity*) ``= sum_z max_y p(y, z) = E_z[max_y p(y | z)]``: how well the
  best letter per unit predicts the letter; 1 when each unit is always the same letter;
* cluster purity ``= sum_y max_z p(y, z) = E_y[max_z p(z | y)]``: how concentrated each letter is on
  one unit; 1 when each letter always gets the same unit (many small units lower it, as more
  letters sharing a unit raise it);
* PNMI ``= I(y; z) / H(y)``: the fraction of the letter's uncertainty that the unit removes, 0 for
  units independent of the letters, 1 when the unit determines the letter. Logs are base 2 here
  (the ratio does not depend on the base); ``letter_entropy_bits`` is H(y).

Frames outside every letter span (silence, pauses between words) are left out, as the paper leaves
out frames without a phone label. :func:`frame_letters` finds the letter of each frame: the span
that contains the frame's centre.

:class:`UnitStatistics` describes the unit sequences alone: how many of the k units are used, the
entropy (and perplexity) of their distribution, and the mean length of runs of one repeated unit.

Both accumulators hold a fixed amount of memory (a letters x k count matrix; k counts) and are
filled recording by recording; both merge and serialize to JSON-able dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

FRAME_S = 0.02  # wav2vec2: 320 samples at 16 kHz


def frame_letters(
    letters: Sequence[tuple[str, float, float]],
    start_s: float,
    num_frames: int,
    frame_s: float = FRAME_S,
) -> np.ndarray:
    """For each of ``num_frames`` frames starting at ``start_s``, the index into ``letters`` (the
    list of aligned ``(letter, start_s, end_s)`` spans, sorted by start, not overlapping) of the
    span whose half-open interval ``[start, end)`` contains the frame's centre
    ``start_s + (i + 0.5) * frame_s``; -1 where no span does (gaps, before the first and after the
    last letter). int64 array of length num_frames; ``letters[j][0]`` is the letter of index j.
    Span indices (not letter codes) so the caller can also map frames to words or positions.
    O(n log m) with np.searchsorted."""
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if not letters or num_frames == 0:
        return np.full(num_frames, -1, dtype=np.int64)
    starts = np.fromiter((s for _, s, _ in letters), dtype=np.float64, count=len(letters))
    ends = np.fromiter((e for _, _, e in letters), dtype=np.float64, count=len(letters))
    if np.any(np.diff(starts) < 0):
        raise ValueError("letter spans must be sorted by start time")
    centres = start_s + (np.arange(num_frames, dtype=np.float64) + 0.5) * frame_s
    index = np.searchsorted(starts, centres, side="right") - 1
    inside = index >= 0
    inside[inside] = centres[inside] < ends[index[inside]]
    return np.where(inside, index, -1).astype(np.int64)


def _entropy_bits(counts: np.ndarray) -> float:
    total = counts.sum()
    p = counts[counts > 0] / total
    return float(max(0.0, -(p * np.log2(p)).sum()))


def _check_units(units: np.ndarray, k: int) -> np.ndarray:
    u = np.asarray(units)
    if u.ndim != 1:
        raise ValueError(f"units must be 1-D, got shape {u.shape}")
    if u.size and not np.issubdtype(u.dtype, np.integer):
        raise ValueError(f"units must be integers, got {u.dtype}")
    u = u.astype(np.int64, copy=False)
    if u.size and (u.min() < 0 or u.max() >= k):
        raise ValueError(f"unit ids must lie in [0, {k}), got [{u.min()}, {u.max()}]")
    return u


class UnitLetterCounts:
    """Joint counts of (letter, unit) over frames that have a letter, accumulated recording by
    recording (bounded memory: a (letters x k) int64 matrix; letters added as they appear).

    ``letters``: the inventory, in order of first appearance; ``counts[i, z]``: frames of letter
    ``letters[i]`` labelled with unit z."""

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.letters: list[str] = []
        self._row: dict[str, int] = {}
        self.counts = np.zeros((0, self.k), dtype=np.int64)

    def _rows_of(self, letters: Iterable[str]) -> np.ndarray:
        """Inventory rows of ``letters``, adding new ones (and growing the matrix)."""
        rows = []
        for letter in letters:
            row = self._row.get(letter)
            if row is None:
                row = self._row[letter] = len(self.letters)
                self.letters.append(letter)
            rows.append(row)
        if len(self.letters) > len(self.counts):
            grown = np.zeros((len(self.letters), self.k), dtype=np.int64)
            grown[: len(self.counts)] = self.counts
            self.counts = grown
        return np.asarray(rows, dtype=np.int64)

    def _add_rows(self, rows: np.ndarray, units: np.ndarray) -> None:
        keep = rows >= 0
        if keep.any():
            flat = np.bincount(rows[keep] * self.k + units[keep], minlength=self.counts.size)
            self.counts += flat.reshape(self.counts.shape)

    def add(self, letters: Sequence[str | None], units: np.ndarray) -> None:
        """Count one sequence of frames: ``letters[i]`` (a letter, or None for no letter) and
        ``units[i]`` (the frame's unit id in [0, k))."""
        u = _check_units(units, self.k)
        if len(letters) != len(u):
            raise ValueError(f"{len(letters)} letters for {len(u)} units")
        present = [i for i, letter in enumerate(letters) if letter is not None]
        rows = np.full(len(u), -1, dtype=np.int64)
        if present:
            rows[present] = self._rows_of(letters[i] for i in present)
        self._add_rows(rows, u)

    def add_spans(
        self,
        spans: Sequence[tuple[str, float, float]],
        start_s: float,
        units: np.ndarray,
        frame_s: float = FRAME_S,
    ) -> None:
        """Count a segment's units (frame i starting at ``start_s + i * frame_s``) against aligned
        letter spans: :func:`frame_letters` then :meth:`add`, vectorized over frames."""
        u = _check_units(units, self.k)
        span_of_frame = frame_letters(spans, start_s, len(u), frame_s)
        used = np.unique(span_of_frame[span_of_frame >= 0])
        span_row = np.full(len(spans) + 1, -1, dtype=np.int64)  # last entry: index -1 → no letter
        if used.size:
            span_row[used] = self._rows_of(spans[j][0] for j in used)
        self._add_rows(span_row[span_of_frame], u)

    def merge(self, other: UnitLetterCounts) -> None:
        """Add another accumulator's counts (same k) into this one."""
        if other.k != self.k:
            raise ValueError(f"cannot merge counts for k={other.k} into k={self.k}")
        rows = self._rows_of(other.letters)
        if len(rows):
            self.counts[rows] += other.counts

    @classmethod
    def merged(cls, parts: Iterable[UnitLetterCounts], k: int | None = None) -> UnitLetterCounts:
        """One accumulator with the counts of all ``parts`` (k from the first part, or ``k``)."""
        parts = list(parts)
        if k is None:
            if not parts:
                raise ValueError("merged() of no parts needs k")
            k = parts[0].k
        out = cls(k)
        for part in parts:
            out.merge(part)
        return out

    def to_dict(self) -> dict:
        """JSON-able: ``{"k", "letters", "counts"}`` (counts as a list of rows, one per letter)."""
        return {"k": self.k, "letters": list(self.letters), "counts": self.counts.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> UnitLetterCounts:
        out = cls(int(data["k"]))
        counts = np.asarray(data["counts"], dtype=np.int64).reshape(len(data["letters"]), out.k)
        if len(set(data["letters"])) != len(data["letters"]):
            raise ValueError("duplicate letters in the counts' inventory")
        out._rows_of(data["letters"])
        out.counts = counts.copy()
        return out

    def scores(self) -> dict:
        """``{"frames", "letters", "letter_purity", "cluster_purity", "pnmi", "letter_entropy_bits"}``
        as defined in the module docstring; the scores are None without frames, and ``pnmi`` is None
        when H(y) = 0 (a single letter: nothing to explain)."""
        total = int(self.counts.sum())
        result = {
            "frames": total,
            "letters": int((self.counts.sum(axis=1) > 0).sum()),
            "letter_purity": None,
            "cluster_purity": None,
            "pnmi": None,
            "letter_entropy_bits": None,
        }
        if total == 0:
            return result
        p = self.counts / total
        py = p.sum(axis=1)
        pz = p.sum(axis=0)
        h_y = _entropy_bits(self.counts.sum(axis=1))
        nz = p > 0
        outer = np.outer(py, pz)
        mutual = float(max(0.0, (p[nz] * np.log2(p[nz] / outer[nz])).sum()))
        result.update(
            letter_purity=float(p.max(axis=0).sum()),
            cluster_purity=float(p.max(axis=1).sum()),
            pnmi=float(min(1.0, mutual / h_y)) if h_y > 0 else None,
            letter_entropy_bits=h_y,
        )
        return result


class UnitStatistics:
    """Running statistics of unit sequences (one per segment) over k units: counts per unit,
    frames, segments and runs (maximal stretches of one repeated unit; runs end at segment ends)."""

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.counts = np.zeros(self.k, dtype=np.int64)
        self.segments = 0
        self.runs = 0

    def add(self, seq: np.ndarray) -> None:
        u = _check_units(seq, self.k)
        self.segments += 1
        if u.size:
            self.counts += np.bincount(u, minlength=self.k)
            self.runs += 1 + int(np.count_nonzero(u[1:] != u[:-1]))

    def merge(self, other: UnitStatistics) -> None:
        if other.k != self.k:
            raise ValueError(f"cannot merge statistics for k={other.k} into k={self.k}")
        self.counts += other.counts
        self.segments += other.segments
        self.runs += other.runs

    def result(self) -> dict:
        """``{"segments", "frames", "units_used", "k", "entropy_bits", "perplexity",
        "mean_run_length", "mean_run_ms"}``: entropy (bits) of the unit distribution over all
        frames, perplexity ``2 ** entropy``, mean run length in frames and in ms (x 20); the last
        four None without frames."""
        frames = int(self.counts.sum())
        result = {
            "segments": self.segments,
            "frames": frames,
            "units_used": int(np.count_nonzero(self.counts)),
            "k": self.k,
            "entropy_bits": None,
            "perplexity": None,
            "mean_run_length": None,
            "mean_run_ms": None,
        }
        if frames:
            entropy = _entropy_bits(self.counts)
            run = frames / self.runs
            result.update(
                entropy_bits=entropy,
                perplexity=float(2.0**entropy),
                mean_run_length=run,
                mean_run_ms=run * FRAME_S * 1000.0,
            )
        return result


def unit_statistics(sequences: Iterable[np.ndarray], k: int) -> dict:
    """:meth:`UnitStatistics.result` of all ``sequences`` (one int array per segment)."""
    stats = UnitStatistics(k)
    for seq in sequences:
        stats.add(seq)
    return stats.result()
