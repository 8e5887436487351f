"""CTC forced alignment (Viterbi) in bounded memory, with optional tokens and the MMS ``<star>``.

The kernel finds the single best CTC path of a token sequence through frame log-probabilities
(frames x vocabulary), as ``torchaudio.functional.forced_align`` does, but for hour-long
recordings (T ~ 180,000 frames at 20 ms, L ~ 50,000 tokens) on a CPU.

States and transitions
----------------------
Token j of the sequence is state ``2j + 1``; even states are blanks (``2j`` before token j, the
last one after the last token): ``S = 2L + 1`` states. Into state s a path comes from s (stay,
jump 0), s - 1 (jump 1), s - 2 (a token skipping the blank before it; only when its label differs
from the previous token's, so a repeated letter needs a blank between). *Optional* tokens (the
``<star>`` between verses) may be left out, which adds jumps over them: into the blank after an
optional token from the blank before it (2) or from the token before it (3), and into the token
after it from the token before it (4, labels differing). A path starts in any state that only
optional tokens precede and ends in any state that only optional tokens follow. The jump taken
is the backpointer: one ``uint8`` per cell. Ties go to the smaller jump (stay first), the same
rule in every pass, so recomputation reproduces a path exactly.

The ``<star>``
--------------
The MMS data-alignment recipe (Pratap et al. 2023, "Scaling Speech Technology to 1000+
Languages", section 3.1.2) adds a wildcard token that matches any audio, so that speech the text
lacks (a spoken heading, an intro, music) is not forced onto the text. Its emission here is an
extra column: the frame's best log-probability over the whole vocabulary minus ``star_penalty``.
With a penalty > 0 the star never beats the token or blank the model actually hears, so real
verse speech stays with its verse; over audio the text lacks it costs ``penalty`` per frame,
far less than forcing letters there. (MMS gives the star log-probability 0, i.e. penalty 0.)
Measured on the demo corpus (raw edges, no refinement): penalties 0-2 give the same verse edges
(median 20 ms, p95 47 ms), 4-8 slightly worse (p95 51-56 ms), 16 pushes headings into verse 1
(p95 1.9 s). Stars are optional tokens, so verses read back to back need none.

Bounded memory: checkpointed, banded Viterbi
--------------------------------------------
A full backpointer matrix is T x S bytes (180,000 x 100,000 = 18 GB for an hour). Instead:

1. *Checkpoints.* The forward pass keeps only two alpha columns (float64) and saves a copy of the
   column at the start of every segment of K frames. The backward pass goes through the segments
   last to first: it restores the segment's start column, recomputes the segment's alphas with
   backpointers (K x band bytes), and backtracks from the state the later segment handed over.
   Recomputation repeats the forward arithmetic operation for operation, so the path is exactly
   the one a single pass with a full backpointer matrix gives (tests check it). Time: two
   forward passes; memory: (T / K) saved columns + K backpointer rows, with K ~ sqrt(8 T).
   While the whole band's backpointers fit in MAX_BACKPOINTER_BYTES (128 MB) a single pass keeps
   them all instead (half the time).
2. *A band.* At frame t only states ``lo[t]..hi[t]`` are computed (both non-decreasing in t).
   The default band is reachability (states a path can be in at frame t and still finish), with
   which the result is the exact full Viterbi. For long recordings the caller narrows it around
   anchors, the greedy transcript's words matched to the text (:func:`band_from_anchors`):
   each token may only sit within ``width`` frames of the matched words around it, and a stretch
   of text without matches may use the whole time between its neighbouring matches. The optimal
   path inside the band is exact; :func:`align` checks that it keeps a margin from every band edge
   that the anchors (not reachability) imposed and otherwise doubles the width and runs again, so
   a band too narrow shows up as a rerun rather than as drift. Cost: frames x band width (a few
   thousand states) instead of frames x states.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

NEG_INF = -np.inf
MAX_JUMP = 4
# Emissions are float16: a log-probability below its range reads as -inf, which would make a
# token impossible rather than merely unlikely.
LOG_PROB_FLOOR = -1.0e4
DEFAULT_STAR_PENALTY = 1.0
BLOCK_FRAMES = 1 << 14
# Up to this many cells the backpointers are kept whole (one forward pass instead of two).
MAX_BACKPOINTER_BYTES = 128 << 20


class NoPathError(ValueError):
    """No CTC path fits the band (or the frames): the caller widens the band or reports the input."""


@dataclass(frozen=True)
class Topology:
    """The state graph of a token sequence (see the module docstring)."""

    labels: np.ndarray  # (S,) int32: the emission column of each state
    jumps: np.ndarray  # (S,) uint8: bit k set when jump k (2, 3, 4) into the state is allowed
    starts: np.ndarray  # (S,) bool
    ends: np.ndarray  # (S,) bool
    reach_hi: np.ndarray  # (S,) int64: the furthest state one frame can lead to from states <= s
    reach_lo: np.ndarray  # (S,) int64: the lowest state one frame can come from into states >= s

    @property
    def num_states(self) -> int:
        return len(self.labels)


def make_topology(tokens: Sequence[int] | np.ndarray, blank_id: int,
                  optional: Sequence[bool] | np.ndarray | None = None) -> Topology:
    """The CTC state graph of ``tokens`` (emission column ids); ``optional`` tokens may be skipped.

    Two optional tokens may not be neighbours (a skip passes over one token only).
    """
    tokens = np.asarray(tokens, dtype=np.int32)
    num_tokens = len(tokens)
    optional = np.zeros(num_tokens, bool) if optional is None else np.asarray(optional, bool)
    if len(optional) != num_tokens:
        raise ValueError("optional must have one flag per token")
    if num_tokens > 1 and np.any(optional[1:] & optional[:-1]):
        raise ValueError("two optional tokens in a row")
    num_states = 2 * num_tokens + 1
    labels = np.full(num_states, blank_id, np.int32)
    labels[1::2] = tokens
    jumps = np.zeros(num_states, np.uint8)
    for j in range(num_tokens):
        state = 2 * j + 1
        if j > 0 and tokens[j] != tokens[j - 1]:
            jumps[state] |= 1 << 2
        if optional[j]:
            jumps[state + 1] |= 1 << 2
            if j > 0:
                jumps[state + 1] |= 1 << 3
                if j + 1 < num_tokens and tokens[j + 1] != tokens[j - 1]:
                    jumps[state + 2] |= 1 << 4
    # A path may start in blank 2j or token 2j+1 when tokens 0..j-1 are all optional, and end in
    # token 2j+1 or blank 2j+2 when tokens j+1.. are all optional (blank 2j too when j is).
    skippable_before = np.concatenate([[True], np.cumprod(optional)]).astype(bool)  # tokens < j optional
    skippable_after = np.concatenate([np.cumprod(optional[::-1])[::-1], [True]]).astype(bool)  # tokens >= j
    starts = np.zeros(num_states, bool)
    ends = np.zeros(num_states, bool)
    for j in range(num_tokens + 1):
        if skippable_before[j]:
            starts[2 * j] = True
            if j < num_tokens:
                starts[2 * j + 1] = True
        if skippable_after[j]:
            ends[2 * j] = True
        if j < num_tokens and skippable_after[j + 1]:
            ends[2 * j + 1] = True
    reach = np.arange(num_states, dtype=np.int64)
    back = np.arange(num_states, dtype=np.int64)
    for state in range(num_states):
        largest = 1
        for k in range(2, MAX_JUMP + 1):
            if jumps[state] >> k & 1:
                largest = k
        if state > 0:
            back[state] = max(0, state - largest)
            reach[state - largest] = max(reach[state - largest], state)
        reach[max(0, state - 1)] = max(reach[max(0, state - 1)], state)
    return Topology(labels, jumps, starts, ends, np.maximum.accumulate(reach),
                    np.minimum.accumulate(back[::-1])[::-1].copy())


def min_frames(tokens: Sequence[int] | np.ndarray, optional: Sequence[bool] | np.ndarray | None = None) -> int:
    """The fewest frames that can hold the required tokens (a repeated label needs a blank between)."""
    tokens = np.asarray(tokens)
    if optional is not None:
        tokens = tokens[~np.asarray(optional, bool)]
    if len(tokens) == 0:
        return 0
    return int(len(tokens) + np.count_nonzero(tokens[1:] == tokens[:-1]))


def reachable_band(topology: Topology, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the lowest and highest state a complete path can occupy (the exact full Viterbi)."""
    start_states = np.flatnonzero(topology.starts)
    end_states = np.flatnonzero(topology.ends)
    lo = np.empty(num_frames, np.int64)
    hi = np.empty(num_frames, np.int64)
    if num_frames == 0:
        return lo, hi
    hi[0] = start_states.max()
    for t in range(1, num_frames):
        hi[t] = topology.reach_hi[hi[t - 1]]
    lo[-1] = end_states.min()
    for t in range(num_frames - 2, -1, -1):
        lo[t] = topology.reach_lo[lo[t + 1]]
    return lo, hi


