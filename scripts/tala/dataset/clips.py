"""Cut an aligned recording into training segments: clips of whole verses, cut in pauses.

    python -m tala.dataset.clips ALIGNED_JSON OUT_JSONL CLIPS_DIR [--audio WAV] [--root DIR]
                         [--min-s 2] [--max-s 20] [--pad-s 0.15] [--max-cer 0.3]
                         [--min-pause-s 0.15] [--text original|normalized]

Consecutive verses are grouped into segments of ``min_s``..``max_s`` seconds (the clip, padding
included). A segment boundary falls in a pause: a gap of at least ``min_pause_s`` between one
verse's end and the next one's start. A verse longer than ``max_s`` is cut between its words (the
aligner's word times, at boundaries between the text's tokens) into pieces that form segments of
their own, in its pauses where they suffice. Where a stretch of speech without such a pause is
longer than ``max_s`` (a long verse, or verses read without a pause), it is cut in its widest gaps
between words or verses, however short, as few times as needed (the clips on either side padded
into the gap at most to its middle); those clips carry the flag ``cut in a gap under min-pause-s``.
No kept clip is longer than ``max_s``: a verse that cannot be cut so (no word times, words that do
not match its text, or a single word longer than ``max_s``) is dropped (``over-max``). A spoken
heading, intro or music the text lacks (the aligner's star spans) is never inside a clip: a star
span in a gap forces a cut there, and no clip edge is padded into it.

Each clip edge is padded into the silence by up to ``pad_s``, but never past the middle of the gap
to the neighbouring speech (verse or star span), so no two clips share audio.

Each segment is scored with the character error rate of what the aligner's greedy CTC decoding
heard against the normalized text, and with the duration-weighted mean log-probability per frame.
Segments with CER above ``max_cer``, shorter than ``min_s`` with no neighbour to merge with, with
more than ``max_s`` of speech that cannot be cut, or with a verse the aligner could not place (no
score or times) are dropped, with a reason (``reason_kind``: ``cer``, ``too-short``,
``over-max``, ``unaligned``). ``partial_verses`` lists the verses only partly in a segment (cut
between words). ``word_times`` gives each word of ``normalized`` its aligned [start, end] in seconds
from the clip's start (null when the aligner's words of a verse do not match its normalized text):
what a trainer needs to cut a clip again between words (``part_seconds``) or to guide attention.

Outputs: one 16 kHz PCM_16 WAV per kept segment in CLIPS_DIR, named
``{rec}_{index:04d}_{first}-{last}.wav`` (verse numbers; the index counts kept and dropped
segments, so ids do not move when ``max_cer`` changes), and OUT_JSONL, one line per segment
(kept and dropped), ``audio`` relative to ROOT (default: CLIPS_DIR's grandparent, the dataset
folder in ``<dataset>/clips/<rec>/``). The clips are written into a temporary folder renamed into
place at the end, and the JSONL last, so a killed job never leaves a complete-looking result.
"""

from __future__ import annotations

import argparse
import bisect
import math
import os
import sys
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import soundfile as sf

from tala.audio_io import SAMPLE_RATE, check_input_file
from tala.ctc_text import cer
from tala.errors import InputError, run_cli
from tala.fileio import atomic_dir, read_json_object, write_jsonl_atomic, write_text_atomic

MIN_S = 2.0
MAX_S = 20.0
PAD_S = 0.15
MAX_CER = 0.3
MIN_PAUSE_S = 0.15
# The aligned JSON's duration and the WAV's may differ by rounding; more means the wrong audio.
DURATION_TOLERANCE_S = 0.5

FLAG_TIGHT_CUT = "cut in a gap under min-pause-s"


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlignedVerse:
    """One verse of the aligned JSON. ``start``/``end``/``score`` are None where it was not placed."""

    number: int
    label: str
    start: float | None
    end: float | None
    text: str
    normalized: str
    score: float | None
    cer: float | None
    greedy: str | None

    @property
    def aligned(self) -> bool:
        return self.start is not None and self.end is not None and self.score is not None


