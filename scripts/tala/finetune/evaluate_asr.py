"""Score speech recognizers on a dataset split: greedy transcripts of every clip, WER and CER with jiwer,
per clip and pooled, for several systems side by side (e.g. a model "before" and "after" fine-tuning).

    python -m tala.finetune.evaluate_asr OUT.json OUT.tsv --language L \\
        --split test results/L/dataset/test.jsonl [--split valid results/L/dataset/valid.jsonl] \\
        --system before resources/demo/model smo --system after results/L/models/mms_adapter tvl \\
        [--kind ctc] [--models-dir D] [--device auto] [--dtype auto]

A split is one of the dataset's JSONL files (``audio`` relative to the file, ``text``, and
``normalized``: the text spelled with the model's letters, as the aligner normalized it). The
reference of a clip is its ``normalized`` text (``text`` when a row has none), compared with each
system's greedy transcript after :func:`tala.ctc_text.normalize_for_scoring` (single spaces): the same
normalization for every system, so the numbers compare. ``--kind`` names the model family; ``ctc``
(a ``Wav2Vec2ForCTC`` with an optional MMS language adapter, ``-`` for none) is the one built so far.

Outputs: ``OUT.json`` — language, kind, the systems (model, adapter), and per split the number of
clips and hours and, per system, pooled WER and CER with the edit and reference counts behind them;
``OUT.tsv`` — every clip, worst first (by the last system's CER, then the first's): split, id,
recording, duration, each system's CER and transcript, and the reference. No wall times: two runs
give the same bytes. A clip whose audio cannot be read is one error naming the JSONL line.
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

KINDS = ("ctc",)


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
    try:
        samples, rate = sf.read(str(clip.audio), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as err:
        raise InputError(clip.where, f"cannot read the audio {clip.audio}: {err}") from None
    if rate != SAMPLE_RATE:
        raise InputError(clip.where, f"{clip.audio}: {rate} Hz audio, expected {SAMPLE_RATE} Hz (the dataset's clips)")
    return samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]


class CtcRecognizer:
    """Greedy transcripts of a ``Wav2Vec2ForCTC`` (with its language adapter)."""

    def __init__(self, system: System, models_dir, device: str, dtype: str):
        from tala.asr.transcribe import ctc_vocabulary, load_model

        model, processor, self.resolved, self.adapter, self.device, self.dtype = load_model(
            system.model, system.adapter, models_dir, device, dtype)
        self.model = model
        self.vocabulary = ctc_vocabulary(model, processor.tokenizer, system.model)

    def transcribe(self, samples: np.ndarray) -> str:
        from tala.asr.transcribe import transcribe_samples

        text, _, _ = transcribe_samples(self.model, self.vocabulary, samples, device=self.device, dtype=self.dtype)
        return normalize_for_scoring(text)


def recognizer(kind: str, system: System, models_dir, device: str, dtype: str):
    if kind == "ctc":
        return CtcRecognizer(system, models_dir, device, dtype)
    raise InputError("--kind", f"unknown model kind {kind!r}; built: {', '.join(KINDS)}")


def evaluate(clips: list[Clip], systems: list[System], *, kind: str = "ctc", models_dir=None, device: str = "auto",
             dtype: str = "auto", log=None) -> tuple[dict, dict[str, list[str]]]:
    """Pooled scores per split and system, and each system's transcripts (in clip order)."""
    hypotheses: dict[str, list[str]] = {}
    for system in systems:
        started = time.perf_counter()
        model = recognizer(kind, system, models_dir, device, dtype)
        hypotheses[system.name] = [model.transcribe(read_clip(clip)) for clip in clips]
        if log is not None:
            log(f"evaluate_asr: {system.name} ({system.model}, adapter {system.adapter or '-'}): {len(clips)} clips "
                f"in {time.perf_counter() - started:.1f} s")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.finetune.evaluate_asr", description=__doc__.splitlines()[0])
    parser.add_argument("out_json", type=Path)
    parser.add_argument("out_tsv", type=Path)
    parser.add_argument("--language", required=True)
    parser.add_argument("--split", nargs=2, action="append", metavar=("NAME", "JSONL"), required=True,
                        help="a dataset split to score (repeat for several)")
    parser.add_argument("--system", nargs=3, action="append", metavar=("NAME", "MODEL", "ADAPTER"), required=True,
                        help="a recognizer: a name, its model (hub id or folder) and adapter ('-' for none); repeat")
    parser.add_argument("--kind", choices=KINDS, default="ctc")
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)
    systems = [System(name, model, None if adapter == "-" else adapter) for name, model, adapter in args.system]
    if len({s.name for s in systems}) != len(systems):
        parser.error("--system names must differ")
    clips = [clip for name, path in args.split for clip in read_split(name, path)]
    if not clips:
        raise InputError(args.split[0][1], f"{args.language}: no clips to evaluate in the split(s) given")
    splits, hypotheses = evaluate(clips, systems, kind=args.kind, models_dir=args.models_dir, device=args.device,
                                  dtype=args.dtype, log=lambda message: print(message, file=sys.stderr, flush=True))
    write_text_atomic(args.out_tsv, worst_first_tsv(clips, systems, hypotheses))
    write_json_atomic(args.out_json, {
        "language": args.language, "kind": args.kind, "reference": "normalized",
        "systems": {s.name: {"model": s.model, "adapter": s.adapter} for s in systems},
        "splits": splits, "tool": tala.tool("jiwer", "torch", "transformers"),
    })
    for split, result in splits.items():
        scores = ", ".join(f"{s.name} WER {_pct(result[s.name]['wer'])} CER {_pct(result[s.name]['cer'])}"
                           for s in systems)
        print(f"evaluate_asr: {args.language} {split} ({result['clips']} clips): {scores}", file=sys.stderr)
    return 0


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    sys.exit(run_cli(main))
