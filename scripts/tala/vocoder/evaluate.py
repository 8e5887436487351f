"""Test a trained vocoder on held-out speech (step ``test_vocoder``; the seed's vocoder test and the
speech-resynthesis paper's: is the resynthesis still understood?).

    python -m tala.vocoder.evaluate VOCODER_DIR OUT_DIR --units U.json... --pitch P.npy... \\
        --wavs W.wav... --test test.jsonl --model M --lang L [--report vocoder.html]

Clips: the speech segments of the dataset's test recordings (never heard in training), in order,
each cut to ``--max-clip-s``, at most ``--max-clips``. Every clip is resynthesized from its units
and its own pitch by four systems:

* ``vocoder``: the trained generator;
* ``untrained``: the same architecture with the training seed's initial weights (step 0);
* ``unit_mean_gl``: each unit's mean log-mel over the other recordings (no training), inverted by
  Griffin-Lim: the baseline a vocoder must beat;
* ``true_mel_gl``: the original's own log-mel through the same Griffin-Lim: the yardstick.

Per clip and system (:mod:`tala.vocoder.metrics`): MCD after DTW, F0 RMSE / agreement within 20 % /
voicing disagreement of Praat's pitch of the resynthesis against the pitch given, length ratio,
SNR (the seed's), and the CER of the workflow's recognizer (greedy, :mod:`tala.finetune.evaluate_asr`)
on the resynthesis against its transcript of the original. Pooled per system.

Outputs: ``OUT_DIR/metrics.json``, ``OUT_DIR/pairs/`` (original and each system's WAV for the first
clips), and with ``--report`` a self-contained page (tables, loss curves, audio side by side).
No wall times in the outputs (two runs write the same bytes): the synthesis speed is in the log
and in ``tests/bench/bench_vocoder.py``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import tala
from tala.ctc_text import error_rates
from tala.errors import InputError, run_cli
from tala.fileio import atomic_dir, write_json_atomic, write_text_atomic
from tala.models.vocoder import GeneratorV2
from tala.vocoder.data import Corpus, load_recording, split_recordings
from tala.vocoder.mel import MEL, log_mel, mel_to_audio
from tala.vocoder.metrics import f0_metrics, length_ratio, mcd, pool, snr_db
from tala.vocoder.pitch import FRAME_S, track_f0
from tala.vocoder.synthesize import SAMPLE_RATE, Vocoder

SYSTEMS = ("vocoder", "untrained", "unit_mean_gl", "true_mel_gl")
NOTES = {
    "vocoder": "the trained generator, from the clip's units and pitch",
    "untrained": "the same generator with its initial weights (step 0 of training)",
    "unit_mean_gl": "each unit's mean log-mel over the other recordings + Griffin-Lim: no training, the baseline to beat",
    "true_mel_gl": "the original's own log-mel + the same Griffin-Lim: the yardstick",
}
METRICS = ("mcd_db", "f0_rmse_hz", "f0_within_20pct", "voicing_disagreement", "length_ratio", "snr_db")
PAIRS = 6  # clips written to pairs/ and played on the page
MEL_PER_UNIT = round(FRAME_S * SAMPLE_RATE / MEL.hop_length)  # 2 mel frames per 20 ms unit frame


@dataclass(frozen=True)
class Clip:
    name: str  # <recording>_<segment>
    units: np.ndarray
    pitch: np.ndarray
    audio: np.ndarray


def held_out_clips(corpus: Corpus, max_clips: int, max_clip_s: float) -> list[Clip]:
    """The corpus's segments in order, each at most ``max_clip_s`` long, at most ``max_clips``."""
    clips = []
    frames = max(1, int(round(max_clip_s / FRAME_S)))
    for index, segment in enumerate(corpus.segments):
        if len(clips) >= max_clips:
            break
        if segment.frames == 0:
            continue
        units, pitch, audio = corpus.window(index, 0, min(frames, segment.frames))
        name = f"{corpus.recordings[segment.recording].name}_{index:03d}"
        clips.append(Clip(name, units, pitch, audio))
    return clips


def unit_mean_mels(corpus: Corpus, k: int) -> np.ndarray:
    """``k x n_mels`` mean log-mel of each unit over the corpus's segments (mel frame ``m`` belongs
    to unit frame ``m // 2``), accumulated one segment at a time; a unit never seen gets the mean
    of all frames."""
    sums = np.zeros((k, MEL.n_mels))
    counts = np.zeros(k)
    for index, segment in enumerate(corpus.segments):
        units, _, audio = corpus.window(index, 0, segment.frames)
        mel = log_mel(audio)[:, : len(units) * MEL_PER_UNIT]
        owners = units[np.arange(mel.shape[1]) // MEL_PER_UNIT]
        np.add.at(sums, owners, mel.T)
        np.add.at(counts, owners, 1)
    overall = sums.sum(0) / max(1.0, counts.sum())
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], overall[None]).astype(np.float32)