@dataclass(frozen=True)
class Unit:
    """The smallest piece a segment is made of: a whole verse, or a piece of a long one
    (``part`` counts from 0; ``parts`` > 1 marks a piece)."""

    verse: int  # index into the verse list
    start: float
    end: float
    text: str
    normalized: str
    score: float
    part: int = 0
    parts: int = 1


@dataclass(frozen=True)
class Segment:
    """A segment as written to the JSONL; ``start``/``end`` are the clip's, padding included."""

    index: int
    verse_indices: tuple[int, ...]
    start: float | None  # None for a verse the aligner could not place
    end: float | None
    speech_start: float
    speech_end: float
    text: str
    normalized: str
    greedy: str | None
    cer: float | None
    score: float | None
    kept: bool
    reason: str | None = None
    reason_kind: str | None = None
    flags: tuple[str, ...] = ()
    partial: tuple[int, ...] = ()  # verse indices only partly in the segment (long verses cut between words)
    # [start, end] of each word of ``normalized``, seconds from the clip's start (None: not known)
    word_times: tuple[tuple[float, float], ...] | None = None

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start


# ---------------------------------------------------------------------------------------------
# Reading the aligned JSON
# ---------------------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def parse_verses(aligned: dict, path: str | Path = "<aligned>") -> list[AlignedVerse]:
    """The aligned JSON's verses; InputError naming ``path`` if there are none."""
    raw = aligned.get("verses")
    if not isinstance(raw, list) or not raw:
        raise InputError(path, "no verses in the aligned JSON (nothing to cut into clips)")
    verses = []
    for position, item in enumerate(raw):
        if not isinstance(item, dict) or "number" not in item or "text" not in item:
            raise InputError(path, f"verse {position + 1} lacks 'number' or 'text'")
        start, end = _number(item.get("start")), _number(item.get("end"))
        if start is not None and end is not None and end < start:
            raise InputError(path, f"verse {item['number']} ends ({end}) before it starts ({start})")
        verses.append(AlignedVerse(
            number=int(item["number"]), label=str(item.get("label", item["number"])),
            start=start, end=end, text=" ".join(str(item["text"]).split()),
            normalized=" ".join(str(item.get("normalized") or "").split()),
            score=_number(item.get("score")), cer=_number(item.get("cer")),
            greedy=None if item.get("greedy") is None else " ".join(str(item["greedy"]).split())))
    return verses


def parse_star(aligned: dict) -> list[tuple[float, float]]:
    """Star spans (audio the text lacks) as sorted (start, end) pairs."""
    spans = []
    for item in aligned.get("star") or []:
        start, end = _number(item.get("start")), _number(item.get("end"))
        if start is not None and end is not None and end > start:
            spans.append((start, end))
    return sorted(spans)


def words_by_verse(aligned: dict, verses: list[AlignedVerse]) -> dict[int, list[dict]]:
    """The aligner's words grouped by verse index (words of unknown verses are ignored)."""
    index_of = {}
    for index, verse in enumerate(verses):
        index_of.setdefault(verse.number, index)
    grouped: dict[int, list[dict]] = {}
    for word in aligned.get("words") or []:
        index = index_of.get(word.get("verse"))
        start, end = _number(word.get("start")), _number(word.get("end"))
        if index is not None and start is not None and end is not None:
            grouped.setdefault(index, []).append({**word, "start": start, "end": end})
    for words in grouped.values():
        words.sort(key=lambda w: w["start"])
    return grouped


# ---------------------------------------------------------------------------------------------
# Cutting long verses at word pauses
# ---------------------------------------------------------------------------------------------

_OKINA_LIKE = "ʻʼ'‘’`"


def _word_counts(token: str, okina_is_letter: bool) -> int:
    """How many normalized words an original whitespace token becomes (punctuation breaks words)."""
    kept = "".join(ch if unicodedata.category(ch)[0] in "LNM" or (okina_is_letter and ch in _OKINA_LIKE)
                   else " " for ch in unicodedata.normalize("NFC", token))
    return len(kept.split())


