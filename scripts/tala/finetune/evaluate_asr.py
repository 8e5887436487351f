"""Score speech recognizers on a dataset split: transcripts of every clip, WER and CER with jiwer,
per clip and pooled, for several systems side by side (e.g. a model "before" and "after" fine-tuning).

    python -m tala.finetune.evaluate_asr OUT.json OUT.tsv --language L \\
        --split test results/L/dataset/test.jsonl [--split valid results/L/dataset/valid.jsonl] \\
        --system before resources/demo/model smo --system after results/L/models/mms_adapter tvl \\
        [--chapters test results/L/dataset/summary.json --wavs W.wav ... --texts T.json ... \
         --aligned A.json ...] [--html OUT.html] [--kind ctc] [--models-dir D] [--device auto] [--dtype auto] \
        [--num-beams 1] [--part-seconds S]

A split is one of the dataset's JSONL files (``audio`` relative to the file, ``text``, and
``normalized``: the text spelled with the model's letters, as the aligner normalized it). The
reference of a clip is its ``normalized`` text (``text`` when a row has none), compared with each
system's transcript after :func:`tala.ctc_text.normalize_for_scoring` (single spaces): the same
normalization for every system, so the numbers compare. ``--kind`` names the model family: ``ctc``
(a ``Wav2Vec2ForCTC`` with an optional MMS language adapter, ``-`` for none), ``speechllm`` (a
folder of :mod:`tala.models.speechllm`: Whisper encoder, projector, decoder with its LoRA adapter;
adapter ``-``; clips only) or ``moonshine`` (a Moonshine model, or a LoRA recognizer of
:mod:`tala.finetune.moonshine`; adapter ``-``; clips only).

``--pace TRAIN.jsonl`` (speechllm, moonshine): those two write their transcript with a decoder that
can write its end token before the audio ends. The median letters a second of the given clips (the
training split) is the language's pace; a part whose transcript holds fewer than half as many is
cut at its quietest point and each half read again (and checked the same way); the halves'
transcripts count when they hold more. A part whose transcript loops (a few letters or words written
three times or more in a row: :func:`looped_letters`) is read again in halves the same way; the
halves count when they loop less and are not themselves too short for the pace. Each system's score
says how many clips were read so.

``--num-beams N`` (speechllm, moonshine): 1 (the default) writes each transcript greedily; more
searches N beams (transformers' ``generate``, its length-normalized score), every system alike, so
that before and after compare. A CTC model reads greedily.

``--part-seconds S`` (speechllm, moonshine): a clip longer than S seconds is read in parts of at most
S seconds, each cut at the quietest point of its middle third (:func:`quiet_parts`), every system
alike; the parts' transcripts joined are the clip's. A decoder pre-trained on utterances shorter than
the dataset's clips can drift or stop early on a long one (the demo's speech-LLM stand-in, trained on
~10 s utterances, reads the demo's 15-20 s train and valid clips with CER 15.7 % (Samoan) and 17.9 %
(Portuguese), in parts of at most 8 s 12.4 and 14.4 %). Default: whole clips (up to the model's window).

``--chapters SPLIT SUMMARY`` also scores whole chapters, as the workflow transcribes them: each
recording of that split (from the dataset's ``summary.json``) is transcribed whole, in the
transcription step's windows, and the words between the start of its first aligned verse and the
end of its last (the spoken heading before them is not part of the official text) are compared
with the chapter's official text, normalized (``text/<rec>.json``). ``--wavs``, ``--texts`` and
``--aligned`` list the language's files (matched by file stem); only the split's are read.

With two systems or more, each split also has the ``change`` from the first to the last: the pooled
CER and WER differences (last minus first) with their 95 % intervals and how often the last reads
better, by a paired bootstrap over the clips (:func:`paired_bootstrap`; Bisani & Ney 2004). A
held-out split of a chapter or two has a few clips, and a difference of a few edits in one of them
is not a finding: the interval says which differences are.

A speech-LLM's or Moonshine's tokenizer without byte fallback cannot write a letter it lacks
(:mod:`tala.finetune.tokens`): a system's score on a split whose references hold such letters has
``unwritable`` (their count, the ``floor_cer`` that no reading of the clips can go below, and the
letters), said on the page and in the log.

Outputs: ``OUT.json`` — language, kind, the systems (model, adapter), and per split the number of
clips and hours and, per system, pooled WER and CER with the edit and reference counts behind them;
``OUT.tsv`` — every clip, worst first (by the last system's CER, then the first's): split, id,
recording, duration, each system's CER and transcript, and the reference; ``OUT.html`` (optional) —
the before -> after table and the worst clips, for the report. No wall times: two runs give the
same bytes. A clip whose audio cannot be read is one error naming the JSONL line.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tala.device import ensure_mps_fallback

ensure_mps_fallback()  # before torch

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

import tala  # noqa: E402
from tala.audio_io import SAMPLE_RATE, frame_levels_db  # noqa: E402
from tala.ctc_text import cer, error_rates, normalize_for_scoring  # noqa: E402
from tala.errors import InputError, run_cli  # noqa: E402
from tala.fileio import write_json_atomic, write_text_atomic  # noqa: E402
from tala.finetune.tokens import listed_characters, unwritable_characters  # noqa: E402

KINDS = ("ctc", "speechllm", "moonshine")
CLIPS_ONLY = ("speechllm", "moonshine")  # no word times: clips, never whole chapters


@dataclass(frozen=True)
class Clip:
    split: str
    id: str
    recording: str
    audio: Path
    duration: float
    reference: str
    where: str


@dataclass(frozen=True)
class System:
    name: str
    model: str
    adapter: str | None


def read_split(name: str, path: str | Path) -> list[Clip]:
    """The clips of one dataset JSONL; InputError naming the file and line for anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such dataset split")
    clips = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except ValueError as err:
                raise InputError(where, f"not JSON: {err}") from None
            if not isinstance(row, dict) or not isinstance(row.get("audio"), str):
                raise InputError(where, 'expected an object with "audio" (a path relative to the file)')
            reference = row.get("normalized", row.get("text"))
            if not isinstance(reference, str):
                raise InputError(where, 'no "normalized" or "text" string')
            clips.append(Clip(name, str(row.get("id", f"{name}:{number}")), str(row.get("recording", "")),
                              path.parent / row["audio"], float(row.get("duration") or 0.0),
                              normalize_for_scoring(reference), where))
    return clips