def resynthesize(clip: Clip, vocoder: Vocoder, untrained: GeneratorV2, means: np.ndarray) -> dict[str, np.ndarray]:
    length = len(clip.audio)
    c = untrained.config
    from tala.models.vocoder import pitch_to_bins

    bins = pitch_to_bins(torch.from_numpy(clip.pitch)[None], c.n_pitch_bins, c.f0_min, c.f0_max)
    with torch.no_grad():
        step0 = untrained(torch.from_numpy(clip.units)[None], bins, generator=torch.Generator().manual_seed(0))
    unit_mel = np.repeat(means[clip.units], MEL_PER_UNIT, axis=0).T
    unit_mel = np.concatenate([unit_mel, unit_mel[:, -1:]], axis=1)  # the centred STFT's last frame
    return {
        "vocoder": vocoder.synthesize(clip.units, clip.pitch),
        "untrained": step0[0, 0].numpy(),
        "unit_mean_gl": mel_to_audio(unit_mel, length=length),
        "true_mel_gl": mel_to_audio(log_mel(clip.audio), length=length),
    }


def clip_metrics(clip: Clip, audio: np.ndarray) -> dict:
    heard = track_f0(audio)
    return {**mcd(clip.audio, audio), **f0_metrics(clip.pitch, heard), "snr_db": snr_db(clip.audio, audio),
            "length_ratio": length_ratio(clip.audio, audio)}


def _finite(value):
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    return value