def original_token_ends(text: str, n_words: int) -> list[int] | None:
    """For each original whitespace token, the number of normalized words up to its end; None if
    the tokens do not add up to ``n_words`` (then a cut between words cannot be mapped to text)."""
    tokens = text.split()
    for okina_is_letter in (True, False):
        ends, total = [], 0
        for token in tokens:
            total += _word_counts(token, okina_is_letter)
            ends.append(total)
        if total == n_words:
            return ends
    return None


def split_verse(verse: AlignedVerse, index: int, words: list[dict], max_s: float) -> tuple[list[Unit], str | None]:
    """A verse as one Unit; if longer than ``max_s``, as one Unit per stretch of words between two
    places it may be cut: a word boundary (words that do not overlap) that is also a boundary
    between the text's tokens. The grouping puts them back together and cuts in the widest gaps.

    A piece's normalized text is its words, its original text the matching tokens, its score the
    duration-weighted mean of its words' scores (the verse's where words carry none). A verse
    longer than ``max_s`` that cannot be cut into pieces of at most ``max_s`` of speech stays whole;
    the second value then says why.
    """
    whole = Unit(index, verse.start, verse.end, verse.text, verse.normalized, verse.score)
    if verse.end - verse.start <= max_s:
        return [whole], None
    if len(words) < 2:
        return [whole], "the aligner gave no times for its words" if not words else "it has one word"
    token_ends = original_token_ends(verse.text, len(words))
    if token_ends is None:
        return [whole], "its aligned words do not match its text"
    tokens = verse.text.split()
    cut_after = [k for k in range(len(words) - 1)
                 if (k + 1) in token_ends and words[k + 1]["start"] >= words[k]["end"]]
    bounds = [0, *(k + 1 for k in cut_after), len(words)]
    units = []
    for part, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        piece = words[lo:hi]
        tok_lo = token_ends.index(lo) + 1 if lo else 0
        tok_hi = token_ends.index(hi) + 1 if hi < len(words) else len(tokens)
        start = verse.start if lo == 0 else piece[0]["start"]
        end = verse.end if hi == len(words) else piece[-1]["end"]
        weights = [(w["end"] - w["start"], _number(w.get("score"))) for w in piece]
        total = sum(d for d, s in weights if s is not None)
        score = (sum(d * s for d, s in weights if s is not None) / total) if total > 0 else verse.score
        units.append(Unit(index, start, end, " ".join(tokens[tok_lo:tok_hi]),
                          " ".join(str(w.get("word", "")) for w in piece), score, part, len(bounds) - 1))
    longest = max(units, key=lambda u: u.end - u.start)
    if longest.end - longest.start > max_s:
        return [whole], (f"no cut between its words leaves every piece within max-s "
                         f"(\"{longest.text}\" alone is {longest.end - longest.start:.2f} s)")
    return units, None


# ---------------------------------------------------------------------------------------------
# Grouping
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Speech:
    """Every stretch of speech in a recording (units, verses not placed but with times, star
    spans), indexed so that ``clip_edges`` finds the nearest on either side by bisection."""

    starts: tuple[float, ...]  # ascending
    latest_end: tuple[float, ...]  # [k]: the latest end among the first k stretches by start
    ends: tuple[float, ...]  # ascending
    earliest_start: tuple[float, ...]  # [k]: the earliest start among the stretches from the k-th by end


def speech_index(units: list[Unit], verses: list[AlignedVerse], star: list[tuple[float, float]]) -> Speech:
    spans = [(u.start, u.end) for u in units]
    spans += [(v.start, v.end) for v in verses if not v.aligned and v.start is not None and v.end is not None]
    spans += star
    by_start, by_end = sorted(spans), sorted(spans, key=lambda span: (span[1], span[0]))
    latest_end = [-math.inf]
    for _, end in by_start:
        latest_end.append(max(latest_end[-1], end))
    earliest_start = [math.inf] * (len(by_end) + 1)
    for k in range(len(by_end) - 1, -1, -1):
        earliest_start[k] = min(earliest_start[k + 1], by_end[k][0])
    return Speech(tuple(a for a, _ in by_start), tuple(latest_end), tuple(b for _, b in by_end),
                  tuple(earliest_start))