def read_clip(clip: Clip) -> np.ndarray:
    return read_wav(clip.audio, where=clip.where)


class CtcRecognizer:
    """Greedy transcripts of a ``Wav2Vec2ForCTC`` (with its language adapter)."""

    def __init__(self, system: System, models_dir, device: str, dtype: str):
        from tala.asr.transcribe import ctc_vocabulary, load_model

        model, processor, self.resolved, self.adapter, self.device, self.dtype = load_model(
            system.model, system.adapter, models_dir, device, dtype)
        self.model = model
        self.vocabulary = ctc_vocabulary(model, processor.tokenizer, system.model)

    def transcribe(self, samples: np.ndarray) -> str:
        return normalize_for_scoring(" ".join(word for word, _, _ in self.transcribe_words(samples)))

    def transcribe_words(self, samples: np.ndarray) -> list[tuple[str, float, float]]:
        """Words with their start and end seconds (a long recording in the transcription step's windows)."""
        from tala.asr.transcribe import transcribe_samples

        _, words, _ = transcribe_samples(self.model, self.vocabulary, samples, device=self.device, dtype=self.dtype)
        return [(w.word, w.start, w.end) for w in words]


@dataclass(frozen=True)
class Pace:
    """How fast the language is read: letters (spaces left out) a second, the median over the
    clips of ``source`` (the training split). A part of a clip whose transcript holds fewer than
    :data:`SHORT_FRACTION` of that, or loops, is read again in two halves (:func:`read_checked`);
    without a pace every part is read once."""

    letters_per_second: float
    source: str


# A sequence-to-sequence decoder (speech-LLM, Moonshine) can write its end token before the audio
# ends: the demo's speech-LLM read 18 of a 19.7 s clip's 60 words and stopped, and read all of them
# in two halves. A CTC model cannot stop early; its clips are read once.
SHORT_FRACTION = 0.5
# A part shorter than this is not cut again (it is cut in its middle third: halves of >= 2 s).
SHORTEST_REREAD_S = 6.0
# ... or loop to its token budget: the demo's LoRA'd speech-LLM ended a 15 s clip with "loigagagaga..."
# (13 x "ga"), the Moonshine stand-in wrote "ombrar ombrar ombrar". Whisper re-decodes a window whose
# text compresses too well (its compression-ratio check); here a unit of letters written at least
# LOOP_REPEATS times in a row, with LOOP_LETTERS or more letters after its first writing, marks a
# loop, and the part is read again in halves (a shorter input loops less). Real text repeats too
# ("holy, holy, holy"): its halves repeat it as well, loop no less, and are not taken.
LOOP_REPEATS = 3
LOOP_LETTERS = 4
_LOOP = re.compile(r"(.{1,40}?)\1{%d,}" % (LOOP_REPEATS - 1), re.DOTALL)


def reading_pace(clips: list[Clip], source: str) -> Pace | None:
    """The median letters a second of the clips with a duration and a reference; None when none has."""
    return pace_of([(clip.reference, clip.duration) for clip in clips], source)


def pace_of(texts_and_seconds, source: str) -> Pace | None:
    """The median letters a second of (text normalized for scoring, seconds) pairs with both; None
    when none has. The trainers' validation (``reread``) and ``--pace`` both take it."""
    rates = [_letters(text) / seconds for text, seconds in texts_and_seconds if seconds > 0 and text]
    return Pace(round(float(np.median(rates)), 3), source) if rates else None


def train_pace(examples) -> Pace | None:
    """The pace of a trainer's train split (examples with ``text`` and ``duration``), for its
    validation (``reread``): the one ``--pace train.jsonl`` gives the evaluation."""
    return pace_of([(normalize_for_scoring(e.text), e.duration) for e in examples], "the train split")