def band_from_anchors(topology: Topology, num_frames: int, token_lo: np.ndarray, token_hi: np.ndarray,
                      width_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A band that keeps each token within ``width_frames`` of its anchor frames ``[token_lo, token_hi]``.

    ``token_lo``/``token_hi`` (one per token, -1 where unknown) are frames the token is believed to
    lie in (e.g. its word's time in the greedy transcript). Tokens without anchors get the span from
    the previous anchor's start to the next anchor's end. The band is widened to be monotone and
    intersected with reachability.
    """
    num_tokens = (topology.num_states - 1) // 2
    token_lo = np.asarray(token_lo, np.int64)
    token_hi = np.asarray(token_hi, np.int64)
    known = token_lo >= 0
    # Earliest frame each token may be in: from the nearest anchor at or before it (frame 0 if none).
    first = np.where(known, token_lo - width_frames, np.iinfo(np.int64).min)
    first = np.maximum.accumulate(first)
    first = np.clip(first, 0, None)
    last = np.where(known, token_hi + width_frames, np.iinfo(np.int64).max)
    last = np.minimum.accumulate(last[::-1])[::-1]
    last = np.clip(last, None, num_frames - 1)
    # Frame range of every state: a token's own, blanks the union of their neighbours'.
    state_first = np.empty(topology.num_states, np.int64)
    state_last = np.empty(topology.num_states, np.int64)
    state_first[1::2] = first
    state_last[1::2] = last
    state_first[0], state_last[0] = 0, (last[0] if num_tokens else num_frames - 1)
    state_first[-1], state_last[-1] = (first[-1] if num_tokens else 0), num_frames - 1
    if num_tokens > 1:
        state_first[2:-1:2] = first[:-1]
        state_last[2:-1:2] = last[1:]
    state_first = np.minimum.accumulate(state_first[::-1])[::-1]
    state_last = np.maximum.accumulate(state_last)
    frames = np.arange(num_frames)
    # At frame t: states whose range contains t, a contiguous run since both ends are monotone.
    lo = np.searchsorted(state_last, frames, side="left").astype(np.int64)
    hi = (np.searchsorted(state_first, frames, side="right") - 1).astype(np.int64)
    full_lo, full_hi = reachable_band(topology, num_frames)
    return np.maximum(lo, full_lo), np.minimum(hi, full_hi)


# ---------------------------------------------------------------------------------------------
# The numba kernel
# ---------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _advance(scores, labels, jumps, starts, lo, hi, t_begin, prev, cur, bp, bp_offsets):
    """Alphas of frames ``t_begin .. t_begin + len(scores)``; returns (last column, other buffer).

    ``prev`` holds the alphas of frame ``t_begin - 1`` (-inf outside its band), ``cur`` is scratch
    (-inf outside the band of frame ``t_begin - 2``). With ``len(bp) > 0`` the jump of every cell is
    stored at ``bp[bp_offsets[i] + s - lo[t]]``.
    """
    keep = bp.shape[0] > 0
    for i in range(scores.shape[0]):
        t = t_begin + i
        first = lo[t]
        last = hi[t]
        row = scores[i]
        if t == 0:
            for s in range(first, last + 1):
                cur[s] = row[labels[s]] if starts[s] else NEG_INF
                if keep:
                    bp[bp_offsets[i] + s - first] = 0
        else:
            for s in range(first, last + 1):
                best = prev[s]
                code = 0
                if s >= 1 and prev[s - 1] > best:
                    best = prev[s - 1]
                    code = 1
                mask = jumps[s]
                if mask != 0:
                    for k in range(2, 5):
                        if (mask >> k) & 1 and prev[s - k] > best:
                            best = prev[s - k]
                            code = k
                cur[s] = best + row[labels[s]]
                if keep:
                    bp[bp_offsets[i] + s - first] = code
        # Cells of frame t - 2 left of this band are stale now (bands only move right).
        stale_from = lo[t - 2] if t >= 2 else 0
        for s in range(stale_from, first):
            cur[s] = NEG_INF
        prev, cur = cur, prev
    return prev, cur


@njit(cache=True, nogil=True)
def _backtrack(bp, bp_offsets, lo, t_begin, count, state, path):
    """Follow the jumps from ``state`` at frame ``t_begin + count - 1``; returns the state before."""
    for i in range(count - 1, -1, -1):
        t = t_begin + i
        path[t] = state
        state -= bp[bp_offsets[i] + state - lo[t]]
    return state


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

def frame_scores(emissions_block: np.ndarray, star_penalty: float) -> np.ndarray:
    """float32 log-probabilities of a block of frames with the star column appended (last column)."""
    block = np.asarray(emissions_block, dtype=np.float32)
    scores = np.empty((block.shape[0], block.shape[1] + 1), np.float32)
    np.maximum(np.nan_to_num(block, nan=LOG_PROB_FLOOR, neginf=LOG_PROB_FLOOR), LOG_PROB_FLOOR,
               out=scores[:, :-1])
    scores[:, -1] = scores[:, :-1].max(axis=1) - np.float32(star_penalty) if block.shape[1] else LOG_PROB_FLOOR
    return scores


def default_segment_frames(num_frames: int) -> int:
    """Checkpoint spacing K ~ sqrt(8 T): (T / K) float64 columns and K uint8 rows cost about the same."""
    return int(min(max(num_frames, 1), max(256, math.isqrt(8 * max(num_frames, 1)))))


@dataclass(frozen=True)
class ViterbiResult:
    path: np.ndarray  # (T,) int32 state per frame
    score: float  # total log-probability of the path (the star column included)


def viterbi(emissions: np.ndarray, topology: Topology, *, star_penalty: float = DEFAULT_STAR_PENALTY,
            band: tuple[np.ndarray, np.ndarray] | None = None, segment_frames: int | None = None,
            block_frames: int = BLOCK_FRAMES, max_backpointer_bytes: int | None = None) -> ViterbiResult:
    """The best path of ``topology`` through ``emissions`` (frames x vocabulary log-probabilities).

    ``emissions`` may be a memory-mapped float16 array: it is read in blocks, converted to float32
    with the star column (``frame_scores``). ``band``: per-frame (lo, hi) states, default
    :func:`reachable_band`. ``segment_frames``: checkpoint spacing; ``num_frames`` is one segment,
    the plain Viterbi with all backpointers in memory, which is also the default while those fit in
    ``max_backpointer_bytes`` (default MAX_BACKPOINTER_BYTES). Raises NoPathError when no path fits.
    """
    num_frames = int(emissions.shape[0])
    num_states = topology.num_states
    if num_frames == 0:
        raise NoPathError("no frames")
    lo, hi = reachable_band(topology, num_frames) if band is None else band
    lo = np.ascontiguousarray(lo, np.int64)
    hi = np.ascontiguousarray(hi, np.int64)
    if np.any(hi < lo) or np.any(np.diff(lo) < 0) or np.any(np.diff(hi) < 0):
        raise NoPathError("the band is empty at some frame or not monotone")
    widths = hi - lo + 1
    if segment_frames is None:
        # Backpointers for the whole band if they fit the budget: one pass instead of two.
        budget = MAX_BACKPOINTER_BYTES if max_backpointer_bytes is None else max_backpointer_bytes
        single = int(widths.sum()) <= budget
        segment = num_frames if single else default_segment_frames(num_frames)
    else:
        segment = max(1, int(segment_frames))
    bounds = list(range(0, num_frames, segment)) + [num_frames]
    labels, jumps, starts = topology.labels, topology.jumps, topology.starts

    def read(t0: int, t1: int) -> np.ndarray:
        return frame_scores(emissions[t0:t1], star_penalty)

    prev = np.full(num_states, NEG_INF)
    cur = np.full(num_states, NEG_INF)
    empty_bp = np.zeros(0, np.uint8)
    empty_offsets = np.zeros(1, np.int64)
    checkpoints: list[np.ndarray] = []
    if len(bounds) == 2:
        return _single_pass(read, topology, lo, hi, widths, num_frames, block_frames)
    for c in range(len(bounds) - 1):
        t0, t1 = bounds[c], bounds[c + 1]
        checkpoints.append(prev[lo[t0 - 1]:hi[t0 - 1] + 1].copy() if t0 > 0 else np.zeros(0))
        for b0 in range(t0, t1, block_frames):
            b1 = min(t1, b0 + block_frames)
            prev, cur = _advance(read(b0, b1), labels, jumps, starts, lo, hi, b0, prev, cur, empty_bp, empty_offsets)
    state, score = _best_end(prev, topology, lo[-1], hi[-1])
    path = np.empty(num_frames, np.int32)
    for c in range(len(bounds) - 2, -1, -1):
        t0, t1 = bounds[c], bounds[c + 1]
        prev = np.full(num_states, NEG_INF)
        cur = np.full(num_states, NEG_INF)
        if t0 > 0:
            prev[lo[t0 - 1]:hi[t0 - 1] + 1] = checkpoints[c]
        checkpoints[c] = np.zeros(0)
        offsets = np.zeros(t1 - t0 + 1, np.int64)
        np.cumsum(widths[t0:t1], out=offsets[1:])
        bp = np.empty(int(offsets[-1]), np.uint8)
        for b0 in range(t0, t1, block_frames):
            b1 = min(t1, b0 + block_frames)
            prev, cur = _advance(read(b0, b1), labels, jumps, starts, lo, hi, b0, prev, cur, bp,
                                 offsets[b0 - t0:])
        state = int(_backtrack(bp, offsets, lo, t0, t1 - t0, state, path))
    return ViterbiResult(path, score)


def _best_end(alpha: np.ndarray, topology: Topology, first: int, last: int) -> tuple[int, float]:
    final = np.full(topology.num_states, NEG_INF)
    final[first:last + 1] = alpha[first:last + 1]
    final[~topology.ends] = NEG_INF
    state = int(np.argmax(final))
    if not np.isfinite(final[state]):
        raise NoPathError("no path fits the frames within the band")
    return state, float(final[state])


def _single_pass(read, topology: Topology, lo: np.ndarray, hi: np.ndarray, widths: np.ndarray, num_frames: int,
                 block_frames: int) -> ViterbiResult:
    """Forward with every backpointer kept, then backtrack: the plain Viterbi, when it fits in memory."""
    prev = np.full(topology.num_states, NEG_INF)
    cur = np.full(topology.num_states, NEG_INF)
    offsets = np.zeros(num_frames + 1, np.int64)
    np.cumsum(widths, out=offsets[1:])
    bp = np.empty(int(offsets[-1]), np.uint8)
    for b0 in range(0, num_frames, block_frames):
        b1 = min(num_frames, b0 + block_frames)
        prev, cur = _advance(read(b0, b1), topology.labels, topology.jumps, topology.starts, lo, hi, b0, prev, cur,
                             bp, offsets[b0:])
    state, score = _best_end(prev, topology, lo[-1], hi[-1])
    path = np.empty(num_frames, np.int32)
    _backtrack(bp, offsets, lo, 0, num_frames, state, path)
    return ViterbiResult(path, score)


def token_spans(path: np.ndarray, num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Per token, its first frame and one past its last (-1, -1 for a skipped optional token)."""
    path = np.asarray(path)
    frames = np.flatnonzero(path % 2 == 1)
    token = (path[frames] - 1) // 2
    starts = np.full(num_tokens, -1, np.int64)
    ends = np.full(num_tokens, -1, np.int64)
    # Frames are in time order and tokens non-decreasing, so the first/last occurrences are runs.
    first = np.ones(len(token), bool)
    first[1:] = token[1:] != token[:-1]
    last = np.ones(len(token), bool)
    last[:-1] = token[:-1] != token[1:]
    starts[token[first]] = frames[first]
    ends[token[last]] = frames[last] + 1
    return starts, ends


def path_log_probs(emissions: np.ndarray, topology: Topology, path: np.ndarray, *,
                   star_penalty: float = DEFAULT_STAR_PENALTY, block_frames: int = BLOCK_FRAMES) -> np.ndarray:
    """The log-probability of each frame's state on ``path`` (float32, the star column included)."""
    out = np.empty(len(path), np.float32)
    for b0 in range(0, len(path), block_frames):
        b1 = min(len(path), b0 + block_frames)
        scores = frame_scores(emissions[b0:b1], star_penalty)
        out[b0:b1] = scores[np.arange(b1 - b0), topology.labels[path[b0:b1]]]
    return out