def clip_edges(start: float, end: float, spans: Speech, pad_s: float, duration_s: float) -> tuple[float, float]:
    """Pad [start, end] by up to ``pad_s`` into silence: never past the middle of the gap to the
    nearest other speech, not at all on a side where other speech overlaps the edge, never before 0
    or after ``duration_s``. Speech inside [start, end] is the segment's own."""
    left, right = max(0.0, start - pad_s), min(duration_s, end + pad_s)
    before = spans.latest_end[bisect.bisect_left(spans.starts, start)]  # of the speech starting earlier
    if before > -math.inf:
        left = max(left, (min(before, start) + start) / 2)
    after = spans.earliest_start[bisect.bisect_right(spans.ends, end)]  # of the speech ending later
    if after < math.inf:
        right = min(right, (max(after, end) + end) / 2)
    return min(left, start), max(right, end)


def _forced_cut(a: Unit, b: Unit, verses: list[AlignedVerse], star: list[tuple[float, float]]) -> bool:
    """A boundary no segment may span: a star span or an unplaced verse between the units."""
    if b.verse - a.verse > 1:
        return True
    return any(s < b.start and e > a.end for s, e in star)


def group_units(units: list[Unit], verses: list[AlignedVerse], star: list[tuple[float, float]], *,
                min_s: float, max_s: float, pad_s: float, min_pause_s: float,
                duration_s: float) -> list[list[Unit]]:
    """Units (in time order) grouped into segments.

    Boundaries at star spans or unplaced verses are always cut (a *run* ends). Within a run a
    dynamic programme picks the cuts: fewest cuts in gaps shorter than ``min_pause_s`` (made only
    where a stretch without a pause is longer than ``max_s``), then fewest segments shorter than
    ``min_s``, then fewest segments, then the widest gaps. A group of several units never has more
    than ``max_s`` of speech. A group with a pause inside has a clip that fits ``max_s`` and, if it
    holds pieces of a long verse, only pieces of that verse; one without is only cut where it must
    be (its padding is trimmed to fit). A single unit with more than ``max_s`` of speech is a
    group of its own.
    """
    spans = speech_index(units, verses, star)
    groups: list[list[Unit]] = []
    runs: list[list[Unit]] = []
    for unit in units:
        if runs and not _forced_cut(runs[-1][-1], unit, verses, star):
            runs[-1].append(unit)
        else:
            runs.append([unit])
    for run in runs:
        n = len(run)
        gaps = [b.start - a.end for a, b in zip(run, run[1:])]  # gaps[k]: between run[k] and run[k + 1]
        # A clip's left edge depends only on where its speech starts, its right edge on where it ends.
        lefts = [clip_edges(u.start, u.end, spans, pad_s, duration_s)[0] for u in run]
        rights = [clip_edges(u.start, u.end, spans, pad_s, duration_s)[1] for u in run]
        best: list[tuple | None] = [None] * (n + 1)
        best[0] = (0, 0, 0, 0.0)
        back = [0] * (n + 1)
        for j in range(1, n + 1):
            pauses_inside, piece_of, whole_verses = 0, set(), False
            for i in range(j - 1, -1, -1):
                speech = run[j - 1].end - run[i].start
                left, right = lefts[i], rights[j - 1]
                if run[i].parts > 1:
                    piece_of.add(run[i].verse)
                else:
                    whole_verses = True
                if j - i > 1:
                    pauses_inside += gaps[i] >= min_pause_s
                    mixed = bool(piece_of) and (len(piece_of) > 1 or whole_verses)
                    if speech > max_s or (pauses_inside and mixed):
                        break  # and so for every smaller i
                    if pauses_inside and right - left > max_s:
                        continue
                gap = gaps[j - 1] if j < n else 0.0
                tight = int(j < n and gap < min_pause_s)
                short = int(right - left < min_s)
                cost = (best[i][0] + tight, best[i][1] + short, best[i][2] + 1, best[i][3] - gap)
                if best[j] is None or cost < best[j]:
                    best[j], back[j] = cost, i
        cuts, j = [], n
        while j > 0:
            cuts.append((back[j], j))
            j = back[j]
        for i, j in reversed(cuts):
            groups.append(run[i:j])
    return groups


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------