def _wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def loss_curves_svg(log: list[dict]) -> str:
    """The training and validation mel losses (and D's) as an inline SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for key, label in (("mel_loss", "train mel loss"), ("eval_mel_loss", "validation mel loss"), ("d_loss", "D loss")):
        points = [(r["step"], r[key]) for r in log if key in r]
        if points:
            ax.plot(*zip(*points), label=label, marker="o" if key == "eval_mel_loss" else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def curve_shape(log: list[dict]) -> str:
    evals = [(r["step"], r["eval_mel_loss"]) for r in log if "eval_mel_loss" in r]
    if len(evals) < 2:
        return "too few validations to describe the curve"
    (s0, first), (s1, last) = evals[0], evals[-1]
    best_step, best = min(evals, key=lambda e: e[1])
    halves = [v for _, v in evals[len(evals) // 2 :]]
    trend = "still falling" if halves[-1] < min(halves[:-1], default=math.inf) else "flattening"
    return (f"validation mel loss {first:.2f} at step {s0} → {last:.2f} at step {s1} (best {best:.2f} at step "
            f"{best_step}); {trend} at the end")


def report_html(language: str, metrics: dict, log: list[dict], clips: list[Clip], audio: dict[str, list]) -> str:
    systems = metrics["systems"]
    head = "".join(f"<th>{escape(h)}</th>" for h in ("system", "MCD (dB)", "F0 RMSE (Hz)", "F0 within 20 %",
                                                       "voicing disagreement", "length ratio", "SNR (dB)", "CER"))
    rows = []
    for name in SYSTEMS:
        values = systems[name]
        cells = [f"{values[k]:.3f}" if isinstance(values.get(k), float) else "–" for k in METRICS + ("cer",)]
        rows.append(f"<tr><td><b>{escape(name)}</b><br><small>{escape(NOTES[name])}</small></td>"
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")  # fmt: skip
    players = []
    for i, clip in enumerate(clips[:PAIRS]):
        cells = [f"<td>{escape(clip.name)}</td>"]
        for name in ("original", *SYSTEMS):
            data = base64.b64encode(_wav_bytes(audio[name][i])).decode("ascii")
            cells.append(f'<td><audio controls preload="none" src="data:audio/wav;base64,{data}"></audio></td>')
        players.append("<tr>" + "".join(cells) + "</tr>")
    note = f"<p><b>{escape(metrics['note'])}</b></p>" if metrics.get("note") else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(language)}: the unit vocoder on held-out speech</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}}th{{background:#eee}}
audio{{width:11em}}</style></head><body>
<h1>{escape(language)}: the unit vocoder on held-out speech</h1>
{note}<p>{metrics['clips']} held-out segments ({metrics['seconds']:.1f} s) of the test recordings
{escape(", ".join(metrics['recordings']))}; the recognizer ({escape(str(metrics['recognizer']['model']))},
adapter {escape(str(metrics['recognizer']['adapter']))}) transcribes each resynthesis, scored against its
transcript of the original.</p>
<table><tr>{head}</tr>{"".join(rows)}</table>
<h2>Training</h2><p>{escape(curve_shape(log))}.</p>
{loss_curves_svg(log) if log else ""}
<h2>Listen</h2>
<table><tr><th>clip</th><th>original</th>{"".join(f"<th>{escape(n)}</th>" for n in SYSTEMS)}</tr>{"".join(players)}</table>
</body></html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.vocoder.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("vocoder", type=Path, help="a train_vocoder output folder")
    parser.add_argument("out", type=Path, help="output folder (metrics.json, pairs/)")
    parser.add_argument("--units", type=Path, nargs="+", required=True)
    parser.add_argument("--pitch", type=Path, nargs="+", required=True)
    parser.add_argument("--wavs", type=Path, nargs="+", required=True)
    parser.add_argument("--test", type=Path, nargs="+", required=True, help="dataset/test.jsonl: the held-out recordings")
    parser.add_argument("--model", required=True, help="the recognizer (transcribe.model)")
    parser.add_argument("--lang", help="its adapter")
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--max-clips", type=int, default=24)
    parser.add_argument("--max-clip-s", type=float, default=12.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--report", type=Path, help="write the report page here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    vocoder = Vocoder(args.vocoder, "cpu")
    k = vocoder.n_units
    by_name: dict[str, dict[str, Path]] = {}
    for kind, paths in (("units", args.units), ("pitch", args.pitch), ("wav", args.wavs)):
        for path in paths:
            by_name.setdefault(path.stem, {})[kind] = path
    test_names = split_recordings(args.test)
    held, other = [], []
    for name in sorted(by_name):
        files = by_name[name]
        if len(files) < 3:
            raise InputError(next(iter(files.values())), f"recording {name} has no {' or '.join(sorted({'units', 'pitch', 'wav'} - set(files)))} file")
        recording = load_recording(files["units"], files["pitch"], files["wav"])
        for units in recording.units:
            vocoder.check_units(units, files["units"])
        (held if name in test_names else other).append(recording)
    clips = held_out_clips(Corpus(held), args.max_clips, args.max_clip_s)
    log_path = args.vocoder / "training_log.json"
    log = json.loads(log_path.read_text(encoding="utf-8")) if log_path.is_file() else []
    metrics = {"language": str(args.vocoder.parent.name), "vocoder": str(args.vocoder), "clips": len(clips),
               "seconds": round(sum(len(c.audio) for c in clips) / SAMPLE_RATE, 2),
               "recordings": sorted({r.name for r in held}), "recognizer": {"model": args.model, "adapter": args.lang},
               "notes": NOTES, "tool": tala.tool("torch", "librosa", "praat-parselmouth", "jiwer")}  # fmt: skip
    audio: dict[str, list[np.ndarray]] = {"original": [c.audio for c in clips], **{s: [] for s in SYSTEMS}}
    if not clips:
        metrics.update(systems={s: {} for s in SYSTEMS}, per_clip=[],
                       note="no held-out recording: the dataset's test split is empty for this language, "
                            "so the vocoder was not tested")  # fmt: skip
    else:
        seed = int(vocoder.config.get("training", {}).get("settings", {}).get("seed", 0))
        torch.manual_seed(seed)
        untrained = GeneratorV2(vocoder.generator.config).eval()
        means = unit_mean_mels(Corpus(other), k)
        synth_s = 0.0
        for clip in clips:
            t0 = time.perf_counter()
            out = resynthesize(clip, vocoder, untrained, means)
            synth_s += time.perf_counter() - t0
            for name in SYSTEMS:
                audio[name].append(out[name])
        from tala.finetune.evaluate_asr import System, recognizer

        asr = recognizer("ctc", System("recognizer", args.model, args.lang), args.models_dir, args.device, "auto")
        originals = [asr.transcribe(c.audio) for c in clips]
        per_clip, systems = [], {}
        for name in SYSTEMS:
            scores = [clip_metrics(clip, a) for clip, a in zip(clips, audio[name])]
            hypotheses = [asr.transcribe(a) for a in audio[name]]
            rates = error_rates(originals, hypotheses)
            systems[name] = {key: _finite(value) for key, value in pool(scores, METRICS).items()}
            systems[name].update(cer=_finite(rates["cer"]), wer=_finite(rates["wer"]),
                                 empty_original_transcripts=rates["empty_references"])  # fmt: skip
            for clip, score, hyp, ref in zip(clips, scores, hypotheses, originals):
                per_clip.append({"clip": clip.name, "system": name, "transcript": hyp, "original_transcript": ref,
                                 **{k: _finite(float(score[k])) for k in METRICS}})  # fmt: skip
        metrics.update(systems=systems, per_clip=per_clip)
        print(f"synthesis (all four systems, Griffin-Lim included): {synth_s:.1f} s for {metrics['seconds']:.1f} s "
              "of audio per system", file=sys.stderr)  # fmt: skip
    with atomic_dir(args.out / "pairs") as tmp:
        for i, clip in enumerate(clips[:PAIRS]):
            for name in ("original", *SYSTEMS):
                (tmp / f"{i:02d}_{name}.wav").write_bytes(_wav_bytes(audio[name][i]))
    if args.report:
        write_text_atomic(args.report, report_html(metrics["language"], metrics, log, clips, audio))
    write_json_atomic(args.out / "metrics.json", metrics)
    for name, values in metrics["systems"].items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in values.items()), file=sys.stderr)
    print(f"done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
