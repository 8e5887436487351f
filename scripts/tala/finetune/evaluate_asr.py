"""Score speech recognizers on a dataset split: greedy transcripts of every clip, WER and CER with jiwer,
per clip and pooled, for several systems side by side (e.g. a model "before" and "after" fine-tuning).

    python -m tala.finetune.evaluate_asr OUT.json OUT.tsv --language L \\
        --split test results/L/dataset/test.jsonl [--split valid results/L/dataset/valid.jsonl] \\
        --system before resources/demo/model smo --system after results/L/models/mms_adapter tvl \\
        [--chapters test results/L/dataset/summary.json --wavs W.wav ... --texts T.json ... \
         --aligned A.json ...] [--html OUT.html] [--kind ctc] [--models-dir D] [--device auto] [--dtype auto]

A split is one of the dataset's JSONL files (``audio`` relative to the file, ``text``, and
``normalized``: the text spelled with the model's letters, as the aligner normalized it). The
reference of a clip is its ``normalized`` text (``text`` when a row has none), compared with each
system's greedy transcript after :func:`tala.ctc_text.normalize_for_scoring` (single spaces): the same
normalization for every system, so the numbers compare. ``--kind`` names the model family: ``ctc``
(a ``Wav2Vec2ForCTC`` with an optional MMS language adapter, ``-`` for none), ``speechllm`` (a
folder of :mod:`tala.models.speechllm`: Whisper encoder, projector, decoder with its LoRA adapter;
adapter ``-``; clips only) or ``moonshine`` (a Moonshine model, or a LoRA recognizer of
:mod:`tala.finetune.moonshine`; adapter ``-``; clips only).

``--chapters SPLIT SUMMARY`` also scores whole chapters, as the workflow transcribes them: each
recording of that split (from the dataset's ``summary.json``) is transcribed whole, in the
transcription step's windows, and the words between the start of its first aligned verse and the
end of its last (the spoken heading before them is not part of the official text) are compared
with the chapter's official text, normalized (``text/<rec>.json``). ``--wavs``, ``--texts`` and
``--aligned`` list the language's files (matched by file stem); only the split's are read.

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
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tala.device import ensure_mps_fallback

ensure_mps_fallback()  # before torch

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

import tala  # noqa: E402
from tala.audio_io import SAMPLE_RATE  # noqa: E402
from tala.ctc_text import cer, error_rates, normalize_for_scoring  # noqa: E402
from tala.errors import InputError, run_cli  # noqa: E402
from tala.fileio import write_json_atomic, write_text_atomic  # noqa: E402

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


class SpeechLLMRecognizer:
    """Greedy transcripts of a speech-LLM recognizer (a folder :func:`tala.models.speechllm.load_speechllm`
    reads: plain transformers + peft). A clip longer than the encoder's window (Whisper: 30 s) is
    transcribed in equal parts that each fit it, joined, and said on stderr. It scores clips only:
    whole chapters (``--chapters``) need word times, which it does not give."""

    def __init__(self, system: System, models_dir, device: str, dtype: str):
        from tala.device import pick_device
        from tala.models.speechllm import encoder_window_samples, feature_extractor_for, load_speechllm

        if system.adapter is not None:
            raise InputError("--system", f"{system.name}: a speechllm folder carries its own adapter; give '-'")
        self.device = pick_device(device)
        self.model, self.tokenizer, _ = load_speechllm(Path(system.model), device=str(self.device),
                                                       models_dir=models_dir)
        self.features = feature_extractor_for(self.model.encoder.config)
        self.window = encoder_window_samples(self.model.encoder.config)
        self.limit = int(getattr(self.model.decoder.config, "max_position_embeddings", 4096))
        self.name = system.name

    def transcribe_part(self, piece: np.ndarray) -> str:
        from tala.models.speechllm import generation_budget

        features = self.features([piece], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        frames = self.model.encode(features.to(self.device), [len(piece)])
        budget = generation_budget(len(piece), frames[0].shape[0], self.limit)
        ids = self.model.generate(frames, max_new_tokens=budget)[0]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def transcribe(self, samples: np.ndarray) -> str:
        return transcribe_in_parts(samples, self.window, self.name, "the encoder's window", self.transcribe_part)

    def transcribe_words(self, samples: np.ndarray) -> list[tuple[str, float, float]]:
        raise InputError("--chapters", "the speechllm kind scores clips only (it gives no word times)")


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


class MoonshineRecognizer:
    """Greedy transcripts of Moonshine: a whole model (hub id or folder) or a LoRA recognizer of
    :mod:`tala.finetune.moonshine` (plain transformers + peft). A clip longer than the 30 s
    Moonshine takes is transcribed in equal parts (said on stderr); clips only, like the speech-LLM."""

    def __init__(self, system: System, models_dir, device: str, dtype: str):
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

    def transcribe_part(self, piece: np.ndarray) -> str:
        from tala.models.moonshine import generate_ids

        ids = generate_ids(self.model, self.features, [piece], self.device)[0]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def transcribe(self, samples: np.ndarray) -> str:
        return transcribe_in_parts(samples, self.window, self.name, "Moonshine takes", self.transcribe_part)

    def transcribe_words(self, samples: np.ndarray) -> list[tuple[str, float, float]]:
        raise InputError("--chapters", "the moonshine kind scores clips only (it gives no word times)")


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


def recognizer(kind: str, system: System, models_dir, device: str, dtype: str):
    if kind == "ctc":
        return CtcRecognizer(system, models_dir, device, dtype)
    if kind == "speechllm":
        return SpeechLLMRecognizer(system, models_dir, device, dtype)
    if kind == "moonshine":
        return MoonshineRecognizer(system, models_dir, device, dtype)
    raise InputError("--kind", f"unknown model kind {kind!r}; built: {', '.join(KINDS)}")


def evaluate(clips: list[Clip], systems: list[System], *, kind: str = "ctc", models_dir=None, device: str = "auto",
             dtype: str = "auto", log=None, chapters: list[Chapter] = ()) -> tuple[dict, dict[str, list[str]]]:
    """Pooled scores per split and system (and ``"chapters"`` when given), and each system's
    transcripts (in clip order)."""
    hypotheses: dict[str, list[str]] = {}
    chapter_hyps: dict[str, list[str]] = {}
    for system in systems:
        started = time.perf_counter()
        model = recognizer(kind, system, models_dir, device, dtype)
        hypotheses[system.name] = [model.transcribe(read_clip(clip)) for clip in clips]
        chapter_hyps[system.name] = [chapter_hypothesis(model.transcribe_words(read_wav(c.wav)), c.start, c.end)
                                     for c in chapters]  # fmt: skip
        if log is not None:
            log(f"evaluate_asr: {system.name} ({system.model}, adapter {system.adapter or '-'}): {len(clips)} clips, "
                f"{len(chapters)} chapters in {time.perf_counter() - started:.1f} s")
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


def report_html(language: str, kind: str, systems: list[System], splits: dict, tsv: str, worst: int = 10,
                note: str = "") -> str:
    """The before -> after table (WER and CER per split, and whole chapters) and the worst clips."""
    from html import escape

    names = [s.name for s in systems]
    head = "".join(f"<th>WER {escape(n)}</th><th>CER {escape(n)}</th>" for n in names)
    rows = []
    for split, result in splits.items():
        label = f"{split} ({result.get('clips', len(result.get('recordings', [])))} "
        label += "chapters, aligned span)" if split == "chapters" else "clips)"
        cells = "".join(f"<td>{_pct(result[n]['wer'])}</td><td>{_pct(result[n]['cer'])}</td>" for n in names)
        change = ""
        if len(names) > 1 and result[names[0]]["cer"]:
            change = f"<td>× {result[names[-1]]['cer'] / result[names[0]]['cer']:.2f}</td>"
        rows.append(f"<tr><td>{escape(label)}</td>{cells}{change}</tr>")
    systems_list = "".join(f"<li><b>{escape(s.name)}</b>: {escape(s.model)}, adapter {escape(s.adapter or '-')}</li>"
                           for s in systems)  # fmt: skip
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
<table><tr><th>held out</th>{head}{"<th>CER after / before</th>" if len(names) > 1 else ""}</tr>{"".join(rows)}</table>
<p>Greedy decoding, WER and CER with jiwer on the dataset's normalized text. Chapters: each test recording
transcribed whole, the words within its aligned verses against the official text.</p>
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
    parser.add_argument("--html", type=Path, help="also write the before -> after table as HTML")
    parser.add_argument("--kind", choices=KINDS, default="ctc")
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)
    systems = [System(name, model, None if adapter == "-" else adapter) for name, model, adapter in args.system]
    if len({s.name for s in systems}) != len(systems):
        parser.error("--system names must differ")
    clips = [clip for name, path in args.split for clip in read_split(name, path)]
    chapters = read_chapters(args.chapters[0], Path(args.chapters[1]), args.wavs, args.texts, args.aligned) \
        if args.chapters else []
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
                                  chapters=chapters)  # fmt: skip
    tsv = worst_first_tsv(clips, systems, hypotheses)
    write_text_atomic(args.out_tsv, tsv)
    if args.html:
        write_text_atomic(args.html, report_html(args.language, args.kind, systems, splits, tsv))
    write_json_atomic(args.out_json, {
        "language": args.language, "kind": args.kind, "reference": "normalized",
        "systems": {s.name: {"model": s.model, "adapter": s.adapter} for s in systems},
        "splits": splits,
        "tool": tala.tool("jiwer", "torch", "transformers", *(("peft",) if args.kind in CLIPS_ONLY else ())),
    })
    for split, result in splits.items():
        scores = ", ".join(f"{s.name} WER {_pct(result[s.name]['wer'])} CER {_pct(result[s.name]['cer'])}"
                           for s in systems)
        print(f"evaluate_asr: {args.language} {split}: {scores}", file=sys.stderr)
    return 0


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    sys.exit(run_cli(main))