def segment_cer(members: list[Unit], verses: list[AlignedVerse]) -> tuple[float | None, str | None]:
    """CER and greedy text of a segment: whole verses compare their greedy transcripts joined with
    the normalized texts joined; a piece of a verse takes its verse's CER (the transcript is not
    cut by word), weighted by normalized length."""
    indices = list(dict.fromkeys(u.verse for u in members))
    whole = all(u.parts == 1 for u in members)
    if whole and all(verses[i].greedy is not None for i in indices):
        greedy = " ".join(verses[i].greedy for i in indices).strip()
        reference = " ".join(verses[i].normalized for i in indices).strip()
        return round(cer(reference, greedy), 4), greedy
    known = [(verses[i].cer, max(1, len(verses[i].normalized))) for i in indices if verses[i].cer is not None]
    if len(known) < len(indices):
        return None, None
    greedy = " ".join(verses[i].greedy for i in indices) if whole else None
    return round(sum(c * w for c, w in known) / sum(w for _, w in known), 4), greedy


def segment_score(members: list[Unit]) -> float:
    """Duration-weighted mean log-probability per frame."""
    total = sum(u.end - u.start for u in members)
    if total <= 0:
        return round(sum(u.score for u in members) / len(members), 4)
    return round(sum(u.score * (u.end - u.start) for u in members) / total, 4)


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------

def segment_word_times(members: list[Unit], words: dict[int, list[dict]], clip_start: float, clip_end: float
                       ) -> tuple[tuple[float, float], ...] | None:
    """[start, end] of each word of the members' normalized text, in seconds from ``clip_start``
    (rounded to ms, within the clip); None when a member's aligned words are not its words (a whole
    verse's words are all its words, a piece's those within it)."""
    times = []
    for unit in members:
        inside = words.get(unit.verse, []) if unit.parts == 1 else [
            w for w in words.get(unit.verse, []) if w["start"] >= unit.start - 1e-6 and w["end"] <= unit.end + 1e-6]
        if [str(w.get("word", "")) for w in inside] != unit.normalized.split():
            return None
        times += [(round(min(max(w["start"] - clip_start, 0.0), clip_end - clip_start), 3),
                   round(min(max(w["end"] - clip_start, 0.0), clip_end - clip_start), 3)) for w in inside]
    return tuple(times)


def to_sample(seconds: float, rate: int = SAMPLE_RATE) -> int:
    return int(round(seconds * rate))


