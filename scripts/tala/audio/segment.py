"""Split a recording at its pauses into spans of speech, written as a TSV (start, end, level_db).

    python -m tala.audio.segment IN.wav OUT.tsv [--threshold-db -40] [--min-silence-s 0.5]
                                          [--min-span-s 2] [--max-span-s 120]

A *pause* is a stretch of at least ``min_silence_s`` in which every 10 ms frame (1 ms hop) is
below ``threshold_db`` dBFS (RMS, 0 dBFS = a full-scale square wave). Frames this short put each
pause edge within ~1 ms of where the level really crosses the threshold. pydub's
``detect_silence`` instead calls a whole 500 ms window silent when its *average* is below the
threshold, which lets the silence reach into soft word endings and onsets; see
``tests/bench/bench_frontend.py`` for how the two compare on speech.

The spans between pauses are then brought into [min_span_s, max_span_s]: a long span is cut at
its quietest stretch until every piece fits, and a short one is merged into the neighbour across
the shorter pause, as long as the result still fits. Last, each edge moves outwards over sound
still within EDGE_EXTEND_DB of the threshold (at most EDGE_EXTEND_MAX_S), to keep soft onsets and
fading word ends. On the demo speech this puts every edge at a true pause within 20 ms of the
true verse boundary (pydub: a third of them, and it clips most verses by ~40 ms).

The audio is read in blocks and reduced to one level per 1 ms hop (an hour: 14 MB of float32),
so memory stays bounded; everything after that is vectorized numpy plus loops over spans.
"""

from __future__ import annotations

import argparse
import heapq
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tala.audio_io import LEVEL_FRAME_S, LEVEL_HOP_S, power_to_db, read_frame_levels_db
from tala.errors import run_cli
from tala.fileio import write_text_atomic

THRESHOLD_DB = -40.0
MIN_SILENCE_S = 0.5
MIN_SPAN_S = 2.0
MAX_SPAN_S = 120.0
FRAME_S = LEVEL_FRAME_S  # 10 ms: short enough to see a 10 ms gap, long enough to average over a 100 Hz period
HOP_S = LEVEL_HOP_S  # 1 ms: sets the edge precision
# A long span is cut at the centre of its quietest window of this length: longer than the closure
# of a stop consonant (50-100 ms), so cuts fall between words, not inside them.
CUT_WINDOW_S = 0.2
# Cut candidates within this many dB of the quietest are equally good; the one nearest the middle
# wins, so that digital silence (all equal) does not cut off one minimum-length piece at a time.
CUT_TIE_DB = 1.0
# Span edges found at threshold_db are then moved outwards over sound that is still above
# threshold_db - EDGE_EXTEND_DB, by at most EDGE_EXTEND_MAX_S: a soft onset ("f", "h", "s") or a
# fading word end sits 2-10 dB under the threshold for tens of ms, and a clip that starts after
# the "F" of "Fa'auta" teaches an ASR model the wrong thing. Over a noise floor in that band an
# edge moves by the cap, like pydub's keep_silence padding.
EDGE_EXTEND_DB = 10.0
EDGE_EXTEND_MAX_S = 0.1

TSV_HEADER = "start\tend\tlevel_db"


@dataclass(frozen=True)
class SpeechSpan:
    """A stretch of speech: seconds from the start of the recording, and its RMS level in dBFS."""

    start: float
    end: float
    level_db: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the runs of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def find_pauses(levels_db: np.ndarray, hop_s: float, threshold_db: float = THRESHOLD_DB,
                min_silence_s: float = MIN_SILENCE_S, frame_s: float = FRAME_S,
                total_hops: int | None = None) -> np.ndarray:
    """Pauses as an (n, 2) array of [first, end) hop indices: runs of silent frames whose extent,
    from the first silent frame's start to the last one's end, is at least ``min_silence_s``.

    A run reaching the last frame extends to ``total_hops`` (the end of the recording, which
    the last whole frame may stop short of).
    """
    frame_hops = max(1, round(frame_s / hop_s))
    starts, ends = _runs(levels_db < threshold_db)
    ends = ends + frame_hops - 1  # the last silent frame reaches frame_hops - 1 hops further
    if total_hops is not None and len(ends) and ends[-1] >= len(levels_db) + frame_hops - 1:
        ends[-1] = max(ends[-1], total_hops)
    # Half a hop of slack: at 44.1 kHz a hop is 44 samples, and 0.5 s is 501.1 of them.
    keep = (ends - starts) * hop_s >= min_silence_s - hop_s / 2
    return np.stack([starts[keep], ends[keep]], axis=1)


