"""Learn "motifs": SentencePiece BPE over the acoustic unit sequences, and describe the most frequent ones.

    python -m tala.units.train_bpe CORPUS_JSONL OUT_DIR [--aligned A.json ...] [--vocab-size 500]
                                   [--dedup | --no-dedup] [--k 100] [--top 50] [--seed 0]

CORPUS_JSONL is ``corpus_timestamped.jsonl``: one speech segment a line, in corpus order,
``{"recording", "start", "end", "units": [...], "times": [...], "frames": [...]}`` (``times``: the
start second of each unit; ``frames``: its run length in 20 ms frames). Each unit id ``u`` (0..k-1)
becomes ONE character, ``chr(UNIT_OFFSET + u)`` (CJK Unified Ideographs, U+4E00..U+9FFF, so k is at
most 20,992), and each segment one line of text without spaces; SentencePiece learns BPE merges over
these lines (``model_type=bpe``, identity normalization, no dummy prefix, no whitespace splitting,
``character_coverage=1.0`` so every unit is a piece, no byte fallback, one thread; motifs are at
most 16 units long, SentencePiece's ``max_sentencepiece_length``). The only special piece is
``<unk>`` (id 0): ``<s>`` and ``</s>`` are off, so every other piece is a unit or a motif. Two runs
on the same input give the same bytes.

With ``--dedup`` (the default, as in GSLM) consecutive repeats of a unit are collapsed into one
unit first, its frames summed. A corpus that is already run-length deduplicated (some ``frames``
> 1) is not collapsed again: ``input_deduplicated`` says so in the analysis.

The vocabulary size is adjusted: raised to the number of distinct units + 1 (``<unk>``) if below it,
and, when SentencePiece finds the requested size more than the corpus can give ("Vocabulary size
too high (N). Please set it to a value <= M."), trained once more with M. Each adjustment prints
one line to stderr, e.g. ``bpe: vocab_size 500 is more than these 12,345 units support; using 321``.

Writes into OUT_DIR (each file to a temporary name, renamed when complete, the analysis last):

- ``bpe.model``: the SentencePiece model (load it with
  ``sentencepiece.SentencePieceProcessor(model_file=...)``; encode ``units_to_text(units, dedup)``);
- ``bpe.vocab``: one line per piece, ``<unit ids, space-separated>\\t<score>`` (``<unk>`` as itself);
- ``motif_analysis.json``: ``vocab_size_requested``, ``vocab_size`` (reached), ``dedup``,
  ``input_deduplicated``, ``unit_offset``, ``k``, ``segments``, ``units`` (after dedup), ``frames``
  (20 ms frames, all), ``distinct_units``, ``motifs`` (pieces of >= 2 units in the vocabulary) and
  ``top_motifs``: the ``--top`` multi-unit pieces most often used when the corpus is encoded with the
  model (ties: by unit ids), each with ``id`` (piece id), ``piece`` (its unit ids, space-separated
  as in ``bpe.vocab``), ``length`` (in units), ``count``,
  ``mean_ms`` (mean duration: its units' frames x 20 ms), ``share`` (its frames / all frames),
  ``letters`` (the 3 commonest strings of aligned letters heard under it, with counts: for each
  occurrence the letters whose spans overlap its time span, joined), ``with_letters`` (the share of
  its occurrences that had any letter under them) and ``listen``: ``{"recording", "start", "end"}``
  of the first occurrence whose duration is the motif's median duration (a typical example).

The corpus is read line by line, three times (check and count, train, encode); beyond SentencePiece's
own copy of the training lines, memory holds only per-motif counters (occurrences, frames, letter
strings, and the first occurrence of each duration). The aligned letters (``--aligned``: one
``results/{lang}/aligned/{rec}.json`` per recording, key ``"letters"``: ``[letter, start_s, end_s]``
in time order; files whose ``status`` is not "ok" are ignored) are all loaded up front: they are
small. A recording is named by the file's ``"recording"`` key, else its stem.
"""

from __future__ import annotations

import argparse
import bisect
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import tala
from tala.errors import InputError, run_cli
from tala.fileio import atomic_path, read_json_object, write_json_atomic, write_text_atomic

UNIT_OFFSET = 0x4E00  # unit u <-> chr(UNIT_OFFSET + u): CJK Unified Ideographs
MAX_UNITS = 0x9FFF - UNIT_OFFSET + 1  # 20,992 code points in that block
FRAME_S = 0.02  # one unit frame: 20 ms (wav2vec2 at 50 per second)
SPECIAL_PIECES = 1  # <unk>; <s> and </s> are off
MAX_SENTENCE_BYTES = 1 << 20  # a line of up to ~349,000 units (3 UTF-8 bytes each): ~2 h of frames
VOCAB_SIZE, K, TOP, SEED = 500, 100, 50, 0
LETTER_STRINGS = 3  # the commonest letter strings given per motif

