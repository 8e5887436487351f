"""Align a chapter's verses to its recording: verse and word times, scores, and what the text lacks.

    python -m tala.align.align_transcript ASR.json EMISSIONS.npy TEXT.json OUT.json [--method ctc|text]
        [--star-penalty 1.0] [--max-chapter-cer 0.6] [--refine-edges | --no-refine-edges] [--audio WAV]
        [--band-s 20] [--csv OUT.csv] [--vtt OUT.vtt] [--labels OUT.labels.txt]

Inputs: the transcribe step's JSON and emissions (frames x vocabulary log-probabilities) and the
read_text step's verses, whose ``normalized`` text uses only vocabulary characters, words
separated by single spaces.

Method ``ctc`` (default): CTC forced alignment of the whole chapter (:mod:`tala.align.ctc_align`). The
token sequence is the verses' letters with the word delimiter after every word, and an optional
``<star>`` before the first verse, between verses and after the last, so a spoken heading, an
intro or a gap goes to the star instead of stretching a verse. On long recordings the Viterbi runs
in a band around the greedy transcript's words matched to the text (:mod:`tala.align.text_align`).
Method ``text``: the matched words' times alone (the fallback, no forced alignment); a verse's
score is then that of its letters forced into its span, a word's the log of its similarity to
its transcript word(s).

First the chapter's text is checked against the audio: the *chapter CER* is the greedy
transcript's character error rate against the text, counted over the text-to-text word alignment
(paired words by their letters, unpaired words in full; transcript words before and after the
text, such as a heading, not counted). Above ``--max-chapter-cer`` the recording is rejected with
one line naming the DOCX. Counting by words separates a wrong text far better than a plain character alignment:
on the demo, the right texts score 0.02-0.10 and another chapter's text 0.82-0.91, while the
verses' own greedy CER (``summary.verse_cer``) of another chapter's text is only 0.6-0.74, since
unrelated text in one language shares many letters.

Times
-----
A verse starts at its first letter's first frame and ends where the word delimiter after its
last word starts (``frame_s`` = 20 ms; the last letter's spike ends early, by up to 220 ms after
a long vowel). On the demo corpus these raw edges are within 20 ms (median) and 50 ms (p95) of
the truth, starts ~30 ms late (spike latency). With ``--refine-edges`` (default) each edge is then
moved to the speech onset/offset in the WAV's short-time energy (10 ms frames) within the pause
next to it (:func:`refine_edges`): median 4 ms, p95 10 ms there. Words: first letter's first
frame to the start of the delimiter after them; a verse's first and last word share its edges.

Rejected chapters
-----------------
A chapter whose text does not match its audio (chapter CER above the limit, no speech heard, too
few frames for the text) or whose text read_text already rejected is not an error of the run: the
step writes ``{"status": "rejected", "stage", "file", "reason"}`` (no verses) and one
``rejected: <DOCX>: <reason>`` line, and exits 0, so that the language's dataset and reports are
built from its other chapters and list this one with its reason. Anything else (unreadable
inputs, a bug) still fails the job.

Output (``OUT.json``): status "ok", recording, audio, method, frame_s, duration_s, verses (number, label,
start, end, text, normalized, score = mean log-probability per frame of the verse's letters and
word delimiters on the path, cer and greedy = the argmax transcript of the verse's frames), words
(word, verse, start, end, score), star (spans of 0.1 s or more given to ``<star>``, with the verse
they follow), letters (method "ctc": ``[letter, start, end]`` of every letter of the text on the forced
path, unrefined: from the letter's first frame to the next token's, so a word's letters tile it; the
units stage scores acoustic units against them), summary (verses, mean_score, chapter_cer, verse_cer = all verses' greedy CER
together, star_s), text_warnings (read_text's warnings about the DOCX) and settings. No wall times:
two runs give the same bytes (the time goes to the log).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import tala
from tala.align import ctc_align, exports, text_align
from tala.audio_io import read_frame_levels_db
from tala.ctc_text import CtcVocabulary, char_edits, greedy_text
from tala.errors import InputError, run_cli
from tala.fileio import read_json_object, write_json_atomic, write_text_atomic

METHODS = ("ctc", "text")
MAX_CHAPTER_CER = 0.6
STAR_MIN_S = 0.1
# Band half-width around the matched transcript words: a chapter's reading never drifts that far
# from the greedy transcript's own word times (tested on the demo and on an hour of synthesis).
BAND_S = 20.0
# Below this many Viterbi cells the full (exact) band is cheaper than building anchors.
FULL_BAND_CELLS = 200_000_000
# The band is widened when the path comes this close to an edge the anchors imposed.
BAND_MARGIN_S = 2.0
MAX_BAND_RETRIES = 4
# Edge refinement (see refine_edges): energy frames, how far an edge may move, the threshold.
ENERGY_FRAME_S = 0.01
REFINE_MAX_S = 0.4
SPEECH_ABOVE_FLOOR_DB = 12.0
SPEECH_BELOW_PEAK_DB = 45.0


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextVerse:
    """A verse of the read_text JSON: its text and the normalized text that is aligned."""

    number: int
    label: str
    text: str
    normalized: str


class ChapterRejected(InputError):
    """The chapter's text does not fit its audio: recorded as a rejected chapter, not a failed job."""