def nonsilent_ranges(levels_db: np.ndarray, hop_s: float, threshold_db: float = THRESHOLD_DB,
                     min_silence_s: float = MIN_SILENCE_S, frame_s: float = FRAME_S,
                     total_hops: int | None = None) -> np.ndarray:
    """The complement of :func:`find_pauses` in [0, total_hops): an (n, 2) array of hop indices.

    These are the raw spans, before the min/max span rules (the counterpart of pydub's
    ``detect_nonsilent``). A stretch with no frame at the threshold is no span, even when it is
    too short to count as a pause (a recording of 0.1 s of digital silence has no speech).
    """
    frame_hops = max(1, round(frame_s / hop_s))
    if total_hops is None:
        total_hops = len(levels_db) + frame_hops - 1
    if len(levels_db) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pauses = find_pauses(levels_db, hop_s, threshold_db, min_silence_s, frame_s, total_hops)
    bounds = np.concatenate([[0], pauses.ravel(), [total_hops]]).reshape(-1, 2)
    bounds = bounds[bounds[:, 1] > bounds[:, 0]].astype(np.int64)
    loud = np.concatenate([[0], np.cumsum(levels_db >= threshold_db)])
    first = np.minimum(bounds[:, 0], len(levels_db) - 1)
    last = np.clip(bounds[:, 1], first + 1, len(levels_db))
    return bounds[loud[last] > loud[first]]


def quietest_near(levels_db: np.ndarray, middle: float) -> int:
    """The index of the quietest level; of those within CUT_TIE_DB of it, the one nearest ``middle``."""
    near_best = np.flatnonzero(levels_db <= levels_db.min() + CUT_TIE_DB)
    return int(near_best[np.argmin(np.abs(near_best - middle))])


def _cut_long_span(first: int, end: int, window_power: np.ndarray, window_hops: int,
                   silent: np.ndarray, frame_hops: int, min_hops: int,
                   max_hops: int) -> list[tuple[int, int]]:
    """Cut [first, end) at its quietest windows until each piece is at most ``max_hops`` long."""
    pieces, todo = [], [(first, end)]
    while todo:
        a, b = todo.pop()
        if b - a <= max_hops:
            pieces.append((a, b))
            continue
        # Cut centres that leave both pieces >= min_hops, if the span allows it.
        lo, hi = (a + min_hops, b - min_hops) if b - a >= 2 * min_hops + 1 else (a + 1, b - 1)
        # window_power[k] averages frames k .. k + window_hops - 1; centre k + window_hops // 2.
        offset = window_hops // 2
        k_lo = min(max(lo - offset, 0), len(window_power) - 1)
        k_hi = min(max(hi - offset, k_lo + 1), len(window_power))
        candidates = window_power[k_lo:k_hi]
        level = 10.0 * np.log10(np.maximum(candidates, 1e-12))
        centre = int(k_lo + quietest_near(level, (a + b) / 2 - offset - k_lo) + offset)
        centre = min(max(centre, a + 1), b - 1)
        cut_first, cut_end = centre, centre
        if centre < len(silent) and silent[centre]:
            # Cut out the whole short silence the window sits in, not just a point inside it.
            run_first, run_end = _silent_run_bounds(silent, centre)
            cut_first, cut_end = max(run_first, a + 1), min(run_end + frame_hops - 1, b - 1)
        todo.extend([(cut_end, b), (a, cut_first)])
    return sorted(pieces)


def _silent_run_bounds(silent: np.ndarray, index: int) -> tuple[int, int]:
    """[first, end) of the run of True in ``silent`` that contains ``index``."""
    before = np.flatnonzero(~silent[:index])
    after = np.flatnonzero(~silent[index:])
    first = int(before[-1]) + 1 if len(before) else 0
    end = index + int(after[0]) if len(after) else len(silent)
    return first, end