def plan_segments(aligned: dict, *, duration_s: float, min_s: float = MIN_S, max_s: float = MAX_S,
                  pad_s: float = PAD_S, max_cer: float = MAX_CER, min_pause_s: float = MIN_PAUSE_S,
                  use_normalized: bool = False, rate: int = SAMPLE_RATE,
                  path: str | Path = "<aligned>") -> list[Segment]:
    """All segments of an aligned recording, kept and dropped, in time order.

    Clip edges are whole samples at ``rate`` (``start``/``end`` are sample index / rate), so a
    clip holds exactly ``round(end * rate) - round(start * rate)`` samples.
    """
    verses = parse_verses(aligned, path)
    star = parse_star(aligned)
    words = words_by_verse(aligned, verses)
    units: list[Unit] = []
    unsplittable: dict[int, str] = {}  # verse index -> why a verse over max_s stays whole
    for index, verse in enumerate(verses):
        if verse.aligned:
            verse_units, why = split_verse(verse, index, words.get(index, []), max_s)
            units.extend(verse_units)
            if why is not None:
                unsplittable[index] = why
    units.sort(key=lambda u: (u.start, u.end))
    groups = group_units(units, verses, star, min_s=min_s, max_s=max_s, pad_s=pad_s,
                         min_pause_s=min_pause_s, duration_s=duration_s)
    spans = speech_index(units, verses, star)
    tight = {k for k, (one, two) in enumerate(zip(groups, groups[1:]))
             if not _forced_cut(one[-1], two[0], verses, star) and two[0].start - one[-1].end < min_pause_s}
    max_samples = math.floor(max_s * rate + 1e-6)

    planned: list[tuple[float, Segment]] = []
    for position, members in enumerate(groups):
        speech_start, speech_end = members[0].start, members[-1].end
        speech = speech_end - speech_start
        left, right = clip_edges(speech_start, speech_end, spans, pad_s, duration_s)
        if right - left > max_s and speech <= max_s:
            # Padding alone pushes it over: give each side an equal share of what is left.
            spare = (max_s - speech) / 2
            left, right = max(left, speech_start - spare), min(right, speech_end + spare)
        first, last = to_sample(left, rate), to_sample(right, rate)
        if last - first > max_samples and speech <= max_s:  # rounding to samples added one
            if speech_start - first / rate >= last / rate - speech_end:
                first = last - max_samples
            else:
                last = first + max_samples
        indices = tuple(dict.fromkeys(u.verse for u in members))
        cer, greedy = segment_cer(members, verses)
        text_field = "normalized" if use_normalized else "text"
        segment = Segment(
            index=0, verse_indices=indices, start=first / rate, end=last / rate,
            speech_start=speech_start, speech_end=speech_end,
            text=" ".join(getattr(u, text_field) for u in members),
            normalized=" ".join(u.normalized for u in members),
            greedy=greedy, cer=cer, score=segment_score(members), kept=True,
            partial=tuple(dict.fromkeys(u.verse for u in members if u.parts > 1)),
            flags=(FLAG_TIGHT_CUT,) if tight & {position - 1, position} else (),
            word_times=segment_word_times(members, words, first / rate, last / rate))
        duration = (last - first) / rate
        if speech > max_s:
            segment = replace(segment, kept=False, reason_kind="over-max",
                              reason=f"over max-s: {speech:.2f} s of speech > max-s {max_s:g} s, and "
                                     f"{unsplittable.get(indices[0], 'it cannot be cut')}")
        elif duration < min_s:
            segment = replace(segment, kept=False, reason_kind="too-short",
                              reason=f"too short: {duration:.2f} s < min-s {min_s:g} s, no neighbour "
                                     f"across a pause to merge with")
        elif cer is not None and cer > max_cer:
            segment = replace(segment, kept=False, reason_kind="cer", reason=f"cer {cer:.2f} > {max_cer:g}")
        planned.append((speech_start, segment))

    for index, verse in enumerate(verses):
        if not verse.aligned:
            timed = verse.start is not None and verse.end is not None
            # Sorted where it belongs: at its time, or just after the last verse placed before it.
            sort_time = verse.start if timed else next(
                (verses[k].end for k in range(index - 1, -1, -1) if verses[k].end is not None), 0.0)
            segment = Segment(
                index=0, verse_indices=(index,), start=verse.start if timed else None,
                end=verse.end if timed else None, speech_start=sort_time,
                speech_end=verse.end if timed else sort_time,
                text=verse.normalized if use_normalized else verse.text, normalized=verse.normalized,
                greedy=verse.greedy, cer=verse.cer, score=verse.score, kept=False, reason_kind="unaligned",
                reason=f"unaligned: verse {verse.label} has no {'score' if timed else 'times'}")
            planned.append((sort_time, segment))
    planned.sort(key=lambda item: (item[0], min(item[1].verse_indices)))
    return [replace(segment, index=i) for i, (_, segment) in enumerate(planned)]


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def clip_name(recording: str, segment: Segment, verses: list[AlignedVerse]) -> str:
    first, last = verses[segment.verse_indices[0]].number, verses[segment.verse_indices[-1]].number
    return f"{recording}_{segment.index:04d}_{first}-{last}"