def docx_of(text: dict, text_path: str | Path) -> str:
    """The DOCX a read_text result came from (what a user fixes), else the JSON itself."""
    return str(text.get("docx") or text_path)


def rejection(recording: str, stage: str, file: str, reason: str, **extra) -> dict:
    """The aligned JSON of a rejected chapter: no verses, the file to fix and why."""
    return {"recording": recording, "status": "rejected", "stage": stage, "file": file, "reason": reason, **extra}


def read_verses(data: dict, path: str | Path) -> list[TextVerse]:
    """The verses of a read_text result (``data``, read from ``path``)."""
    try:
        verses = [TextVerse(int(v["number"]), str(v.get("label", v["number"])), str(v.get("text", "")),
                        " ".join(str(v["normalized"]).split())) for v in data["verses"]]
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"not a read_text result: missing or bad {err}") from None
    if not verses:
        raise InputError(path, "no verses")
    return verses


def open_emissions(path: str | Path, asr: dict) -> np.ndarray:
    """The emissions memory-mapped (float16, frames x vocabulary), checked against the transcript JSON."""
    try:
        emissions = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, ValueError) as err:
        raise InputError(path, f"not a readable .npy file ({err})") from None
    expected = (int(asr.get("num_frames", -1)), len(asr["vocabulary"]))
    if emissions.ndim != 2 or emissions.shape != expected:
        raise InputError(path, f"shape {emissions.shape} does not match the transcript JSON "
                               f"({expected[0]} frames x {expected[1]} tokens)")
    return emissions


# ---------------------------------------------------------------------------------------------
# Token sequence
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Targets:
    """The chapter as one token sequence, with where each token comes from."""

    tokens: np.ndarray  # (L,) int32 emission column (the star: len(vocabulary))
    optional: np.ndarray  # (L,) bool
    verse: np.ndarray  # (L,) int64 verse index, -1 for stars
    word: np.ndarray  # (L,) int64 global word index, -1 for stars and delimiters
    is_star: np.ndarray  # (L,) bool
    ends_verse: np.ndarray  # (L,) bool: the delimiter after a verse's last word
    words: list[tuple[int, str]]  # (verse index, word) per global word index


def build_targets(verses: list[TextVerse], vocabulary: CtcVocabulary, text_path: str | Path) -> Targets:
    """``<star> verse1 | <star> verse2 | ... <star>``: letters, the delimiter after every word, optional stars.

    The delimiter after a verse's last word is where the verse ends: the model emits it once the
    word is over, while the last letter's spike ends early (on the demo: long final vowels by up
    to 220 ms; with it the raw ends are within 30 ms).
    """
    ids = vocabulary.ids
    star_id = len(vocabulary.tokens)
    tokens, verse_of, word_of, stars, ends = [star_id], [-1], [-1], [True], [False]
    words: list[tuple[int, str]] = []
    for index, verse in enumerate(verses):
        for position, word in enumerate(verse.normalized.split()):
            if position:
                tokens.append(vocabulary.delimiter_id)
                verse_of.append(index)
                word_of.append(-1)
                stars.append(False)
                ends.append(False)
            for char in word:
                if char not in ids:
                    raise InputError(text_path, f"verse {verse.label}: {char!r} (U+{ord(char):04X}) is not in the "
                                                f"model's vocabulary; normalize the text for this model")
                tokens.append(ids[char])
                verse_of.append(index)
                word_of.append(len(words))
                stars.append(False)
                ends.append(False)
            words.append((index, word))
        if verse.normalized:
            tokens += [vocabulary.delimiter_id, star_id]
            verse_of += [index, -1]
            word_of += [-1, -1]
            stars += [False, True]
            ends += [True, False]
    is_star = np.array(stars, bool)
    return Targets(np.array(tokens, np.int32), is_star.copy(), np.array(verse_of, np.int64),
                   np.array(word_of, np.int64), is_star, np.array(ends, bool), words)


# ---------------------------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------------------------

def check_frames(targets: Targets, num_frames: int, frame_s: float, emissions_path: str | Path) -> None:
    needed = ctc_align.min_frames(targets.tokens, targets.optional)
    if num_frames < needed:
        required = int(np.count_nonzero(~targets.optional))
        raise ChapterRejected(emissions_path, f"{num_frames} frames ({num_frames * frame_s:.2f} s) cannot hold the "
                                         f"text's {required} tokens: a CTC path needs at least {needed} frames "
                                         f"({needed * frame_s:.2f} s); wrong audio or text?")