def _merge_short_spans(spans: list[tuple[int, int]], min_hops: int, max_hops: int) -> list[tuple[int, int]]:
    """Merge each span shorter than ``min_hops`` into a neighbour, shortest first.

    The neighbour across the shorter pause is preferred; a merge that would exceed ``max_hops`` is
    not made, and a span that cannot merge either way stays as it is (short spans are never
    dropped: a one-verse recording is still a recording).
    """
    first = [a for a, _ in spans]
    end = [b for _, b in spans]
    prev = list(range(-1, len(spans) - 1))
    nxt = list(range(1, len(spans) + 1))
    nxt[-1:] = [-1] if spans else []
    alive = [True] * len(spans)
    heap = [(b - a, i) for i, (a, b) in enumerate(spans) if b - a < min_hops]
    heapq.heapify(heap)
    while heap:
        length, i = heapq.heappop(heap)
        if not alive[i] or end[i] - first[i] != length:
            continue  # stale entry: merged away or grown since it was pushed
        options = []
        if prev[i] >= 0:
            options.append((first[i] - end[prev[i]], prev[i], i))
        if nxt[i] >= 0:
            options.append((first[nxt[i]] - end[i], i, nxt[i]))
        for _, left, right in sorted(options):
            if end[right] - first[left] <= max_hops:
                end[left] = end[right]
                alive[right] = False
                nxt[left] = nxt[right]
                if nxt[right] >= 0:
                    prev[nxt[right]] = left
                if end[left] - first[left] < min_hops:
                    heapq.heappush(heap, (end[left] - first[left], left))
                break
    return [(first[i], end[i]) for i in range(len(spans)) if alive[i]]


def _extend_edges(pieces: list[tuple[int, int]], quiet: np.ndarray, frame_hops: int, max_extend: int,
                  max_hops: int, total_hops: int) -> list[tuple[int, int]]:
    """Move each span's edges outwards over frames not ``quiet``, by at most ``max_extend`` hops,
    never into a neighbour and never beyond ``max_hops`` in all."""
    out: list[tuple[int, int]] = []
    for i, (a, b) in enumerate(pieces):
        lower = out[-1][1] if out else 0
        upper = pieces[i + 1][0] if i + 1 < len(pieces) else total_hops
        budget = max(0, max_hops - (b - a))
        # Frame a - frame_hops + 1 is the first loud one (sound enters at its last hop): look
        # back from it for the nearest quiet frame; the sound re-enters just after.
        loud = a - frame_hops + 1
        window_first = max(loud - max_extend, 0)
        before = np.flatnonzero(quiet[window_first:max(loud, window_first)])
        new_a = window_first + int(before[-1]) + frame_hops if len(before) else a - max_extend
        new_a = min(a, max(new_a, lower, a - budget, 0))
        # Frame b is the first silent one (it starts where the sound ended): look forward.
        after = np.flatnonzero(quiet[b:b + max_extend])
        new_b = b + int(after[0]) if len(after) else b + max_extend
        new_b = max(b, min(new_b, upper, b + budget - (a - new_a), total_hops))
        out.append((new_a, new_b))
    return out


def find_spans(levels_db: np.ndarray, hop_s: float, threshold_db: float = THRESHOLD_DB,
               min_silence_s: float = MIN_SILENCE_S, min_span_s: float = MIN_SPAN_S,
               max_span_s: float = MAX_SPAN_S, *, frame_s: float = FRAME_S,
               duration_s: float | None = None, extend_db: float = EDGE_EXTEND_DB,
               extend_max_s: float = EDGE_EXTEND_MAX_S) -> list[SpeechSpan]:
    """Spans of speech between pauses, each brought into [min_span_s, max_span_s] where possible.

    ``levels_db`` are frame levels as from :func:`frame_levels_db` (frame k starts at k * hop_s
    and lasts frame_s). ``duration_s`` lets the last span reach the true end of the recording
    (frames stop up to one hop before it). Edges then move out over sound above
    ``threshold_db - extend_db``, by at most ``extend_max_s`` (0 turns that off). A span's level
    is the mean power of the frames inside it, which is its RMS up to the frame at each edge.
    """
    if min_span_s > max_span_s:
        raise ValueError(f"min_span_s ({min_span_s}) is larger than max_span_s ({max_span_s})")
    levels_db = np.asarray(levels_db, dtype=np.float32)
    frame_hops = max(1, round(frame_s / hop_s))
    total_hops = len(levels_db) + frame_hops - 1 if len(levels_db) else 0
    if duration_s is not None:
        total_hops = max(total_hops, int(round(duration_s / hop_s)))
    raw = nonsilent_ranges(levels_db, hop_s, threshold_db, min_silence_s, frame_s, total_hops)
    if len(raw) == 0:
        return []

    power = 10.0 ** (levels_db.astype(np.float64) / 10.0)
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    silent = levels_db < threshold_db
    window_hops = min(max(1, round(CUT_WINDOW_S / hop_s)), len(power))
    window_power = (cumulative[window_hops:] - cumulative[:-window_hops]) / window_hops

    # Whole hops, rounded towards the allowed side: a span never exceeds max_span_s.
    min_hops = int(np.ceil(min_span_s / hop_s - 1e-6))
    max_hops = int(np.floor(max_span_s / hop_s + 1e-6))
    pieces: list[tuple[int, int]] = []
    for a, b in raw:
        pieces.extend(_cut_long_span(int(a), int(b), window_power, window_hops, silent, frame_hops,
                                     min_hops, max_hops))
    pieces = _merge_short_spans(pieces, min_hops, max_hops)
    if extend_max_s > 0:
        pieces = _extend_edges(pieces, levels_db < threshold_db - extend_db, frame_hops,
                               int(round(extend_max_s / hop_s)), max_hops, total_hops)

    spans = []
    for a, b in pieces:
        # Frames wholly inside the span; a span shorter than a frame takes the frames it touches.
        k_first, k_end = a, max(b - frame_hops + 1, a + 1)
        k_first, k_end = min(k_first, len(power) - 1), min(k_end, len(power))
        mean_power = (cumulative[k_end] - cumulative[k_first]) / max(k_end - k_first, 1)
        level = float(power_to_db(np.array([mean_power]))[0])
        spans.append(SpeechSpan(round(a * hop_s, 3), round(min(b * hop_s, duration_s or np.inf), 3), round(level, 1)))
    return spans