def quietest_cut(samples: np.ndarray) -> int:
    """The sample at the centre of the quietest 200 ms (the segmenter's cut window) within the
    middle third of ``samples``; of windows within 1 dB of the quietest, the one nearest the middle."""
    from tala.audio.segment import CUT_WINDOW_S, quietest_near

    hop = SAMPLE_RATE // 100
    third = len(samples) // 3
    half_window = int(CUT_WINDOW_S * SAMPLE_RATE) // 2
    levels = frame_levels_db(samples[third:len(samples) - third], SAMPLE_RATE, frame_s=CUT_WINDOW_S,
                             hop_s=hop / SAMPLE_RATE)  # fmt: skip
    if len(levels) == 0:
        return len(samples) // 2
    return third + quietest_near(levels, (len(samples) // 2 - third - half_window) / hop) * hop + half_window


def _letters(text: str) -> int:
    return len(text.replace(" ", ""))


def looped_letters(text: str) -> int:
    """Letters (spaces left out) a transcript wrote in loops: in each run where a unit of 1-40
    characters is written :data:`LOOP_REPEATS` times or more in a row, those after its first
    writing ("loigagagaga": 6, "le le le": 4); runs with fewer than :data:`LOOP_LETTERS` count 0
    ("e e e")."""
    total = 0
    for match in _LOOP.finditer(text + " "):  # a word written again ends with its space
        extra = _letters(match.group(0)) - _letters(match.group(1))
        total += extra if extra >= LOOP_LETTERS else 0
    return total


def read_checked(samples: np.ndarray, transcribe_part, pace: Pace | None, first: str | None = None
                 ) -> tuple[str, str, int]:
    """``transcribe_part(samples)`` (or its reading ``first``, when given) checked for an early end
    and for a loop: (the transcript, the first reading, how many parts were read again). A part of
    at least :data:`SHORTEST_REREAD_S` whose first reading is too short for the pace, or loops
    (:func:`looped_letters`), is cut at its quietest point and each half read (and checked) the same
    way. The halves' transcripts replace a short first reading when they hold more letters, a
    looping one when they loop less and are not too short for the pace themselves."""
    first = transcribe_part(samples) if first is None else first
    seconds = len(samples) / SAMPLE_RATE
    if pace is None or seconds < SHORTEST_REREAD_S:
        return first, first, 0
    least = SHORT_FRACTION * pace.letters_per_second * seconds
    short, looped = _letters(first) < least, looped_letters(first)
    if not short and not looped:
        return first, first, 0
    cut = quietest_cut(samples)
    (a, _, n_a), (b, _, n_b) = (read_checked(half, transcribe_part, pace) for half in (samples[:cut], samples[cut:]))
    halves = f"{a} {b}".strip()
    if short:
        better = _letters(halves) > _letters(first)
    else:
        better = looped_letters(halves) < looped and _letters(halves) >= least
    return (halves, first, 1 + n_a + n_b) if better else (first, first, 0)


def quiet_parts(samples: np.ndarray, part_seconds: float | None) -> list[np.ndarray]:
    """``samples`` whole when no longer than ``part_seconds`` (or without it); else cut at its
    :func:`quietest_cut` and each side again, until every part is (parts of a third or more of what
    they were cut from: a long pause is a cut, a word seldom is)."""
    if not part_seconds or len(samples) <= part_seconds * SAMPLE_RATE:
        return [samples]
    cut = quietest_cut(samples)
    return quiet_parts(samples[:cut], part_seconds) + quiet_parts(samples[cut:], part_seconds)


def read_in_parts(samples: np.ndarray, transcribe_part, pace: Pace | None, part_seconds: float | None,
                  first: str | None = None) -> tuple[str, str, int]:
    """:func:`read_checked` of each of the clip's :func:`quiet_parts`, joined: (the transcript, the
    parts read once, how many parts were read again). ``first`` (a reading of the whole clip) is
    used only when the clip is one part."""
    parts = quiet_parts(samples, part_seconds)
    if len(parts) == 1:
        return read_checked(samples, transcribe_part, pace, first)
    read = [read_checked(part, transcribe_part, pace) for part in parts]
    return " ".join(r[0] for r in read), " ".join(r[1] for r in read), sum(r[2] for r in read)


class ClipRecognizer:
    """A recognizer of clips that writes a transcript (no word times): a clip longer than
    ``window`` samples is transcribed in equal parts that each fit it (said on stderr), each of those
    in parts of at most ``part_seconds`` when set (:func:`quiet_parts`), and with a :class:`Pace`
    each part is checked for an early end and a loop (:func:`read_checked`). ``rereads`` counts the
    parts read again, ``read_once`` is the last clip's transcript without them. Subclasses set
    ``window``, ``name``, ``what`` and ``transcribe_part``."""

    window: int
    name: str
    what: str
    pace: Pace | None = None
    part_seconds: float | None = None
    rereads: int = 0
    read_once: str = ""

    def transcribe_part(self, piece: np.ndarray) -> str:
        raise NotImplementedError

    def transcribe(self, samples: np.ndarray) -> str:
        firsts = []

        def read_part(piece: np.ndarray) -> str:
            text, first, rereads = read_in_parts(piece, self.transcribe_part, self.pace, self.part_seconds)
            firsts.append(first)
            self.rereads += rereads
            return text

        text = transcribe_in_parts(samples, self.window, self.name, self.what, read_part)
        self.read_once = normalize_for_scoring(" ".join(firsts))
        return text

    def transcribe_words(self, samples: np.ndarray) -> list[tuple[str, float, float]]:
        raise InputError("--chapters", f"{self.name}: this kind scores clips only (it gives no word times)")


class SpeechLLMRecognizer(ClipRecognizer):
    """Transcripts (greedy, or a beam search of ``num_beams``) of a speech-LLM recognizer (a folder
    :func:`tala.models.speechllm.load_speechllm` reads: plain transformers + peft); clips longer
    than the encoder's window (Whisper: 30 s) in parts."""

    what = "the encoder's window"

    def __init__(self, system: System, models_dir, device: str, dtype: str, pace: Pace | None = None,
                 num_beams: int = 1, part_seconds: float | None = None):
        from tala.device import pick_device
        from tala.models.speechllm import SpeechLLMError, encoder_window_samples, feature_extractor_for, load_speechllm

        if system.adapter is not None:
            raise InputError("--system", f"{system.name}: a speechllm folder carries its own adapter; give '-'")
        self.device = pick_device(device)
        try:
            self.model, self.tokenizer, _ = load_speechllm(Path(system.model), device=str(self.device),
                                                           models_dir=models_dir)  # fmt: skip
        except SpeechLLMError as err:
            raise InputError("--system", f"{system.name}: {err}") from None
        self.features = feature_extractor_for(self.model.encoder.config)
        self.window = encoder_window_samples(self.model.encoder.config)
        self.name = system.name
        self.pace = pace
        self.num_beams = num_beams
        self.part_seconds = part_seconds

    def transcribe_part(self, piece: np.ndarray) -> str:
        from tala.models.speechllm import read_clip

        return read_clip(self.model, self.tokenizer, self.features, piece, self.device, num_beams=self.num_beams)


def transcribe_in_parts(samples: np.ndarray, window: int, name: str, what: str, transcribe_part) -> str:
    """A clip longer than ``window`` samples in equal parts that each fit it (said on stderr), the
    parts' transcripts joined; normalized for scoring."""
    parts = max(1, -(-len(samples) // window))
    if parts > 1:
        print(f"evaluate_asr: {name}: a {len(samples) / SAMPLE_RATE:.1f} s clip is longer than {what}"
              f" ({window // SAMPLE_RATE} s): transcribed in {parts} parts", file=sys.stderr)
    size = -(-len(samples) // parts)
    return normalize_for_scoring(" ".join(transcribe_part(samples[start:start + size])
                                          for start in range(0, len(samples), size)))


class MoonshineRecognizer(ClipRecognizer):
    """Transcripts (greedy, or a beam search of ``num_beams``) of Moonshine: a whole model (hub id
    or folder) or a LoRA recognizer of :mod:`tala.finetune.moonshine` (plain transformers + peft);
    clips longer than the 30 s Moonshine takes in parts."""

    what = "Moonshine takes"

    def __init__(self, system: System, models_dir, device: str, dtype: str, pace: Pace | None = None,
                 num_beams: int = 1, part_seconds: float | None = None):
        from tala.device import pick_device
        from tala.models.moonshine import MoonshineError, load_moonshine_lora

        if system.adapter is not None:
            raise InputError("--system", f"{system.name}: a moonshine folder carries its own adapter; give '-'")
        self.device = pick_device(device)
        try:
            self.model, self.features, self.tokenizer, config = load_moonshine_lora(
                system.model, device=str(self.device), models_dir=models_dir)  # fmt: skip
        except MoonshineError as err:
            raise InputError("--system", f"{system.name}: {err}") from None
        self.window = int(config.max_clip_s * SAMPLE_RATE)
        self.name = system.name
        self.pace = pace
        self.num_beams = num_beams
        self.part_seconds = part_seconds

    def transcribe_part(self, piece: np.ndarray) -> str:
        from tala.models.moonshine import read_clip

        return read_clip(self.model, self.features, self.tokenizer, piece, self.device, self.num_beams)


@dataclass(frozen=True)
class Chapter:
    split: str
    recording: str
    wav: Path
    reference: str
    start: float  # the first aligned verse's start, seconds
    end: float  # the last aligned verse's end


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(path, f"unreadable JSON: {err}") from None


def read_chapters(split: str, summary: Path, wavs: list[Path], texts: list[Path], aligned: list[Path]) -> list[Chapter]:
    """The recordings of ``split`` (from the dataset's summary.json) with their WAV, official
    text and aligned verse span; a recording whose alignment was rejected is left out."""
    info = _read_json(summary)
    recordings = ((info.get("splits") or {}).get(split) or {}).get("recordings")
    if recordings is None:
        raise InputError(summary, f"no split {split!r} with recordings")
    by_stem = {kind: {Path(p).stem: Path(p) for p in paths}
               for kind, paths in (("wav", wavs), ("text", texts), ("aligned", aligned))}  # fmt: skip
    chapters = []
    for rec in recordings:
        missing = [kind for kind, files in by_stem.items() if rec not in files]
        if missing:
            raise InputError(summary, f"recording {rec} of split {split}: no {' or '.join(missing)} file given")
        verses = [v for v in _read_json(by_stem["aligned"][rec]).get("verses") or []
                  if v.get("start") is not None and v.get("end") is not None]  # fmt: skip
        if not verses:
            continue
        text = _read_json(by_stem["text"][rec])
        reference = " ".join(v.get("normalized") or "" for v in text.get("verses") or [])
        chapters.append(Chapter(split, rec, by_stem["wav"][rec], normalize_for_scoring(reference),
                                min(v["start"] for v in verses), max(v["end"] for v in verses)))  # fmt: skip
    return chapters


def read_wav(path: Path, where: str | None = None) -> np.ndarray:
    """A 16 kHz WAV as mono float32; errors name ``where`` (a JSONL line) when given, else the file."""
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as err:
        raise InputError(where or path, f"cannot read the audio {path}: {err}") from None
    if rate != SAMPLE_RATE:
        raise InputError(where or path, f"{path}: {rate} Hz audio, expected {SAMPLE_RATE} Hz")
    return samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]


def chapter_hypothesis(words: list[tuple[str, float, float]], start: float, end: float) -> str:
    """The words whose middle lies in [start, end] (a word cut by the span's edge counts where most of it is)."""
    return normalize_for_scoring(" ".join(w for w, a, b in words if start <= (a + b) / 2 <= end))


def recognizer(kind: str, system: System, models_dir, device: str, dtype: str, pace: Pace | None = None,
               num_beams: int = 1, part_seconds: float | None = None):
    """The recognizer of ``kind``; ``pace`` (the clip kinds only) checks each part for an early end
    and a loop; ``num_beams`` (the clip kinds only: CTC reads greedily) > 1 decodes by beam search;
    ``part_seconds`` (the clip kinds only) reads a longer clip in parts (:func:`quiet_parts`)."""
    if kind == "ctc":
        return CtcRecognizer(system, models_dir, device, dtype)
    if kind == "speechllm":
        return SpeechLLMRecognizer(system, models_dir, device, dtype, pace, num_beams, part_seconds)
    if kind == "moonshine":
        return MoonshineRecognizer(system, models_dir, device, dtype, pace, num_beams, part_seconds)
    raise InputError("--kind", f"unknown model kind {kind!r}; built: {', '.join(KINDS)}")


def evaluate(clips: list[Clip], systems: list[System], *, kind: str = "ctc", models_dir=None, device: str = "auto",
             dtype: str = "auto", log=None, chapters: list[Chapter] = (),
             pace: Pace | None = None, num_beams: int = 1,
             part_seconds: float | None = None) -> tuple[dict, dict[str, list[str]]]:
    """Pooled scores per split and system (and ``"chapters"`` when given), and each system's
    transcripts (in clip order). With a ``pace`` (speechllm, moonshine) each system's score also
    says how many clips had a part read again (``reread``) and its WER and CER had each clip been
    read once (``read_once``)."""
    pace = pace if kind in CLIPS_ONLY else None
    hypotheses: dict[str, list[str]] = {}
    once: dict[str, list[str]] = {}  # with a pace: each clip read once, as if without it
    reread: dict[str, list[bool]] = {}
    chapter_hyps: dict[str, list[str]] = {}
    unwritable: dict[str, set[str]] = {}  # per system: the reference letters its tokenizer cannot write
    for system in systems:
        started = time.perf_counter()
        model = recognizer(kind, system, models_dir, device, dtype, pace, num_beams, part_seconds)
        if getattr(model, "tokenizer", None) is not None:
            unwritable[system.name] = set(unwritable_characters(model.tokenizer, (c.reference for c in clips))[0])
        hypotheses[system.name], once[system.name], reread[system.name] = [], [], []
        for clip in clips:
            parts_before = getattr(model, "rereads", 0)
            hypotheses[system.name].append(model.transcribe(read_clip(clip)))
            once[system.name].append(getattr(model, "read_once", hypotheses[system.name][-1]))
            reread[system.name].append(getattr(model, "rereads", 0) > parts_before)
        chapter_hyps[system.name] = [chapter_hypothesis(model.transcribe_words(read_wav(c.wav)), c.start, c.end)
                                     for c in chapters]  # fmt: skip
        if log is not None:
            again = f", {sum(reread[system.name])} read again in parts (too short for {pace.letters_per_second:g} " \
                    "letters a second, or looping)" if pace else ""
            log(f"evaluate_asr: {system.name} ({system.model}, adapter {system.adapter or '-'}): {len(clips)} clips"
                f"{again}, {len(chapters)} chapters in {time.perf_counter() - started:.1f} s")
        del model
    splits = {}
    for split in dict.fromkeys(clip.split for clip in clips):
        index = [i for i, clip in enumerate(clips) if clip.split == split]
        refs = [clips[i].reference for i in index]
        splits[split] = {"clips": len(index), "hours": round(sum(clips[i].duration for i in index) / 3600, 4)}
        for system in systems:
            rates = error_rates(refs, [hypotheses[system.name][i] for i in index])
            splits[split][system.name] = {key: round(value, 4) if isinstance(value, float) else value
                                          for key, value in rates.items()}
            if floor := cer_floor(refs, unwritable.get(system.name), rates["ref_chars"]):
                splits[split][system.name]["unwritable"] = floor
            if pace:
                plain = error_rates(refs, [once[system.name][i] for i in index])
                splits[split][system.name]["reread"] = sum(reread[system.name][i] for i in index)
                splits[split][system.name]["read_once"] = {key: round(plain[key], 4) for key in ("wer", "cer")}
        if len(systems) > 1:
            first, last = systems[0].name, systems[-1].name
            change = paired_bootstrap(refs, [hypotheses[first][i] for i in index],
                                      [hypotheses[last][i] for i in index])  # fmt: skip
            if change is not None:
                splits[split]["change"] = {"from": first, "to": last, **change}
    if chapters:
        refs = [c.reference for c in chapters]
        entry = {"split": chapters[0].split, "recordings": [c.recording for c in chapters],
                 "seconds": round(sum(c.end - c.start for c in chapters), 2)}  # fmt: skip
        for system in systems:
            rates = error_rates(refs, chapter_hyps[system.name])
            entry[system.name] = {key: round(value, 4) if isinstance(value, float) else value
                                  for key, value in rates.items()}
            entry[system.name]["per_recording"] = {
                c.recording: round(cer(c.reference, hyp), 4) for c, hyp in zip(chapters, chapter_hyps[system.name])}
        splits["chapters"] = entry
    return splits, hypotheses


def cer_floor(refs: list[str], unwritable: set[str] | None, ref_chars: int) -> dict | None:
    """The references' letters a system cannot write (``unwritable``), each at least one edit: their
    count, the CER no reading of these clips can go below (of ``ref_chars``), and the letters."""
    letters = Counter(ch for ref in refs for ch in normalize_for_scoring(ref) if ch in (unwritable or ()))
    if not letters or not ref_chars:
        return None
    return {"letters": sum(letters.values()), "floor_cer": round(sum(letters.values()) / ref_chars, 4),
            "characters": dict(sorted(letters.items(), key=lambda kv: (-kv[1], kv[0])))}


BOOTSTRAP_DRAWS = 2000


def paired_bootstrap(refs: list[str], first: list[str], last: list[str], draws: int = BOOTSTRAP_DRAWS,
                     seed: int = 0) -> dict | None:
    """How the pooled CER and WER change from the ``first`` system's transcripts to the ``last``'s
    on these clips, and how sure that is: the clips drawn with replacement ``draws`` times (the
    same draws for both systems: a paired bootstrap, Bisani & Ney 2004, "Bootstrap estimates for
    confidence intervals in ASR performance evaluation"), each draw's pooled difference; the 95 %
    interval of those (``cer_95``, ``wer_95``) and the share of draws in which the last system made
    fewer edits (``last_better_cer``, ``last_better_wer``; ties count half). Seeded: two runs give
    the same numbers. None with fewer than two clips that have a reference: one clip drawn again
    and again says nothing of chance."""
    kept = [i for i, r in enumerate(refs) if normalize_for_scoring(r)]
    if len(kept) < 2:
        return None
    scored = [[error_rates([refs[i]], [hyp[i]]) for i in kept] for hyp in (first, last)]
    counts = np.array([[[r["char_edits"], r["word_edits"]] for r in clips] for clips in scored])  # system, clip, unit
    sizes = np.array([[r["ref_chars"], r["ref_words"]] for r in scored[0]])  # (clip, unit)
    rng = np.random.default_rng(seed)
    edits, refs_drawn = np.zeros((2, draws, 2), dtype=np.int64), np.zeros((draws, 2), dtype=np.int64)
    for lo in range(0, draws, 64):  # 64 draws at a time: memory of 64 x clips, however many clips
        drawn = rng.integers(0, len(kept), size=(min(64, draws - lo), len(kept)))
        edits[:, lo:lo + len(drawn)] = counts[:, drawn].sum(axis=2)
        refs_drawn[lo:lo + len(drawn)] = sizes[drawn].sum(axis=1)
    out = {"clips": len(kept), "draws": draws}
    for k, unit in enumerate(("cer", "wer")):
        change = (counts[1, :, k].sum() - counts[0, :, k].sum()) / max(int(sizes[:, k].sum()), 1)
        differences = (edits[1, :, k] - edits[0, :, k]) / np.maximum(refs_drawn[:, k], 1)
        low, high = np.percentile(differences, [2.5, 97.5])
        better = float(np.mean((edits[1, :, k] < edits[0, :, k]) + 0.5 * (edits[1, :, k] == edits[0, :, k])))
        out |= {unit: round(float(change), 4), f"{unit}_95": [round(float(low), 4), round(float(high), 4)],
                f"last_better_{unit}": round(better, 3)}
    return out


def worst_first_tsv(clips: list[Clip], systems: list[System], hypotheses: dict[str, list[str]]) -> str:
    names = [s.name for s in systems]
    scores = {name: [cer(clip.reference, hyp) if clip.reference else 0.0
                     for clip, hyp in zip(clips, hypotheses[name])] for name in names}
    order = sorted(range(len(clips)), key=lambda i: (-scores[names[-1]][i], -scores[names[0]][i], clips[i].split,
                                                       clips[i].id))
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["split", "id", "recording", "duration", *(f"cer_{n}" for n in names), "reference",
                     *(f"hypothesis_{n}" for n in names)])
    for i in order:
        clip = clips[i]
        writer.writerow([clip.split, clip.id, clip.recording, f"{clip.duration:.2f}",
                         *(f"{scores[n][i]:.4f}" for n in names), clip.reference, *(hypotheses[n][i] for n in names)])
    return out.getvalue()


def training_section(system: System) -> str:
    """The learning curves of the system's model folder (its training_log.jsonl), as a section of
    the page; '' for a model that is not a folder with a training log (a hub id, a start)."""
    from html import escape

    from tala.report.curves import curves_svg, read_log

    log = Path(system.model) / "training_log.jsonl"
    svg = curves_svg(read_log(log)) if log.is_file() else ""
    if not svg:
        return ""
    return (f"<h2>Training of {escape(system.name)}</h2><p>From <code>{escape(str(log))}</code>: the training loss "
            "and the validation clips' loss and error rates by optimizer step (several phases end to end, a dotted "
            f"line where each begins); dashed: the step whose weights were kept.</p>{svg}")  # fmt: skip


def report_html(language: str, kind: str, systems: list[System], splits: dict, tsv: str, worst: int = 10,
                note: str = "", pace: Pace | None = None, num_beams: int = 1,
                part_seconds: float | None = None) -> str:
    """The before -> after table (WER and CER per split, and whole chapters), the worst clips, and
    the learning curves of the last system (the fine-tuned one) where its folder has them."""
    from html import escape

    names = [s.name for s in systems]
    reread = ""
    if pace:
        counts = ", ".join(f"{escape(n)} {sum(r[n].get('reread', 0) for r in splits.values() if n in r)}"
                           for n in names)  # fmt: skip
        once = "; ".join(f"{escape(split)}: " + ", ".join(f"{escape(n)} {_pct(r[n]['read_once']['cer'])}"
                                                          for n in names)
                         for split, r in splits.items() if all("read_once" in r.get(n, {}) for n in names))  # fmt: skip
        reread = (f"<p>A part transcribed with fewer than {SHORT_FRACTION:g} × the {pace.letters_per_second:g} "
                  f"letters a second of {escape(pace.source)} (an early end token), or that wrote a unit of "
                  f"letters {LOOP_REPEATS} times or more in a row (a loop), was read again in two halves cut "
                  f"at its quietest point; clips read so: {counts}. CER had every clip been read once: {once}.</p>")
    head = "".join(f"<th>WER {escape(n)}</th><th>CER {escape(n)}</th>" for n in names)
    rows = []
    for split, result in splits.items():
        count = result.get("clips", len(result.get("recordings", [])))
        label = f"{split} ({count} " + ("chapter" if split == "chapters" else "clip") + "s" * (count != 1)
        label += ", aligned span)" if split == "chapters" else ")"
        cells = "".join(f"<td>{_pct(result[n]['wer'])}</td><td>{_pct(result[n]['cer'])}</td>" for n in names)
        change = ""
        if len(names) > 1:
            ratio = f"× {result[names[-1]]['cer'] / result[names[0]]['cer']:.2f}" if result[names[0]]["cer"] else "–"
            sure = result.get("change")
            if sure:
                low, high = (100 * v for v in sure["cer_95"])
                ratio += (f"; {100 * sure['cer']:+.1f} points, 95 % interval [{low:+.1f}, {high:+.1f}] over "
                          f"{sure['clips']} clips; {escape(names[-1])} better in {100 * sure['last_better_cer']:.0f} % "
                          "of resamples")  # fmt: skip
            change = f"<td>{ratio}</td>"
        rows.append(f"<tr><td>{escape(label)}</td>{cells}{change}</tr>")
    systems_list = "".join(f"<li><b>{escape(s.name)}</b>: {escape(s.model)}, adapter {escape(s.adapter or '-')}</li>"
                           for s in systems)  # fmt: skip
    floors = "".join(f"<p>{escape(n)} cannot write {f['letters']} letters of the {escape(split)} references "
                     f"({escape(listed_characters(f['characters']))}: its tokenizer has no token for them): its CER "
                     f"there cannot go below {_pct(f['floor_cer'])}.</p>"
                     for split, r in splits.items() for n in names if (f := r.get(n, {}).get("unwritable")))
    decoding = "Greedy decoding" if num_beams == 1 else f"Beam search of {num_beams} (every system alike)"
    chapters = (" Chapters: each test recording transcribed whole, the words within its aligned verses against"
                " the official text." if "chapters" in splits else "")  # fmt: skip
    if part_seconds:
        decoding += (f"; a clip longer than {part_seconds:g} s read in parts of at most {part_seconds:g} s,"
                     " each cut at the quietest point of its middle third")
    lines = tsv.splitlines()
    header = lines[0].split("\t") if lines else []
    clip_rows = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in line.split("\t")) + "</tr>"
                        for line in lines[1:worst + 1])  # fmt: skip
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(language)}: ASR before and after fine-tuning</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #bbb;padding:.25em .5em;text-align:left}}th{{background:#eee}}</style></head><body>
<h1>{escape(language)}: speech recognition before and after fine-tuning ({escape(kind)})</h1>
<ul>{systems_list}</ul>
{f"<p><b>{escape(note)}</b></p>" if note else ""}
<table><tr><th>held out</th>{head}{"<th>CER after / before; the change</th>" if len(names) > 1 else ""}</tr>{"".join(rows)}</table>
<p>{decoding}, WER and CER with jiwer on the dataset's normalized text.{chapters} The change's
interval: the clips drawn with replacement {BOOTSTRAP_DRAWS} times, the same draws for every system
(a paired bootstrap); an interval that holds 0 is a difference these clips cannot tell from chance.</p>
{reread}
{floors}
{training_section(systems[-1]) if systems else ""}
<h2>Worst clips</h2>
<table><tr>{"".join(f"<th>{escape(h)}</th>" for h in header)}</tr>{clip_rows}</table>
</body></html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.finetune.evaluate_asr", description=__doc__.splitlines()[0])
    parser.add_argument("out_json", type=Path)
    parser.add_argument("out_tsv", type=Path)
    parser.add_argument("--language", required=True)
    parser.add_argument("--split", nargs=2, action="append", metavar=("NAME", "JSONL"), required=True,
                        help="a dataset split to score (repeat for several)")
    parser.add_argument("--system", nargs=3, action="append", metavar=("NAME", "MODEL", "ADAPTER"), required=True,
                        help="a recognizer: a name, its model (hub id or folder) and adapter ('-' for none); repeat")
    parser.add_argument("--chapters", nargs=2, metavar=("SPLIT", "SUMMARY"),
                        help="also score the whole chapters of this split (the dataset's summary.json)")
    parser.add_argument("--wavs", nargs="*", type=Path, default=[], help="the language's 16 kHz WAVs (with --chapters)")
    parser.add_argument("--texts", nargs="*", type=Path, default=[], help="its text/<rec>.json (with --chapters)")
    parser.add_argument("--aligned", nargs="*", type=Path, default=[], help="its aligned/<rec>.json (with --chapters)")
    parser.add_argument("--pace", type=Path, metavar="JSONL",
                        help="speechllm, moonshine: the clips (the training split) whose median letters a second "
                             "tell how fast the language is read; a part transcribed with fewer than half as many "
                             "is read again in two halves, cut at its quietest point (an early end token), and so "
                             "is a part that loops (writes the same letters 3 times or more in a row). "
                             "Without it every part is read once")
    parser.add_argument("--html", type=Path, help="also write the before -> after table as HTML")
    parser.add_argument("--kind", choices=KINDS, default="ctc")
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto",
                        help="ctc: the inference dtype (tala.device.pick_dtype; auto: float16 on CUDA); speechllm and"
                             " moonshine always read in float32")
    parser.add_argument("--num-beams", type=int, default=1,
                        help="speechllm, moonshine: 1 reads greedily, more by beam search (every system alike)")
    parser.add_argument("--part-seconds", type=float, metavar="S",
                        help="speechllm, moonshine: a clip longer than S seconds is read in parts of at most S"
                             " seconds, cut at quiet points (every system alike); default: whole clips")
    parser.add_argument("--no-progress", action="store_true",
                        help="no Hugging Face progress bars while models load (for a log)")
    args = parser.parse_args(argv)
    if args.no_progress:
        from tala.training import quiet_libraries

        quiet_libraries()
    if args.num_beams < 1:
        parser.error(f"--num-beams must be >= 1, not {args.num_beams}")
    if args.num_beams > 1 and args.kind not in CLIPS_ONLY:
        parser.error(f"--num-beams: a {args.kind} model reads greedily (speechllm and moonshine search beams)")
    if args.part_seconds is not None and not args.part_seconds > 0:
        parser.error(f"--part-seconds must be > 0, not {args.part_seconds:g}")
    if args.part_seconds is not None and args.kind not in CLIPS_ONLY:
        parser.error(f"--part-seconds: a {args.kind} model reads whole clips (speechllm and moonshine read parts)")
    systems = [System(name, model, None if adapter == "-" else adapter) for name, model, adapter in args.system]
    if len({s.name for s in systems}) != len(systems):
        parser.error("--system names must differ")
    clips = [clip for name, path in args.split for clip in read_split(name, path)]
    chapters = read_chapters(args.chapters[0], Path(args.chapters[1]), args.wavs, args.texts, args.aligned) \
        if args.chapters else []
    pace = None
    if args.pace and args.kind in CLIPS_ONLY:
        pace = reading_pace(read_split("pace", args.pace), str(args.pace))
        if pace is None:
            print(f"evaluate_asr: {args.pace}: no clip with a duration and a text to set the pace; every part is"
                  " read once", file=sys.stderr)
    if not clips and not chapters:
        # A language whose chapters all went to training (too few usable ones): nothing is held
        # out. Said in the outputs and the log; not an error that would stop the language's run.
        message = (f"{args.language}: nothing to evaluate: the split(s) given have no clips"
                   f"{' and the ' + args.chapters[0] + ' split no chapter' if args.chapters else ''}")
        print(f"evaluate_asr: {message}", file=sys.stderr)
        write_text_atomic(args.out_tsv, worst_first_tsv([], systems, {s.name: [] for s in systems}))
        if args.html:
            write_text_atomic(args.html, report_html(args.language, args.kind, systems, {}, "", note=message))
        write_json_atomic(args.out_json, {
            "language": args.language, "kind": args.kind, "reference": "normalized",
            "systems": {s.name: {"model": s.model, "adapter": s.adapter} for s in systems},
            "splits": {}, "note": message, "tool": tala.tool("jiwer", "torch", "transformers"),
        })  # fmt: skip
        return 0
    splits, hypotheses = evaluate(clips, systems, kind=args.kind, models_dir=args.models_dir, device=args.device,
                                  dtype=args.dtype, log=lambda message: print(message, file=sys.stderr, flush=True),
                                  chapters=chapters, pace=pace, num_beams=args.num_beams,
                                  part_seconds=args.part_seconds)  # fmt: skip
    tsv = worst_first_tsv(clips, systems, hypotheses)
    write_text_atomic(args.out_tsv, tsv)
    if args.html:
        write_text_atomic(args.html, report_html(args.language, args.kind, systems, splits, tsv, pace=pace,
                                                 num_beams=args.num_beams, part_seconds=args.part_seconds))
    write_json_atomic(args.out_json, {
        "language": args.language, "kind": args.kind, "reference": "normalized",
        "systems": {s.name: {"model": s.model, "adapter": s.adapter} for s in systems},
        "splits": splits,
        **({"num_beams": args.num_beams, "part_seconds": args.part_seconds} if args.kind in CLIPS_ONLY else {}),
        **({"pace": {"letters_per_second": pace.letters_per_second, "from": pace.source,
                     "short_fraction": SHORT_FRACTION, "shortest_reread_s": SHORTEST_REREAD_S}} if pace else {}),
        "tool": tala.tool("jiwer", "torch", "transformers", *(("peft",) if args.kind in CLIPS_ONLY else ())),
    })
    for split, result in splits.items():
        scores = ", ".join(f"{s.name} WER {_pct(result[s.name]['wer'])} CER {_pct(result[s.name]['cer'])}"
                           for s in systems)
        for s in systems:
            if found := result.get(s.name, {}).get("unwritable"):
                print(f"evaluate_asr: {args.language} {split}: {s.name} ({s.model}) cannot write {found['letters']} "
                      f"letters of the references ({listed_characters(found['characters'])}): its CER cannot go below "
                      f"{_pct(found['floor_cer'])}", file=sys.stderr)  # fmt: skip
        if change := result.get("change"):
            low, high = (100 * v for v in change["cer_95"])
            scores += f"; CER {100 * change['cer']:+.1f} points, 95 % interval [{low:+.1f}, {high:+.1f}]"
        print(f"evaluate_asr: {args.language} {split}: {scores}", file=sys.stderr)
    return 0


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    sys.exit(run_cli(main))