def token_anchors(targets: Targets, words: text_align.WordAlignment, frame_s: float,
                  num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ranges of each token's word in the greedy transcript, for matched words (-1 elsewhere)."""
    lo = np.full(len(targets.tokens), -1, np.int64)
    hi = np.full(len(targets.tokens), -1, np.int64)
    has_word = targets.word >= 0
    matched = np.zeros(len(targets.tokens), bool)
    matched[has_word] = words.matched[targets.word[has_word]]
    index = targets.word[matched]
    lo[matched] = np.clip(np.floor(words.start[index] / frame_s), 0, num_frames - 1).astype(np.int64)
    hi[matched] = np.clip(np.ceil(words.end[index] / frame_s), 0, num_frames - 1).astype(np.int64)
    return lo, hi


def ctc_path(emissions: np.ndarray, targets: Targets, vocabulary: CtcVocabulary, star_penalty: float,
             anchors: tuple[np.ndarray, np.ndarray] | None, band_s: float, frame_s: float,
             full_band_cells: int = FULL_BAND_CELLS) -> tuple[ctc_align.Topology, np.ndarray, dict]:
    """The Viterbi path, exact on the reachable band, or in a band around ``anchors`` on long inputs."""
    topology = ctc_align.make_topology(targets.tokens, vocabulary.blank_id, targets.optional)
    num_frames = emissions.shape[0]
    full_lo, full_hi = ctc_align.reachable_band(topology, num_frames)
    full_cells = int(np.sum(full_hi - full_lo + 1))
    if anchors is None or full_cells <= full_band_cells or not np.any(anchors[0] >= 0):
        result = ctc_align.viterbi(emissions, topology, star_penalty=star_penalty, band=(full_lo, full_hi))
        return topology, result.path, {"band": "full", "cells": full_cells}
    width = max(1, round(band_s / frame_s))
    margin = max(1, round(BAND_MARGIN_S / frame_s))
    for attempt in range(MAX_BAND_RETRIES + 1):
        lo, hi = ctc_align.band_from_anchors(topology, num_frames, anchors[0], anchors[1], width)
        cells = int(np.sum(np.maximum(hi - lo + 1, 0)))
        if cells >= full_cells:
            break
        try:
            result = ctc_align.viterbi(emissions, topology, star_penalty=star_penalty, band=(lo, hi))
        except ctc_align.NoPathError:
            width *= 2
            continue
        path = result.path
        near_edge = ((path - lo < margin) & (lo > full_lo)) | ((hi - path < margin) & (hi < full_hi))
        if not np.any(near_edge):
            return topology, path, {"band": "anchored", "band_s": round(width * frame_s, 3), "cells": cells,
                                    "widened": attempt}
        width *= 2
    result = ctc_align.viterbi(emissions, topology, star_penalty=star_penalty, band=(full_lo, full_hi))
    return topology, result.path, {"band": "full", "cells": full_cells}


@dataclass(frozen=True)
class Spans:
    """Frame spans ``[start, end)`` per verse and per word (-1 where none), and star spans."""

    verse_start: np.ndarray
    verse_end: np.ndarray
    verse_score: np.ndarray
    word_start: np.ndarray
    word_end: np.ndarray
    word_score: np.ndarray
    star: list[tuple[int, int, int]]  # (start, end, index of the verse before or -1)
    letter_start: np.ndarray  # per token (letters only; -1 for delimiters, stars, skipped tokens)
    letter_end: np.ndarray


def letter_spans(tok_start: np.ndarray, targets: Targets) -> tuple[np.ndarray, np.ndarray]:
    """Frame spans ``[start, end)`` of each letter token on the path: from its first frame to the
    first frame of the next token (the blanks after a letter's spike are still that letter: the
    spans of a word's letters tile the word). -1 for delimiters, stars and skipped tokens."""
    start = np.full(len(tok_start), -1, np.int64)
    end = np.full(len(tok_start), -1, np.int64)
    placed = np.flatnonzero(tok_start >= 0)
    letters = placed[targets.word[placed] >= 0]
    # The token after a letter is a letter or the delimiter that ends its word: never skipped.
    nxt = np.searchsorted(placed, letters, side="right")
    ok = nxt < len(placed)
    start[letters[ok]] = tok_start[letters[ok]]
    end[letters[ok]] = tok_start[placed[nxt[ok]]]
    return start, end


def spans_from_path(path: np.ndarray, frame_log_probs: np.ndarray, targets: Targets, num_verses: int) -> Spans:
    num_tokens = len(targets.tokens)
    tok_start, tok_end = ctc_align.token_spans(path, num_tokens)
    on_token = path % 2 == 1
    frame_token = np.where(on_token, (path - 1) // 2, -1)
    verse_of_frame = np.where(on_token, targets.verse[np.maximum(frame_token, 0)], -1)
    word_of_frame = np.where(on_token, targets.word[np.maximum(frame_token, 0)], -1)

    def reduce(owner_of_token: np.ndarray, owner_of_frame: np.ndarray, count: int):
        start = np.full(count, -1, np.int64)
        end = np.full(count, -1, np.int64)
        score = np.full(count, np.nan)
        has = (owner_of_token >= 0) & (tok_start >= 0)
        start[:] = np.iinfo(np.int64).max
        np.minimum.at(start, owner_of_token[has], tok_start[has])
        np.maximum.at(end, owner_of_token[has], tok_end[has])
        start[start == np.iinfo(np.int64).max] = -1
        frames = owner_of_frame >= 0
        sums = np.bincount(owner_of_frame[frames], weights=frame_log_probs[frames], minlength=count)
        counts = np.bincount(owner_of_frame[frames], minlength=count)
        score[counts > 0] = sums[counts > 0] / counts[counts > 0]
        return start, end, score

    verse_start, verse_end, verse_score = reduce(targets.verse, verse_of_frame, num_verses)
    closing = targets.ends_verse & (tok_start >= 0)
    verse_end[targets.verse[closing]] = tok_start[closing]
    word_start, word_end, word_score = reduce(targets.word, word_of_frame, len(targets.words))
    # A word ends where the delimiter after it starts (CTC spikes end long vowels early).
    delimiter = (targets.word < 0) & ~targets.is_star & (tok_start >= 0)
    for j in np.flatnonzero(delimiter):
        previous_word = targets.word[j - 1] if j > 0 else -1
        if previous_word >= 0:
            word_end[previous_word] = tok_start[j]
    star = []
    for j in np.flatnonzero(targets.is_star & (tok_start >= 0)):
        before = targets.verse[:j][targets.verse[:j] >= 0]
        star.append((int(tok_start[j]), int(tok_end[j]), int(before[-1]) if len(before) else -1))
    letter_start, letter_end = letter_spans(tok_start, targets)
    return Spans(verse_start, verse_end, verse_score, word_start, word_end, word_score, star, letter_start, letter_end)


# ---------------------------------------------------------------------------------------------
# Edge refinement on the WAV's energy
# ---------------------------------------------------------------------------------------------

def speech_threshold_db(energy_db: np.ndarray) -> float:
    """A level between the noise floor (5th percentile) and the speech peaks (99th percentile)."""
    if len(energy_db) == 0:
        return 0.0
    floor = float(np.percentile(energy_db, 5))
    peak = float(np.percentile(energy_db, 99))
    return max(floor + SPEECH_ABOVE_FLOOR_DB, peak - SPEECH_BELOW_PEAK_DB) if peak > floor else peak


def refine_edges(starts: np.ndarray, ends: np.ndarray, energy_db: np.ndarray, threshold_db: float,
                 lower: np.ndarray, upper: np.ndarray, energy_frame_s: float = ENERGY_FRAME_S,
                 max_shift_s: float = REFINE_MAX_S) -> tuple[np.ndarray, np.ndarray]:
    """Move each verse's edges to the speech onset/offset next to them (seconds in, seconds out).

    A start moves back over loud frames (speech the spike came late for) to the first frame of the
    loud run it is in, or forward over quiet frames to the next loud one; an end likewise. Moves
    are limited to ``max_shift_s`` and to ``[lower, upper]`` (the neighbouring verses' edges), and
    an edge with no quiet frame within reach (continuous speech or music) stays where it is.
    """
    loud = energy_db > threshold_db
    n = len(loud)
    limit = max(1, round(max_shift_s / energy_frame_s))
    new_starts = np.array(starts, np.float64)
    new_ends = np.array(ends, np.float64)
    for v in range(len(starts)):
        if not (np.isfinite(starts[v]) and np.isfinite(ends[v])) or n == 0:
            continue
        low = max(0, math.ceil(lower[v] / energy_frame_s - 1e-9))
        high = min(n, math.floor(upper[v] / energy_frame_s + 1e-9))
        s = min(max(round(starts[v] / energy_frame_s), low), max(low, high - 1))
        e = min(max(round(ends[v] / energy_frame_s), low + 1), high)
        refined_s = _onset(loud, s, low, high, limit)
        refined_e = _offset(loud, e, low, high, limit)
        if refined_s is not None:
            new_starts[v] = refined_s * energy_frame_s
        if refined_e is not None:
            new_ends[v] = refined_e * energy_frame_s
        if new_ends[v] <= new_starts[v]:
            new_starts[v], new_ends[v] = starts[v], ends[v]
    return new_starts, new_ends


def _onset(loud: np.ndarray, s: int, low: int, high: int, limit: int) -> int | None:
    if s < high and loud[s]:
        k = s
        while k > low and k > s - limit and loud[k - 1]:
            k -= 1
        return k if (k == low or not loud[k - 1]) and k > s - limit else None
    k = s
    while k < high and k < s + limit and not loud[k]:
        k += 1
    return k if k < high and loud[k] else None


def _offset(loud: np.ndarray, e: int, low: int, high: int, limit: int) -> int | None:
    # Frame e - 1 is the verse's last frame.
    if e - 1 >= low and loud[e - 1]:
        k = e
        while k < high and k < e + limit and loud[k]:
            k += 1
        return k if (k == high or not loud[k]) and k < e + limit else None
    k = e
    while k > low and k > e - limit and not loud[k - 1]:
        k -= 1
    return k if k > low and loud[k - 1] else None


# ---------------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Names:
    """What the one-line errors of :func:`align_verses` name: the files the arrays came from."""

    text: str | Path = "<text>"  # the read_text JSON (bad targets)
    docx: str | Path = "<docx>"  # what a user fixes when the text does not fit the audio
    audio: str | Path = "<audio>"  # the recording, as the rejection reasons name it
    emissions: str | Path = "<emissions>"


@dataclass
class Placement:
    """Where the verses and words went (seconds, NaN where not placed) and the audio given to ``<star>``."""

    verse_start: np.ndarray
    verse_end: np.ndarray
    verse_score: np.ndarray
    word_start: np.ndarray
    word_end: np.ndarray
    word_score: np.ndarray
    star_all: list[tuple[float, float, int]]  # (start, end, index of the verse before or -1)
    star: list[tuple[float, float, int]]  # those of at least STAR_MIN_S, reported
    # (letter, start, end) of every letter on the forced path, in order (method "ctc" only)
    letters: list[tuple[str, float, float]] | None = None


def align_chapter(asr_path: str | Path, emissions_path: str | Path, text_path: str | Path, *,
                  method: str = "ctc", star_penalty: float = ctc_align.DEFAULT_STAR_PENALTY,
                  max_chapter_cer: float = MAX_CHAPTER_CER, refine: bool = True, band_s: float = BAND_S,
                  full_band_cells: int = FULL_BAND_CELLS, audio: str | Path | None = None) -> dict:
    """Align one recording from the transcription and text steps' files; return the output JSON's
    content. ChapterRejected (naming the DOCX) for a text that does not fit the audio, InputError
    for bad inputs. The work is :func:`align_verses`, on arrays."""
    if method not in METHODS:
        raise InputError("--method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    asr = read_json_object(asr_path)
    vocabulary = CtcVocabulary.from_record(asr, asr_path)
    frame_s = float(asr.get("frame_s", 0.02))
    emissions = open_emissions(emissions_path, asr)
    text = read_json_object(text_path)
    audio = audio or asr.get("audio")

    def energy_db() -> np.ndarray:
        if not audio:
            raise InputError(asr_path, "no audio path to refine the edges with (use --no-refine-edges)")
        return wav_energy_db(audio)

    aligned = align_verses(
        emissions, vocabulary, read_verses(text, text_path), asr.get("words") or [], frame_s=frame_s,
        duration_s=float(asr.get("duration_s", emissions.shape[0] * frame_s)), method=method,
        star_penalty=star_penalty, max_chapter_cer=max_chapter_cer, band_s=band_s, full_band_cells=full_band_cells,
        energy_db=energy_db if refine else None,
        names=Names(text_path, docx_of(text, text_path), asr.get("audio") or emissions_path, emissions_path))
    settings = aligned.pop("settings")
    return {"recording": text.get("recording") or Path(text_path).stem, "status": "ok", "audio": asr.get("audio"),
            "method": method, **aligned, "text_warnings": list(text.get("warnings") or []), "settings": settings,
            "tool": tala.tool("numba")}


def align_verses(emissions: np.ndarray, vocabulary: CtcVocabulary, verses: list[TextVerse], greedy_words: list[dict],
                 *, frame_s: float, duration_s: float, method: str = "ctc",
                 star_penalty: float = ctc_align.DEFAULT_STAR_PENALTY, max_chapter_cer: float = MAX_CHAPTER_CER,
                 band_s: float = BAND_S, full_band_cells: int = FULL_BAND_CELLS,
                 energy_db: Callable[[], np.ndarray] | None = None, names: Names = Names()) -> dict:
    """Verse and word times of ``verses`` in ``emissions`` (frames x vocabulary log-probabilities),
    with the greedy transcript's ``greedy_words`` (word, start, end) as anchors. ``energy_db()``, when
    given, returns the recording's ENERGY_FRAME_S frame levels to refine the verse edges with.

    The steps: the text as tokens, the chapter check against the transcript, the verses placed (CTC
    forced alignment with ``<star>``, or text-to-text), empty verses put after their neighbours, the
    edges refined, and each verse scored by the CER of its greedy transcript."""
    targets = build_targets(verses, vocabulary, names.text)
    try:
        check_frames(targets, emissions.shape[0], frame_s, names.emissions)
    except ChapterRejected as err:
        raise ChapterRejected(names.docx, f"the audio {names.audio} is too short for this text: {err.reason}") \
            from None
    words, chapter_cer = match_transcript(targets, greedy_words, duration_s, max_chapter_cer, names)
    settings = {"method": method, "star_penalty": star_penalty, "max_chapter_cer": max_chapter_cer,
                "refine_edges": energy_db is not None, "band_s": band_s}
    if method == "ctc":
        placement, settings["band"] = place_by_ctc(emissions, targets, vocabulary, words, len(verses), frame_s,
                                                   star_penalty, band_s, full_band_cells)
    else:
        placement = place_by_text(emissions, targets, vocabulary, words, len(verses), frame_s, star_penalty)
    fill_empty_verses(placement)
    if energy_db is not None:
        refine_placement(placement, energy_db(), targets, duration_s)
    verses_out, verse_cer = score_verses(verses, placement, emissions, vocabulary, frame_s)
    scores = [v["score"] for v in verses_out if v["score"] is not None]
    return {
        "frame_s": frame_s,
        "duration_s": duration_s,
        "verses": verses_out,
        "words": [{"word": word, "verse": verses[v].number,
                   "start": round(float(placement.word_start[i]), 3), "end": round(float(placement.word_end[i]), 3),
                   "score": None if not np.isfinite(placement.word_score[i]) else round(float(placement.word_score[i]), 4)}
                  for i, (v, word) in enumerate(targets.words)],
        "star": [{"start": round(a, 3), "end": round(b, 3), "after_verse": verses[v].number if v >= 0 else None}
                 for a, b, v in placement.star],
        **({"letters": [[letter, round(float(a), 3), round(float(b), 3)] for letter, a, b in placement.letters]}
           if placement.letters is not None else {}),
        "summary": {"verses": len(verses_out), "mean_score": round(float(np.mean(scores)), 4) if scores else None,
                    "chapter_cer": round(chapter_cer, 4), "verse_cer": round(verse_cer, 4),
                    "star_s": round(sum(b - a for a, b, _ in placement.star), 3)},
        "settings": settings,
    }


def match_transcript(targets: Targets, greedy_words: list[dict], duration_s: float, max_chapter_cer: float,
                     names: Names) -> tuple[text_align.WordAlignment, float]:
    """The text's words matched to the greedy transcript's, and the chapter CER; ChapterRejected
    when the text does not fit (another chapter's text, or no speech)."""
    hyp = [str(w["word"]) for w in greedy_words]
    ref = [word for _, word in targets.words]
    words = text_align.align_words(ref, hyp, [w["start"] for w in greedy_words], [w["end"] for w in greedy_words],
                                   start_s=0.0, end_s=duration_s, groups=[v for v, _ in targets.words])
    chapter_cer = text_align.text_cer(ref, hyp, words)
    if chapter_cer > max_chapter_cer and not greedy_words:
        raise ChapterRejected(names.docx, f"the model heard no speech in {names.audio} (silent, or not speech?)")
    if chapter_cer > max_chapter_cer:
        raise ChapterRejected(names.docx, f"text does not match the audio {names.audio}: chapter CER "
                                          f"{chapter_cer:.2f} > {max_chapter_cer:g} (another chapter's text?)")
    return words, chapter_cer


def place_by_ctc(emissions: np.ndarray, targets: Targets, vocabulary: CtcVocabulary, words: text_align.WordAlignment,
                 num_verses: int, frame_s: float, star_penalty: float, band_s: float,
                 full_band_cells: int) -> tuple[Placement, dict]:
    """Method "ctc": the forced path of the whole chapter in a band around the matched words."""
    anchors = token_anchors(targets, words, frame_s, emissions.shape[0])
    topology, path, band = ctc_path(emissions, targets, vocabulary, star_penalty, anchors, band_s, frame_s,
                                    full_band_cells)
    log_probs = ctc_align.path_log_probs(emissions, topology, path, star_penalty=star_penalty)
    spans = spans_from_path(path, log_probs, targets, num_verses)
    star_all = [(a * frame_s, b * frame_s, v) for a, b, v in spans.star]
    placement = Placement(
        verse_start=np.where(spans.verse_start >= 0, spans.verse_start * frame_s, np.nan),
        verse_end=np.where(spans.verse_end >= 0, spans.verse_end * frame_s, np.nan),
        verse_score=spans.verse_score, word_start=spans.word_start * frame_s, word_end=spans.word_end * frame_s,
        word_score=spans.word_score, star_all=star_all,
        star=[(a, b, v) for a, b, v in star_all if b - a >= STAR_MIN_S - 1e-9],
        letters=[(vocabulary.tokens[targets.tokens[j]], spans.letter_start[j] * frame_s, spans.letter_end[j] * frame_s)
                 for j in np.flatnonzero(spans.letter_start >= 0)])
    return placement, band


def place_by_text(emissions: np.ndarray, targets: Targets, vocabulary: CtcVocabulary, words: text_align.WordAlignment,
                  num_verses: int, frame_s: float, star_penalty: float) -> Placement:
    """Method "text": verses span their matched words; scores by forcing each verse into its span."""
    word_verse = np.array([v for v, _ in targets.words], np.int64)
    verse_start = np.full(num_verses, np.nan)
    verse_end = np.full(num_verses, np.nan)
    for v in range(num_verses):
        mine = np.flatnonzero(word_verse == v)
        if len(mine):
            verse_start[v], verse_end[v] = words.start[mine[0]], words.end[mine[-1]]
    verse_score = np.array([_forced_score(emissions, targets, vocabulary, v, verse_start[v], verse_end[v],
                                          frame_s, star_penalty) for v in range(num_verses)])
    return Placement(verse_start, verse_end, verse_score, words.start, words.end,
                     np.where(words.partner >= 0, np.log(np.maximum(words.similarity, 1e-6)), np.nan), [], [])


def fill_empty_verses(placement: Placement) -> None:
    """Empty verses (no letters) sit at the end of the verse before them."""
    previous_end = 0.0
    for v in range(len(placement.verse_start)):
        if not np.isfinite(placement.verse_start[v]):
            placement.verse_start[v] = placement.verse_end[v] = previous_end
        previous_end = placement.verse_end[v]


def refine_placement(placement: Placement, energy_db: np.ndarray, targets: Targets, duration_s: float) -> None:
    """Verse edges moved onto the speech (:func:`refine_edges`); a verse's first and last words share them."""
    placement.verse_start, placement.verse_end = _refine(energy_db, placement.verse_start, placement.verse_end,
                                                         duration_s, placement.star_all)
    placement.word_start = np.array(placement.word_start, np.float64)
    placement.word_end = np.array(placement.word_end, np.float64)
    word_verse = np.array([v for v, _ in targets.words], np.int64)
    for v in range(len(placement.verse_start)):
        mine = np.flatnonzero(word_verse == v)
        if len(mine):
            placement.word_start[mine[0]] = placement.verse_start[v]
            placement.word_end[mine[-1]] = placement.verse_end[v]


def score_verses(verses: list[TextVerse], placement: Placement, emissions: np.ndarray, vocabulary: CtcVocabulary,
                 frame_s: float) -> tuple[list[dict], float]:
    """Each verse's record, with the CER of the greedy transcript of its frames; and the pooled CER."""
    verses_out, total_errors, total_chars = [], 0, 0
    for v, verse in enumerate(verses):
        first = int(math.floor(placement.verse_start[v] / frame_s + 1e-6))
        last = int(math.ceil(placement.verse_end[v] / frame_s - 1e-6))
        greedy = greedy_text(emissions[first:last], vocabulary)
        errors = char_edits(verse.normalized, greedy)
        total_errors += errors
        total_chars += len(verse.normalized)
        score = placement.verse_score[v]
        verses_out.append({
            "number": verse.number, "label": verse.label,
            "start": round(float(placement.verse_start[v]), 3), "end": round(float(placement.verse_end[v]), 3),
            "text": verse.text, "normalized": verse.normalized,
            "score": None if not np.isfinite(score) else round(float(score), 4),
            "cer": round(errors / len(verse.normalized), 4) if verse.normalized else 0.0,
            "greedy": greedy,
        })
    return verses_out, total_errors / total_chars if total_chars else 0.0


def _forced_score(emissions, targets: Targets, vocabulary: CtcVocabulary, verse: int, start_s: float, end_s: float,
                  frame_s: float, star_penalty: float) -> float:
    """Mean log-probability of the verse's tokens forced into its span (method "text")."""
    mine = targets.verse == verse
    if not np.isfinite(start_s) or not np.any(mine):
        return math.nan
    first, last = int(start_s / frame_s), int(math.ceil(end_s / frame_s))
    tokens = targets.tokens[mine]
    if last - first < ctc_align.min_frames(tokens):
        return math.nan
    topology = ctc_align.make_topology(tokens, vocabulary.blank_id)
    block = emissions[first:last]
    result = ctc_align.viterbi(block, topology, star_penalty=star_penalty)
    probs = ctc_align.path_log_probs(block, topology, result.path, star_penalty=star_penalty)
    return float(np.mean(probs[result.path % 2 == 1]))


def _refine(energy: np.ndarray, verse_start: np.ndarray, verse_end: np.ndarray, duration_s: float,
            star: list[tuple[float, float, int]]):
    """Edges moved within their neighbours' edges, and never into audio given to ``<star>``
    (a heading read without a pause before verse 1 stays out of it)."""
    threshold = speech_threshold_db(energy)
    lower = np.concatenate([[0.0], verse_end[:-1]])
    upper = np.concatenate([verse_start[1:], [duration_s]])
    for start, end, before in star:
        if before + 1 < len(lower):
            lower[before + 1] = max(lower[before + 1], end)
        if before >= 0:
            upper[before] = min(upper[before], start)
    return refine_edges(verse_start, verse_end, energy, threshold, lower, upper)


def wav_energy_db(path: str | Path, frame_s: float = ENERGY_FRAME_S) -> np.ndarray:
    """RMS level (dBFS) of consecutive ``frame_s`` frames of a WAV, streamed (an hour never sits in
    memory as floats): :func:`tala.audio_io.read_frame_levels_db`, the levels segment works with."""
    try:
        return read_frame_levels_db(path, frame_s=frame_s, hop_s=frame_s).levels_db.astype(np.float64)
    except InputError as err:
        raise InputError(path, f"cannot read the audio to refine the edges ({err.reason}); --no-refine-edges "
                               "skips it") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.align.align_transcript",
        description="Verse and word times of a chapter: CTC forced alignment with a <star> token for audio "
                    "the text lacks (or text-to-text with --method text).")
    parser.add_argument("asr", help="the transcribe step's JSON")
    parser.add_argument("emissions", help="the transcribe step's emissions .npy")
    parser.add_argument("text", help="the read_text step's JSON (verses with normalized text)")
    parser.add_argument("output", help="aligned JSON to write")
    parser.add_argument("--method", choices=METHODS, default="ctc", help="(default: %(default)s)")
    parser.add_argument("--star-penalty", type=float, default=ctc_align.DEFAULT_STAR_PENALTY,
                        help="log-probability per frame that audio given to <star> costs (default: %(default)s)")
    parser.add_argument("--max-chapter-cer", type=float, default=MAX_CHAPTER_CER,
                        help="reject the text above this character error rate (default: %(default)s)")
    parser.add_argument("--refine-edges", action=argparse.BooleanOptionalAction, default=True,
                        help="move verse edges to the speech onset/offset in the WAV (default: on)")
    parser.add_argument("--audio", help="the recording's 16 kHz WAV, for --refine-edges (default: the one the "
                                        "transcribe JSON names)")
    parser.add_argument("--band-s", type=float, default=BAND_S,
                        help="long recordings: Viterbi band half-width around matched words (default: %(default)s)")
    # The verse timing exports come out of the same job: at 1,189 chapters a job per recording less.
    parser.add_argument("--csv", help="also write the verse timings as CSV (tala.align.exports)")
    parser.add_argument("--vtt", help="also write them as WebVTT")
    parser.add_argument("--labels", help="also write them as an Audacity label track")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    text = read_json_object(args.text)
    recording = str(text.get("recording") or Path(args.text).stem)
    if text.get("status") == "rejected":  # read_text could not use the DOCX: pass its reason on
        return write_rejection(args.output, rejection(recording, str(text.get("stage") or "read_text"),
                                                      docx_of(text, args.text), str(text.get("reason"))))
    try:
        result = align_chapter(args.asr, args.emissions, args.text, method=args.method,
                               star_penalty=args.star_penalty, max_chapter_cer=args.max_chapter_cer,
                               refine=args.refine_edges, band_s=args.band_s, audio=args.audio)
    except ChapterRejected as err:
        return write_rejection(args.output, rejection(recording, "align", err.path, err.reason))
    for path, render in ((args.csv, exports.timings_csv), (args.vtt, exports.timings_vtt),
                         (args.labels, exports.timings_labels)):  # fmt: skip
        if path:
            write_text_atomic(path, render(result))
    write_json_atomic(args.output, result)
    summary = result["summary"]
    print(f"align: {args.text}: {summary['verses']} verses, method {result['method']}, chapter CER "
          f"{summary['chapter_cer']:.3f}, mean score {summary['mean_score']}, star {summary['star_s']:.2f} s, "
          f"{time.perf_counter() - started:.2f} s -> {args.output}", file=sys.stderr)
    return 0


def write_rejection(output: str | Path, record: dict) -> int:
    """Write a rejected chapter's JSON and its one line; the job succeeds (see the module docstring)."""
    write_json_atomic(output, record)
    print(f"rejected: {record['file']}: {record['reason']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