def segment_record(recording: str, segment: Segment, verses: list[AlignedVerse], audio: str | None) -> dict:
    """The JSONL line of a segment."""
    return {
        "id": clip_name(recording, segment, verses),
        "recording": recording,
        "audio": audio,
        "text": segment.text,
        "normalized": segment.normalized,
        "greedy": segment.greedy,
        "verses": [verses[i].number for i in segment.verse_indices],
        "start": segment.start,
        "end": segment.end,
        "duration": None if segment.duration is None else round(segment.duration, 7),
        "cer": segment.cer,
        "score": segment.score,
        "kept": segment.kept,
        "reason": segment.reason,
        "reason_kind": segment.reason_kind,
        "flags": list(segment.flags),
        "partial_verses": [verses[i].number for i in segment.partial],
        "word_times": None if segment.word_times is None else [list(t) for t in segment.word_times],
    }


def open_audio(path: Path, aligned_path: str | Path, duration_s: float | None) -> sf.SoundFile:
    """The recording's 16 kHz mono WAV, opened for seeking; InputError naming it otherwise."""
    if not path.exists():
        raise InputError(path, f"no such file (the audio of {aligned_path})")
    check_input_file(path, (".wav", ".flac"))
    try:
        handle = sf.SoundFile(str(path))
    except sf.LibsndfileError as err:
        raise InputError(path, f"cannot read audio: {err}") from None
    if handle.samplerate != SAMPLE_RATE or handle.channels != 1:
        handle.close()
        raise InputError(path, f"expected a {SAMPLE_RATE} Hz mono WAV, got {handle.samplerate} Hz, "
                               f"{handle.channels} channel(s); convert it first (python -m tala.audio.convert)")
    actual_s = handle.frames / handle.samplerate
    if duration_s is not None and abs(actual_s - duration_s) > DURATION_TOLERANCE_S:
        handle.close()
        raise InputError(path, f"audio is {actual_s:.2f} s but {aligned_path} was aligned on "
                               f"{duration_s:.2f} s of audio (a different recording?)")
    return handle


def write_empty_clips(clips_dir: Path, out_jsonl: Path) -> None:
    """An empty clips folder and segment JSONL: a complete result for a chapter with no clips."""
    with atomic_dir(clips_dir):  # an empty folder in place of any old clips
        pass
    write_text_atomic(out_jsonl, "")