def format_spans_tsv(spans: Iterable[SpeechSpan]) -> str:
    lines = [TSV_HEADER] + [f"{s.start:.3f}\t{s.end:.3f}\t{s.level_db:.1f}" for s in spans]
    return "\n".join(lines) + "\n"


def segment_file(src: str | Path, dst: str | Path, threshold_db: float = THRESHOLD_DB,
                 min_silence_s: float = MIN_SILENCE_S, min_span_s: float = MIN_SPAN_S,
                 max_span_s: float = MAX_SPAN_S) -> list[SpeechSpan]:
    """Read ``src``, find its spans and write them to the TSV ``dst`` (atomically)."""
    levels = read_frame_levels_db(src)
    spans = find_spans(levels.levels_db, levels.hop_s, threshold_db, min_silence_s, min_span_s,
                       max_span_s, frame_s=levels.frame_s, duration_s=levels.duration_s)
    write_text_atomic(dst, format_spans_tsv(spans))
    if not spans:
        why = ("shorter than one frame" if len(levels.levels_db) == 0
               else f"nothing above {threshold_db:g} dBFS")
        print(f"warning: {src}: no speech spans ({why}, {levels.duration_s:.2f} s); "
              f"wrote a header-only TSV", file=sys.stderr)
    else:
        speech = sum(s.duration for s in spans)
        print(f"segment: {src}: {len(spans)} spans, {speech:.1f} s of {levels.duration_s:.1f} s, "
              f"lengths {min(s.duration for s in spans):.2f}-{max(s.duration for s in spans):.2f} s",
              file=sys.stderr)
    return spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.audio.segment",
        description="Split a recording at pauses into speech spans; write start, end (s) and "
                    "level (dBFS) to a TSV.")
    parser.add_argument("input", help="audio file, normally the 16 kHz mono WAV from tala.audio.convert")
    parser.add_argument("output", help="TSV to write (header: start, end, level_db)")
    parser.add_argument("--threshold-db", type=float, default=THRESHOLD_DB,
                        help="frames below this RMS level (dBFS) are silent (default: %(default)s)")
    parser.add_argument("--min-silence-s", type=float, default=MIN_SILENCE_S,
                        help="shortest silence that splits spans (default: %(default)s)")
    parser.add_argument("--min-span-s", type=float, default=MIN_SPAN_S,
                        help="shorter spans are merged with a neighbour (default: %(default)s)")
    parser.add_argument("--max-span-s", type=float, default=MAX_SPAN_S,
                        help="longer spans are cut at their quietest stretch (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.min_silence_s <= 0 or args.min_span_s < 0 or args.max_span_s <= 0:
        parser.error("--min-silence-s and --max-span-s must be positive, --min-span-s not negative")
    if args.min_span_s > args.max_span_s:
        parser.error(f"--min-span-s ({args.min_span_s}) is larger than --max-span-s ({args.max_span_s})")
    if args.max_span_s <= 2 * CUT_WINDOW_S:
        parser.error(f"--max-span-s must be longer than {2 * CUT_WINDOW_S} s")
    segment_file(args.input, args.output, args.threshold_db, args.min_silence_s, args.min_span_s,
                 args.max_span_s)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