_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")


class Segment(NamedTuple):
    recording: str
    units: list[int]
    times: list[float]
    frames: list[int]


# ---------------------------------------------------------------------------------------------
# Units <-> text
# ---------------------------------------------------------------------------------------------

def collapse(units: list[int], times: list[float], frames: list[int]) -> tuple[list[int], list[float], list[int]]:
    """Consecutive repeats of a unit merged into one: the first one's time, the frames summed."""
    out_units: list[int] = []
    out_times: list[float] = []
    out_frames: list[int] = []
    for unit, time, count in zip(units, times, frames):
        if out_units and out_units[-1] == unit:
            out_frames[-1] += count
        else:
            out_units.append(unit)
            out_times.append(time)
            out_frames.append(count)
    return out_units, out_times, out_frames


def units_to_text(units: Iterable[int], dedup: bool = False) -> str:
    """One character per unit (``chr(UNIT_OFFSET + u)``), consecutive repeats collapsed if ``dedup``."""
    chars = []
    previous = None
    for unit in units:
        if dedup and unit == previous:
            continue
        chars.append(chr(UNIT_OFFSET + unit))
        previous = unit
    return "".join(chars)


def text_to_units(text: str) -> list[int]:
    """The unit ids of a piece or line (the inverse of ``units_to_text``)."""
    return [ord(char) - UNIT_OFFSET for char in text]


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