def write_clips(aligned_path: str | Path, out_jsonl: str | Path, clips_dir: str | Path, *,
                audio: str | Path | None = None, root: str | Path | None = None,
                min_s: float = MIN_S, max_s: float = MAX_S, pad_s: float = PAD_S,
                max_cer: float = MAX_CER, min_pause_s: float = MIN_PAUSE_S,
                use_normalized: bool = False) -> list[dict]:
    """Plan the segments of one aligned recording, write its clips and JSONL; return the records."""
    aligned_path, out_jsonl, clips_dir = Path(aligned_path), Path(out_jsonl), Path(clips_dir)
    root = Path(root) if root is not None else clips_dir.parent.parent
    aligned = read_json_object(aligned_path)
    if aligned.get("status") == "rejected":
        # The aligner rejected the chapter's text: no clips, and the problems table says why.
        write_empty_clips(clips_dir, out_jsonl)
        print(f"clips: {aligned_path}: rejected chapter ({aligned.get('reason')}): no clips", file=sys.stderr)
        return []
    verses = parse_verses(aligned, aligned_path)
    recording = str(aligned.get("recording") or aligned_path.stem)
    # The workflow's config already refuses ids that cannot be file names (tala.config); spaces and
    # quotes are fine.
    if not recording.strip() or "/" in recording or "\0" in recording or recording.startswith("."):
        raise InputError(aligned_path, f"recording id {recording!r} is not usable in a file name")
    audio_path = Path(audio) if audio is not None else Path(str(aligned.get("audio") or ""))
    if audio is None and not aligned.get("audio"):
        raise InputError(aligned_path, "no 'audio' path (pass --audio)")

    with open_audio(audio_path, aligned_path, _number(aligned.get("duration_s"))) as handle:
        total_frames = handle.frames
        segments = plan_segments(aligned, duration_s=total_frames / SAMPLE_RATE, min_s=min_s, max_s=max_s,
                                 pad_s=pad_s, max_cer=max_cer, min_pause_s=min_pause_s,
                                 use_normalized=use_normalized, path=aligned_path)
        records = []
        with atomic_dir(clips_dir) as tmp_dir:
            for segment in segments:
                clip_audio = None
                if segment.kept:
                    first, last = to_sample(segment.start), to_sample(segment.end)
                    if last > total_frames:
                        raise InputError(aligned_path, f"segment at {segment.start:.2f}-{segment.end:.2f} s "
                                                       f"runs past the end of {audio_path}")
                    handle.seek(first)
                    samples = handle.read(last - first, dtype="int16")
                    name = clip_name(recording, segment, verses) + ".wav"
                    sf.write(str(tmp_dir / name), samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
                    clip_audio = Path(os.path.relpath(clips_dir / name, root)).as_posix()
                records.append(segment_record(recording, segment, verses, clip_audio))
    write_jsonl_atomic(out_jsonl, records)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.dataset.clips",
        description="Cut an aligned recording into training clips of whole verses (cut in pauses, "
                    "no unread heading inside); write the clips and one JSONL line per segment.")
    parser.add_argument("aligned", help="aligned JSON of one recording (from tala.align.align_transcript)")
    parser.add_argument("out_jsonl", help="JSONL to write: one line per segment, kept and dropped")
    parser.add_argument("clips_dir", help="folder to write the clips into (replaced as a whole)")
    parser.add_argument("--audio", help="the 16 kHz mono WAV (default: the aligned JSON's 'audio')")
    parser.add_argument("--root", help="the JSONL's 'audio' paths are relative to this folder "
                                       "(default: CLIPS_DIR's grandparent, the dataset folder)")
    parser.add_argument("--min-s", type=float, default=MIN_S, help="shortest clip (default: %(default)s)")
    parser.add_argument("--max-s", type=float, default=MAX_S, help="longest clip (default: %(default)s)")
    parser.add_argument("--pad-s", type=float, default=PAD_S,
                        help="silence kept around the speech, at most (default: %(default)s)")
    parser.add_argument("--max-cer", type=float, default=MAX_CER,
                        help="drop segments whose greedy transcript has a higher CER (default: %(default)s)")
    parser.add_argument("--min-pause-s", type=float, default=MIN_PAUSE_S,
                        help="shortest pause a clip is cut in, unless speech without one runs longer than "
                             "--max-s (default: %(default)s)")
    parser.add_argument("--text", choices=("original", "normalized"), default="original",
                        help="orthography of the 'text' field (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.min_s < 0 or args.max_s <= 0 or args.pad_s < 0 or args.min_pause_s < 0 or args.max_cer < 0:
        parser.error("--max-s must be positive; --min-s, --pad-s, --min-pause-s and --max-cer not negative")
    if args.min_s > args.max_s:
        parser.error(f"--min-s ({args.min_s}) is larger than --max-s ({args.max_s})")
    records = write_clips(args.aligned, args.out_jsonl, args.clips_dir, audio=args.audio, root=args.root,
                          min_s=args.min_s, max_s=args.max_s, pad_s=args.pad_s, max_cer=args.max_cer,
                          min_pause_s=args.min_pause_s, use_normalized=args.text == "normalized")
    kept = [r for r in records if r["kept"]]
    print(f"{args.aligned}: {len(kept)} of {len(records)} segments kept, "
          f"{sum(r['duration'] for r in kept):.1f} s in {args.clips_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