def iter_segments(path: str | Path, k: int = K) -> Iterator[tuple[int, Segment]]:
    """The segments of a timestamped unit corpus with their line numbers, read line by line;
    InputError naming the file (and the line) when it is missing or a line is malformed. A line
    without ``frames`` has all 1, without ``times`` the times follow from ``start`` and the frames."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as err:
        raise InputError(path, f"not readable: {err}") from None
    with handle:
        number = 0
        while True:
            try:
                line = handle.readline()
            except UnicodeDecodeError as err:
                raise InputError(path, f"line {number + 1}: not UTF-8 ({err.reason})") from None
            if not line:
                return
            number += 1
            if line.strip():
                yield number, _parse_segment(path, number, line, k)


def _parse_segment(path: Path, number: int, line: str, k: int) -> Segment:
    def bad(reason: str) -> InputError:
        return InputError(path, f"line {number}: {reason}")

    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise bad(f"not valid JSON ({err.msg})") from None
    if not isinstance(record, dict):
        raise bad("expected a JSON object")
    units = record.get("units")
    if not isinstance(units, list) or not all(isinstance(u, int) and not isinstance(u, bool) for u in units):
        raise bad("'units' must be a list of integers")
    if any(not 0 <= u < k for u in units):
        raise bad(f"a unit id outside 0..{k - 1} (--k {k})")
    frames = record.get("frames", [1] * len(units))
    if (not isinstance(frames, list) or len(frames) != len(units)
            or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in frames)):
        raise bad("'frames' must be a list of positive integers, one per unit")
    start = record.get("start", 0.0)
    if not isinstance(start, (int, float)) or isinstance(start, bool):
        raise bad("'start' must be a number")
    times = record.get("times")
    if times is None:
        times, t = [], float(start)
        for count in frames:
            times.append(round(t, 6))
            t += count * FRAME_S
    elif (not isinstance(times, list) or len(times) != len(units)
          or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times)):
        raise bad("'times' must be a list of numbers, one per unit")
    recording = record.get("recording", "")
    if not isinstance(recording, str):
        raise bad("'recording' must be a string")
    return Segment(recording, units, [float(t) for t in times], frames)


def read_letters(paths: Iterable[str | Path]) -> dict[str, list[tuple[str, float, float]]]:
    """Each recording's aligned letters ``(letter, start_s, end_s)`` in time order, from
    ``tala.align`` JSONs (key ``"letters"``; a file whose ``status`` is not "ok", or without
    letters, gives none). Named by the ``"recording"`` key, else the file stem."""
    letters: dict[str, list[tuple[str, float, float]]] = {}
    for path in paths:
        path = Path(path)
        data = read_json_object(path)
        if data.get("status", "ok") != "ok":
            continue
        items = data.get("letters")
        if items is None:
            continue
        if not isinstance(items, list):
            raise InputError(path, "'letters' must be a list of [letter, start_s, end_s]")
        spans = []
        for position, item in enumerate(items, 1):
            if (not isinstance(item, (list, tuple)) or len(item) < 3 or not isinstance(item[0], str)
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in item[1:3])):
                raise InputError(path, f"letters item {position}: expected [letter, start_s, end_s]")
            spans.append((item[0], float(item[1]), float(item[2])))
        spans.sort(key=lambda span: (span[1], span[2]))
        recording = data.get("recording") if isinstance(data.get("recording"), str) else path.stem
        letters[recording] = spans
    return letters


class _Letters:
    """The letters of one recording, for overlap queries (spans in time order, non-overlapping)."""

    def __init__(self, spans: list[tuple[str, float, float]]):
        self.spans = spans
        self.ends = [end for _, _, end in spans]

    def under(self, start: float, end: float) -> str:
        """The letters whose spans overlap [start, end), joined."""
        out = []
        for index in range(bisect.bisect_right(self.ends, start), len(self.spans)):
            letter, letter_start, _ = self.spans[index]
            if letter_start >= end:
                break
            out.append(letter)
        return "".join(out)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def _train_once(lines: Iterable[str], vocab_size: int, seed: int) -> bytes:
    import sentencepiece as spm

    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        normalization_rule_name="identity", add_dummy_prefix=False, split_by_whitespace=False,
        character_coverage=1.0, max_sentence_length=MAX_SENTENCE_BYTES, byte_fallback=False,
        bos_id=-1, eos_id=-1, unk_id=0, num_threads=1, minloglevel=2)
    return model.getvalue()


def train(lines: Iterable[str] | Callable[[], Iterable[str]], vocab_size: int, seed: int = SEED,
          units: int | None = None, log=None) -> tuple[bytes, int]:
    """Train a BPE model on ``lines`` (one segment a line, from ``units_to_text``): the model's
    serialized proto and the vocabulary size reached. When SentencePiece says ``vocab_size`` is
    too high, train once more with the most it allows, logging one line (``units``: the corpus's
    unit count, for that line). ``lines`` may be a function returning a fresh iterable (a retry
    reads the lines again); a plain iterable is kept in memory for that."""
    if callable(lines):
        make_lines = lines
    else:
        kept = list(lines)
        make_lines = lambda: kept  # noqa: E731
    try:
        return _train_once(make_lines(), vocab_size, seed), vocab_size
    except RuntimeError as err:
        match = _TOO_HIGH.search(str(err))
        if not match:
            raise
        allowed = int(match.group(2))
    if units is None:
        units = sum(len(line) for line in make_lines())
    print(f"bpe: vocab_size {vocab_size} is more than these {units:,} units support; using {allowed}",
          file=log or sys.stderr)
    return _train_once(make_lines(), allowed, seed), allowed


def vocab_text(model: bytes) -> str:
    """``bpe.vocab``: one line per piece, its unit ids space-separated (special pieces as
    themselves), a tab and its score."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model)
    lines = []
    for index in range(sp.get_piece_size()):
        piece = sp.id_to_piece(index)
        special = sp.is_unknown(index) or sp.is_control(index) or sp.is_unused(index)
        name = piece if special else " ".join(str(u) for u in text_to_units(piece))
        lines.append(f"{name}\t{sp.get_score(index) + 0.0:g}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------

class _Motif:
    __slots__ = ("count", "frames", "histogram", "durations", "letters", "with_letters")

    def __init__(self) -> None:
        self.count = 0
        self.frames = 0
        self.histogram: Counter[int] = Counter()  # frames -> occurrences
        self.durations: dict[int, tuple[str, float, float]] = {}  # frames -> first occurrence
        self.letters: Counter[str] = Counter()
        self.with_letters = 0


def prepared(segments: Iterable[Segment], dedup: bool, input_deduplicated: bool) -> Iterator[Segment]:
    """The segments as the model sees them: collapsed when ``dedup`` and the input is not
    deduplicated already."""
    for segment in segments:
        if dedup and not input_deduplicated:
            yield Segment(segment.recording, *collapse(segment.units, segment.times, segment.frames))
        else:
            yield segment


def analyze(model: bytes, segments: Iterable[Segment], letters: dict[str, list[tuple[str, float, float]]] | None = None,
            top: int = TOP) -> dict:
    """Encode each (prepared) segment with the model and describe the ``top`` most used motifs
    (pieces of >= 2 units): see the module docstring for the fields. Also returns the totals
    ``segments``, ``units``, ``frames`` and ``motifs``."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model)
    letters = letters or {}
    motifs: dict[int, _Motif] = {}
    n_segments = n_units = n_frames = 0
    current, lookup = None, None
    ids: dict[str, int] = {}
    for segment in segments:
        n_segments += 1
        n_units += len(segment.units)
        n_frames += sum(segment.frames)
        if not segment.units:
            continue
        if segment.recording != current:
            current = segment.recording
            spans = letters.get(current)
            lookup = _Letters(spans) if spans else None
        text = units_to_text(segment.units)
        position = 0
        # As surface strings: a run of units unknown to the model is one <unk> of several characters.
        for piece in sp.encode(text, out_type=str):
            first, position = position, position + len(piece)
            if len(piece) < 2:
                continue
            piece_id = ids.get(piece)
            if piece_id is None:
                piece_id = ids[piece] = sp.piece_to_id(piece)
            if sp.is_unknown(piece_id):
                continue
            last = position - 1
            frames = sum(segment.frames[first:position])
            start = segment.times[first]
            end = segment.times[last] + segment.frames[last] * FRAME_S
            motif = motifs.get(piece_id)
            if motif is None:
                motif = motifs[piece_id] = _Motif()
            motif.count += 1
            motif.frames += frames
            motif.histogram[frames] += 1
            if frames not in motif.durations:
                motif.durations[frames] = (segment.recording, round(start, 3), round(end, 3))
            if lookup is not None:
                under = lookup.under(start, end)
                if under:
                    motif.letters[under] += 1
                    motif.with_letters += 1
        if position != len(text):
            raise RuntimeError(f"pieces cover {position} of {len(text)} units")  # identity normalization: never

    pieces = {piece_id: text_to_units(sp.id_to_piece(piece_id)) for piece_id in motifs}
    order = sorted(motifs, key=lambda piece_id: (-motifs[piece_id].count, pieces[piece_id]))
    top_motifs = []
    for piece_id in order[:top]:
        motif = motifs[piece_id]
        top_motifs.append({
            "id": piece_id,
            "piece": " ".join(str(unit) for unit in pieces[piece_id]),
            "length": len(pieces[piece_id]),
            "count": motif.count,
            "mean_ms": round(motif.frames * FRAME_S * 1000 / motif.count, 1),
            "share": round(motif.frames / n_frames, 6) if n_frames else 0.0,
            "letters": [{"letters": string, "count": count}
                        for string, count in sorted(motif.letters.items(), key=lambda kv: (-kv[1], kv[0]))
                        [:LETTER_STRINGS]],
            "with_letters": round(motif.with_letters / motif.count, 4),
            "listen": _typical(motif),
        })
    n_motifs = sum(1 for index in range(sp.get_piece_size())
                   if not (sp.is_unknown(index) or sp.is_control(index)) and len(sp.id_to_piece(index)) >= 2)
    return {"segments": n_segments, "units": n_units, "frames": n_frames, "motifs": n_motifs,
            "top_motifs": top_motifs}


def _typical(motif: _Motif) -> dict:
    """The first occurrence whose duration is the motif's median duration (the lower median)."""
    middle = (motif.count - 1) // 2
    seen = 0
    for frames in sorted(motif.histogram):
        seen += motif.histogram[frames]
        if seen > middle:
            break
    recording, start, end = motif.durations[frames]
    return {"recording": recording, "start": start, "end": end}


# ---------------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------------

def scan(path: str | Path, k: int = K) -> dict:
    """One pass over the corpus: ``segments``, ``distinct_units``, ``units`` (as read),
    ``collapsed_units`` (runs of repeats counted once) and ``input_deduplicated`` (some frames > 1);
    InputError naming the file when it is malformed or holds no units."""
    segments = units = collapsed = 0
    distinct: set[int] = set()
    deduplicated = False
    for _, segment in iter_segments(path, k):
        segments += 1
        units += len(segment.units)
        collapsed += sum(1 for i, u in enumerate(segment.units) if i == 0 or segment.units[i - 1] != u)
        distinct.update(segment.units)
        deduplicated = deduplicated or any(f > 1 for f in segment.frames)
    if segments == 0:
        raise InputError(path, "no segments: the corpus is empty")
    if units == 0:
        raise InputError(path, f"no units in any of its {segments} segments")
    return {"segments": segments, "distinct_units": len(distinct), "units": units, "collapsed_units": collapsed,
            "input_deduplicated": deduplicated}


def train_bpe(corpus: str | Path, out_dir: str | Path, aligned: Iterable[str | Path] = (),
              vocab_size: int = VOCAB_SIZE, dedup: bool = True, k: int = K, top: int = TOP,
              seed: int = SEED, log=None) -> dict:
    """The whole step: train on ``corpus``, write ``bpe.model``, ``bpe.vocab`` and
    ``motif_analysis.json`` into ``out_dir``; returns the analysis."""
    if not 1 <= k <= MAX_UNITS:
        raise ValueError(f"k must be in 1..{MAX_UNITS} (one CJK code point per unit)")
    log = log or sys.stderr
    letters = read_letters(aligned)
    counts = scan(corpus, k)
    input_deduplicated = counts["input_deduplicated"]
    collapsing = dedup and not input_deduplicated
    n_units = counts["collapsed_units"] if collapsing else counts["units"]

    requested = vocab_size
    least = counts["distinct_units"] + SPECIAL_PIECES
    if vocab_size < least:
        print(f"bpe: vocab_size {vocab_size} is less than the {counts['distinct_units']:,} distinct units "
              f"+ {SPECIAL_PIECES} special piece; using {least}", file=log)
        vocab_size = least

    def lines() -> Iterator[str]:
        for _, segment in iter_segments(corpus, k):
            if segment.units:
                yield units_to_text(segment.units, collapsing)

    model, reached = train(lines, vocab_size, seed=seed, units=n_units, log=log)
    segments = prepared((segment for _, segment in iter_segments(corpus, k)), dedup, input_deduplicated)
    found = analyze(model, segments, letters, top=top)
    analysis = {
        "vocab_size_requested": requested,
        "vocab_size": reached,
        "dedup": dedup,
        "input_deduplicated": input_deduplicated,
        "unit_offset": UNIT_OFFSET,
        "k": k,
        "segments": found["segments"],
        "units": found["units"],
        "frames": found["frames"],
        "distinct_units": counts["distinct_units"],
        "motifs": found["motifs"],
        "top": top,
        "top_motifs": found["top_motifs"],
        "tool": tala.tool("sentencepiece"),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "bpe.model") as tmp:
        tmp.write_bytes(model)
    write_text_atomic(out_dir / "bpe.vocab", vocab_text(model))
    write_json_atomic(out_dir / "motif_analysis.json", analysis)
    return analysis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.units.train_bpe",
        description="Learn motifs: SentencePiece BPE over acoustic unit sequences (one unit = one CJK "
                    "character); write bpe.model, bpe.vocab and motif_analysis.json (the most used motifs, "
                    "their durations, the letters heard under them and a place to listen).")
    parser.add_argument("corpus", metavar="CORPUS_JSONL", help="corpus_timestamped.jsonl: one segment of units a line")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for bpe.model, bpe.vocab, motif_analysis.json")
    parser.add_argument("--aligned", nargs="*", default=[], metavar="JSON",
                        help='aligned chapters (key "letters": [letter, start_s, end_s]), one per recording')
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE,
                        help="pieces wanted, adjusted to what the corpus supports (default: %(default)s)")
    parser.add_argument("--dedup", action=argparse.BooleanOptionalAction, default=True,
                        help="collapse consecutive repeated units first, unless the corpus is already "
                             "deduplicated (default: %(default)s)")
    parser.add_argument("--k", type=int, default=K, help=f"number of unit ids, at most {MAX_UNITS} (default: %(default)s)")
    parser.add_argument("--kmeans", default=None, metavar="JSON",
                        help="fit_kmeans' kmeans.json: k is read from it (instead of --k)")
    parser.add_argument("--top", type=int, default=TOP, help="motifs described (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=SEED, help="SentencePiece's random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.kmeans is not None:
        try:
            args.k = int(read_json_object(args.kmeans)["k"])
        except (KeyError, TypeError, ValueError):
            raise InputError(args.kmeans, "no number 'k' in it: not a fit_kmeans kmeans.json") from None
    if not 1 <= args.k <= MAX_UNITS:
        parser.error(f"--k must be in 1..{MAX_UNITS}")
    if args.vocab_size < 1 or args.top < 0:
        parser.error("--vocab-size must be positive and --top not negative")
    analysis = train_bpe(args.corpus, args.out_dir, args.aligned, vocab_size=args.vocab_size, dedup=args.dedup,
                         k=args.k, top=args.top, seed=args.seed)
    print(f"bpe: {analysis['vocab_size']} pieces ({analysis['motifs']} motifs) over {analysis['segments']:,} segments, "
          f"{analysis['units']:,} units")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
