"""Test a trained vocoder on held-out speech (step ``test_vocoder``; the seed's vocoder test and the
speech-resynthesis paper's: is the resynthesis still understood?).

    python -m tala.vocoder.evaluate VOCODER_DIR OUT_DIR --units U.json... --pitch P.npy... \\
        --wavs W.wav... --test test.jsonl --model M --lang L [--models-dir D] [--max-clips 24] \\
        [--max-clip-s 12] [--report results/{lang}/report/vocoder.html] [--device auto] [--language L]

Clips: the speech segments of the dataset's test recordings (the ``recording`` of each line of
``--test``; never heard in training), recording by recording (sorted by name) and segment by segment,
each cut to its first ``--max-clip-s`` seconds, at most ``--max-clips`` (segments under 0.5 s are
passed over: too short to transcribe or to judge). Every clip is resynthesized from its units and
its own pitch (the ``.npy`` values of its frames) by four systems:

* ``vocoder``: the trained generator;
* ``untrained``: the same architecture drawn with the training seed (``torch.manual_seed(seed)``, as
  ``train_vocoder`` draws it): the generator at step 0;
* ``unit_mean_gl``: each unit's mean log-mel (:mod:`tala.vocoder.mel`) over the speech segments of the
  recordings that are *not* held out (mel frame ``m`` belongs to unit frame ``m // 2``; a sum and a
  count per unit, accumulated one segment at a time; at most ``--unit-mean-hours`` of them, every
  n-th segment when there are more: the means settle long before, and the log-mel costs about a
  second per minute of audio on one core), inverted by Griffin-Lim: no training at all, the
  baseline a vocoder must beat;
* ``true_mel_gl``: the original's own log-mel through the same Griffin-Lim: the yardstick (the best a
  spectrogram can do without a phase model).

Per clip and system (:mod:`tala.vocoder.metrics`): MCD after DTW, F0 RMSE / agreement within 20 % /
voicing disagreement of Praat's pitch of the resynthesis against the pitch given, length ratio,
SNR (the seed's), and the CER of the workflow's recognizer (greedy; :mod:`tala.finetune.evaluate_asr`)
on the resynthesis against its transcript of the original clip (a clip whose original transcript
is empty is left out of the CER and counted). Pooled per system with :func:`tala.vocoder.metrics.pool`
and, for the CER, jiwer over all clips (total character edits / total reference characters). The vocoder's synthesis
speed on the clips (seconds of audio per second) goes to the log, not the outputs: two runs write the
same bytes (``tests/bench/bench_vocoder.py`` measures it against Griffin-Lim).

Outputs (each written whole): ``OUT_DIR/metrics.json`` — ``language``, ``vocoder``, ``clips``,
``seconds``, ``recordings`` (held out), ``recognizer`` (model, adapter), ``unit_means`` (what the
baseline's means were taken over), ``systems`` (per system: its ``role`` and the pooled ``mcd_db``,
``f0_rmse_hz``, ``f0_within_20pct``, ``voicing_disagreement``, ``length_ratio``, ``snr_db``, ``cer``,
``wer`` with the counts behind them), ``per_clip`` (one row per system and clip: the same measures,
the counts :func:`~tala.vocoder.metrics.pool` weighs with, the clip's CER and both transcripts),
``notes`` (what each system is) and ``tool``; ``OUT_DIR/pairs/`` with ``NN_original.wav`` and ``NN_vocoder.wav`` for every clip
and the other systems' ``NN_<system>.wav`` for the first six (16-bit); with ``--report``, a
self-contained page (the table, the loss curves of ``training_log.json`` as inline SVG, the first
clips' audio embedded side by side). A language whose test split holds no recording (or none with
units) is no error: ``clips`` is 0, a ``note`` says why, ``pairs/`` is empty and the page says so.
"""

from __future__ import annotations

import argparse
import base64
import copy
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
from tala.ctc_text import cer, error_rates
from tala.errors import InputError, run_cli
from tala.fileio import atomic_dir, write_json_atomic, write_text_atomic
from tala.models.vocoder import GeneratorV2
from tala.vocoder.data import Corpus, Recording, load_recording, split_recordings
from tala.vocoder.mel import MEL, log_mel, mel_to_audio
from tala.vocoder.metrics import f0_metrics, length_ratio, mcd, pool, snr_db
from tala.vocoder.pitch import FRAME_S, track_f0
from tala.vocoder.synthesize import SAMPLE_RATE, Vocoder

SYSTEMS = ("vocoder", "untrained", "unit_mean_gl", "true_mel_gl")
ROLES = {"vocoder": "under test", "untrained": "floor (step 0)", "unit_mean_gl": "baseline to beat",
         "true_mel_gl": "yardstick"}  # fmt: skip
NOTES = {
    "vocoder": "the trained generator, from the clip's units and its pitch (the .npy values of its frames)",
    "untrained": "the same generator drawn with the training seed, untrained: where training started (step 0)",
    "unit_mean_gl": "each unit's mean log-mel over the segments of the recordings not held out, then Griffin-Lim "
                    "(32 iterations): no training at all, the baseline a vocoder must beat",
    "true_mel_gl": "the original clip's own log-mel through the same Griffin-Lim: the yardstick (the true "
                   "spectrum, no phase model)",
}  # fmt: skip
METRICS = ("mcd_db", "f0_rmse_hz", "f0_within_20pct", "voicing_disagreement", "length_ratio", "snr_db")
COUNTS = ("frames", "f0_sq_err_sum", "voiced_both", "f0_frames")  # what pool() weighs with, kept per clip
BASELINE_PAIRS = 6  # clips whose every system goes to pairs/ (original and vocoder: every clip)
PAGE_CLIPS, PAGE_S = 4, 5.0  # clips played on the page, their first seconds (embedded 16-bit WAV: ~3 MB)
MEL_PER_UNIT = round(FRAME_S * SAMPLE_RATE / MEL.hop_length)  # 2 mel frames (10 ms) per 20 ms unit frame
WARMUP_FRAMES = 50
MIN_CLIP_S = 0.5  # shorter held-out segments are passed over
UNIT_MEAN_HOURS = 2.0
HOP = round(FRAME_S * SAMPLE_RATE)  # 320 samples per unit frame


@dataclass(frozen=True)
class Clip:
    name: str  # <recording>_<segment within it, 3 digits>
    recording: str
    segment: int
    units: np.ndarray
    pitch: np.ndarray
    audio: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def held_out_clips(corpus: Corpus, max_clips: int, max_clip_s: float, min_clip_s: float = MIN_CLIP_S) -> list[Clip]:
    """The corpus's segments in order (those of at least ``min_clip_s``), each its first
    ``max_clip_s`` seconds, at most ``max_clips``."""
    clips: list[Clip] = []
    frames = max(1, int(max_clip_s / FRAME_S + 1e-9))
    min_frames = max(1, math.ceil(min_clip_s / FRAME_S - 1e-9))
    within: dict[int, int] = {}
    for index, segment in enumerate(corpus.segments):
        number = within.get(segment.recording, 0)
        within[segment.recording] = number + 1
        if len(clips) >= max_clips:
            break
        if segment.frames < min_frames:
            continue
        units, pitch, audio = corpus.window(index, 0, min(frames, segment.frames))
        recording = corpus.recordings[segment.recording].name
        clips.append(Clip(f"{recording}_{number:03d}", recording, number, units, pitch, audio))
    return clips


class UnitMelMeans:
    """Streaming mean log-mel per unit id: a sum and a count per unit, fed one segment at a time
    (never all features at once)."""

    def __init__(self, k: int, n_mels: int = MEL.n_mels):
        self.sums = np.zeros((k, n_mels), dtype=np.float64)
        self.counts = np.zeros(k, dtype=np.int64)

    def add(self, units: np.ndarray, mel: np.ndarray) -> None:
        """One segment: ``units`` (unit frames) and its ``n_mels x mel_frames`` log-mel; mel frame
        ``m`` belongs to unit frame ``m // 2``; frames past the last unit's (the centred STFT's extra
        one) are left out."""
        units = np.asarray(units, dtype=np.int64)
        n = min(mel.shape[1], len(units) * MEL_PER_UNIT)
        if n == 0:
            return
        owners = units[np.arange(n) // MEL_PER_UNIT]
        order = np.argsort(owners, kind="stable")
        ordered = owners[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        self.sums[ordered[starts]] += np.add.reduceat(np.asarray(mel[:, :n], dtype=np.float64).T[order], starts, axis=0)
        self.counts += np.bincount(owners, minlength=len(self.counts))

    @property
    def units_seen(self) -> int:
        return int((self.counts > 0).sum())

    def means(self) -> np.ndarray:
        """``k x n_mels`` float32; a unit never seen gets the mean of all frames (the log floor when none)."""
        total = self.counts.sum()
        overall = self.sums.sum(axis=0) / total if total else np.full(self.sums.shape[1], math.log(1e-5))
        seen = self.counts > 0
        out = np.where(seen[:, None], self.sums / np.maximum(self.counts, 1)[:, None], overall[None])
        return out.astype(np.float32)


def unit_mean_segments(corpus: Corpus, max_hours: float | None) -> list[int]:
    """The segments the unit means are taken over: all those long enough for the log-mel's window
    (its centred padding needs more than ``n_fft / 2`` samples), or every n-th of them when they
    hold more than ``max_hours`` (None or 0: no limit): spread over all recordings, the same every time."""
    usable = [i for i, s in enumerate(corpus.segments) if s.frames * HOP > MEL.n_fft // 2]
    total = sum(corpus.segments[i].frames for i in usable)
    budget = (max_hours or 0) * 3600 / FRAME_S
    if not budget or total <= budget:
        return usable
    return usable[:: math.ceil(total / budget)]


def accumulate_unit_mels(corpus: Corpus, k: int, segments: list[int] | None = None) -> UnitMelMeans:
    """The log-mel of the corpus's ``segments`` (default: all those long enough), accumulated per
    unit, each segment read from its WAV when its turn comes."""
    means = UnitMelMeans(k)
    for index in unit_mean_segments(corpus, None) if segments is None else segments:
        units, _, audio = corpus.window(index, 0, corpus.segments[index].frames)
        means.add(units, log_mel(audio))
    return means


def unit_mean_mels(corpus: Corpus, k: int, segments: list[int] | None = None) -> np.ndarray:
    """``k x n_mels`` mean log-mel per unit over the corpus's ``segments`` (:class:`UnitMelMeans`)."""
    return accumulate_unit_mels(corpus, k, segments).means()


def unit_mean_audio(units: np.ndarray, means: np.ndarray, length: int) -> np.ndarray:
    """Griffin-Lim of the units' mean log-mels, two mel frames per unit (+ the centred STFT's last)."""
    mel = np.repeat(means[units], MEL_PER_UNIT, axis=0).T
    mel = np.concatenate([mel, mel[:, -1:]], axis=1)
    return mel_to_audio(mel, length=length)


def untrained_twin(vocoder: Vocoder) -> Vocoder:
    """The vocoder with its generator as ``train_vocoder`` drew it before step 1 (same config, the
    training seed), synthesizing exactly as the trained one does."""
    seed = int(((vocoder.config.get("training") or {}).get("settings") or {}).get("seed", 0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = GeneratorV2(vocoder.generator.config)
    twin = copy.copy(vocoder)
    twin.generator = generator.to(vocoder.device).eval()
    return twin


def clip_metrics(clip: Clip, audio: np.ndarray) -> dict:
    """MCD, F0 agreement with the conditioning pitch, SNR and length ratio of one resynthesis."""
    return {**mcd(clip.audio, audio), **f0_metrics(clip.pitch, track_f0(audio)),
            "snr_db": snr_db(clip.audio, audio), "length_ratio": length_ratio(clip.audio, audio)}  # fmt: skip


def _finite(value):
    """JSON-safe: NaN and ±inf as null, floats rounded."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


# --------------------------------------------------------------------------- inputs

def read_training_log(folder: Path) -> list[dict]:
    """``training_log.json``'s records (none when the file is absent: the page then has no curve)."""
    path = folder / "training_log.json"
    if not path.is_file():
        return []
    try:
        log = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(path, f"not a training log ({err})") from None
    if not isinstance(log, list) or not all(isinstance(r, dict) for r in log):
        raise InputError(path, "not a training log (expected a JSON list of records, as train_vocoder writes)")
    return log


def read_recordings(vocoder: Vocoder, units: list[Path], pitch: list[Path], wavs: list[Path]) -> list[Recording]:
    """Every recording (matched by file stem), checked: its units against its pitch and the
    generator's unit count, its WAV's rate."""
    by_name: dict[str, dict[str, Path]] = {}
    for kind, paths in (("units", units), ("pitch", pitch), ("wav", wavs)):
        for path in paths:
            files = by_name.setdefault(path.stem, {})
            if kind in files:
                raise InputError(path, f"a second {kind} file for recording {path.stem} (also {files[kind]})")
            files[kind] = path
    recordings = []
    for name in sorted(by_name):
        files = by_name[name]
        missing = sorted({"units", "pitch", "wav"} - set(files))
        if missing:
            raise InputError(next(iter(files.values())), f"recording {name} has no {' or '.join(missing)} file given")
        recording = load_recording(files["units"], files["pitch"], files["wav"])
        for ids in recording.units:
            vocoder.check_units(ids, files["units"])
        recordings.append(recording)
    return recordings


# --------------------------------------------------------------------------- the page

def loss_curves_svg(log: list[dict]) -> str:
    """Train and validation mel loss (and the discriminators' loss, right axis) as an inline SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "tala"}):
        fig, ax = plt.subplots(figsize=(7.5, 3.2))
        for key, label, style in (("mel_loss", "train mel loss", {"lw": 1}),
                                  ("eval_mel_loss", "validation mel loss", {"marker": "o", "ms": 3})):  # fmt: skip
            points = [(r["step"], r[key]) for r in log if key in r and "step" in r]
            if points:
                ax.plot(*zip(*points), label=label, **style)
        handles, labels = ax.get_legend_handles_labels()
        d_points = [(r["step"], r["d_loss"]) for r in log if "d_loss" in r and "step" in r]
        if d_points:
            right = ax.twinx()
            right.plot(*zip(*d_points), color="tab:red", lw=1, alpha=0.7, label="D loss (right axis)")
            right.set_ylabel("D loss")
            more = right.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        ax.set_xlabel("step")
        ax.set_ylabel("mel loss (45 × L1 log-mel)")
        if handles:
            ax.legend(handles, labels, fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def curve_shape(log: list[dict]) -> str:
    """One sentence on the loss curves: where they started and ended, and how the end looks."""
    train = [(r["step"], r["mel_loss"]) for r in log if "mel_loss" in r and "step" in r]
    evals = [(r["step"], r["eval_mel_loss"]) for r in log if "eval_mel_loss" in r and "step" in r]
    if not train and not evals:
        return "No training log: no loss curve."
    parts = []
    if train:
        parts.append(f"train mel loss {train[0][1]:.1f} at step {train[0][0]} → {train[-1][1]:.1f} at step "
                     f"{train[-1][0]}")  # fmt: skip
    if len(evals) >= 2:
        best_step, best = min(evals, key=lambda e: e[1])
        last = evals[-1][1]
        tail = [v for _, v in evals[-max(2, len(evals) // 4) :]]
        if best_step < evals[-1][0] and last > best * 1.05:
            trend = "rising again after its best (over-fitting: the best generator is the one kept)"
        elif (tail[-1] - tail[0]) / tail[0] < -0.02:
            trend = "still falling at the end (more steps would help)"
        else:
            trend = "flat over the last quarter (converged for this model and data)"
        parts.append(f"validation {evals[0][1]:.1f} → {last:.1f} (best {best:.1f} at step {best_step}), {trend}")
    elif evals:
        parts.append(f"one validation mel loss: {evals[0][1]:.1f} at step {evals[0][0]}")
    else:
        parts.append("no validation mel loss in the log (no validation recordings)")
    d_steps = [r["step"] for r in log if "d_loss" in r and "step" in r]
    if d_steps:
        parts.append(f"the discriminators joined at step {d_steps[0]}")
    else:
        parts.append("mel loss only (no discriminator)")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _cell(value, digits: int = 2, percent: bool = False) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return f"{100 * value:.1f} %" if percent else f"{value:.{digits}f}"


def verdict(systems: dict) -> str:
    """How the vocoder stands against the baseline and the yardstick, in one sentence."""
    voc, base, yard = systems.get("vocoder", {}), systems.get("unit_mean_gl", {}), systems.get("true_mel_gl", {})
    if voc.get("mcd_db") is None or base.get("mcd_db") is None:
        return ""
    words = [f"MCD {voc['mcd_db']:.2f} dB against the unit-mean baseline's {base['mcd_db']:.2f} "
             f"({'better' if voc['mcd_db'] < base['mcd_db'] else 'not better'})"]
    if voc.get("cer") is not None and base.get("cer") is not None:
        words.append(f"CER {100 * voc['cer']:.1f} % against {100 * base['cer']:.1f} % "
                     f"({'better' if voc['cer'] < base['cer'] else 'not better'})")
    if yard.get("mcd_db") is not None:
        words.append(f"the yardstick (true-mel Griffin-Lim) reaches MCD {yard['mcd_db']:.2f} dB"
                     + (f", CER {100 * yard['cer']:.1f} %" if yard.get("cer") is not None else ""))
    return "The vocoder: " + "; ".join(words) + "."


def report_html(metrics: dict, log: list[dict], clips: list[Clip], audio: dict[str, list[np.ndarray]]) -> str:
    """The self-contained page: systems table, loss curves, audio side by side."""
    language = metrics["language"]
    systems = metrics["systems"]
    head = "".join(f"<th>{escape(h)}</th>" for h in ("system", "role", "MCD (dB)", "F0 RMSE (Hz)", "F0 within 20 %",
                                                       "voicing disagreement", "length ratio", "SNR (dB)", "CER"))
    rows = []
    for name in SYSTEMS:
        v = systems.get(name, {})
        cells = [_cell(v.get("mcd_db")), _cell(v.get("f0_rmse_hz"), 1), _cell(v.get("f0_within_20pct"), percent=True),
                 _cell(v.get("voicing_disagreement"), percent=True), _cell(v.get("length_ratio"), 3),
                 _cell(v.get("snr_db"), 1), _cell(v.get("cer"), percent=True)]  # fmt: skip
        rows.append(f"<tr><td><b>{escape(name)}</b><br><small>{escape(NOTES[name])}</small></td>"
                    f"<td>{escape(ROLES[name])}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")  # fmt: skip
    players = []
    for i, clip in enumerate(clips[:PAGE_CLIPS]):
        cells = [f"<td>{escape(clip.name)}<br><small>{min(clip.seconds, PAGE_S):.1f} s</small></td>"]
        for name in ("original", *SYSTEMS):
            data = base64.b64encode(_wav_bytes(audio[name][i][: int(PAGE_S * SAMPLE_RATE)])).decode("ascii")
            cells.append(f'<td><audio controls preload="none" src="data:audio/wav;base64,{data}"></audio></td>')
        players.append("<tr>" + "".join(cells) + "</tr>")
    recognizer = metrics["recognizer"]
    if metrics["clips"]:
        summary = (f"<p>{metrics['clips']} held-out segments ({metrics['seconds']:.1f} s, each at most "
                   f"{metrics['max_clip_s']:g} s) of the test recordings {escape(', '.join(metrics['recordings']))}, "
                   f"resynthesized from their units and pitch. The recognizer ({escape(str(recognizer['model']))}, "
                   f"adapter {escape(str(recognizer['adapter'] or '-'))}) transcribes each resynthesis; its CER is "
                   f"against the recognizer's transcript of the original clip.</p><p>{escape(verdict(systems))}</p>")  # fmt: skip
        listen = (f"<h2>Listen</h2><p>The first {min(len(clips), PAGE_CLIPS)} clips, their first {PAGE_S:g} s; "
                  f"all pairs are in <code>pairs/</code>.</p><table><tr><th>clip</th><th>original</th>"
                  + "".join(f"<th>{escape(n)}</th>" for n in SYSTEMS) + f"</tr>{''.join(players)}</table>")  # fmt: skip
    else:
        summary, listen = f"<p><b>{escape(metrics['note'])}</b></p>", ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(language)}: the unit vocoder on held-out speech</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}}th{{background:#eee}}
small{{color:#555}}audio{{width:11em;height:2em}}</style></head><body>
<h1>{escape(language)}: the unit vocoder on held-out speech</h1>
{summary}
<table><tr>{head}</tr>{"".join(rows)}</table>
<p><small>MCD: mel-cepstral distortion after DTW (dB, lower is better). F0: Praat's pitch of the resynthesis
against the pitch given, on frames voiced in both. SNR: sample by sample, near or below 0 dB for any system
that does not copy the phase. CER: pooled over clips (character edits / reference characters).</small></p>
<h2>Training</h2><p>{escape(curve_shape(log))}</p>
{loss_curves_svg(log) if any("mel_loss" in r or "eval_mel_loss" in r for r in log) else ""}
{listen}
</body></html>
"""


# --------------------------------------------------------------------------- the step

def evaluate(clips: list[Clip], vocoder: Vocoder, means: np.ndarray, asr, log=print) -> tuple[dict, list, dict]:
    """Resynthesize and score every clip with every system: (pooled per system, one row per system
    and clip, the audio per system). The vocoder's synthesis speed goes to ``log``."""
    untrained = untrained_twin(vocoder)
    vocoder.synthesize(clips[0].units[:WARMUP_FRAMES], clips[0].pitch[:WARMUP_FRAMES])  # first-call overheads
    audio: dict[str, list[np.ndarray]] = {"original": [c.audio for c in clips], **{s: [] for s in SYSTEMS}}
    synth_s = 0.0
    for clip in clips:
        started = time.perf_counter()
        audio["vocoder"].append(vocoder.synthesize(clip.units, clip.pitch))
        synth_s += time.perf_counter() - started
        audio["untrained"].append(untrained.synthesize(clip.units, clip.pitch))
        audio["unit_mean_gl"].append(unit_mean_audio(clip.units, means, len(clip.audio)))
        audio["true_mel_gl"].append(mel_to_audio(log_mel(clip.audio), length=len(clip.audio)))
    seconds = sum(c.seconds for c in clips)
    log(f"vocoder synthesis: {seconds:.1f} s of audio in {synth_s:.2f} s ({seconds / max(synth_s, 1e-9):.1f} x real "
        f"time, {vocoder.device}, {torch.get_num_threads()} threads)")  # fmt: skip
    originals = [asr.transcribe(c.audio) for c in clips]
    per_clip, systems = [], {}
    for name in SYSTEMS:
        scores = [clip_metrics(clip, a) for clip, a in zip(clips, audio[name])]
        hypotheses = [asr.transcribe(a) for a in audio[name]]
        rates = error_rates(originals, hypotheses)
        systems[name] = {"role": ROLES[name], **{k: _finite(v) for k, v in pool(scores, METRICS).items()},
                         "cer": _finite(rates["cer"]), "wer": _finite(rates["wer"]),
                         "char_edits": rates["char_edits"], "ref_chars": rates["ref_chars"],
                         "clips_scored_for_cer": rates["pairs"] - rates["empty_references"],
                         "clips_without_original_transcript": rates["empty_references"]}  # fmt: skip
        for clip, score, hyp, ref in zip(clips, scores, hypotheses, originals):
            per_clip.append({"clip": clip.name, "system": name, "recording": clip.recording, "segment": clip.segment,
                             "seconds": round(clip.seconds, 2), **{k: _finite(score[k]) for k in METRICS + COUNTS},
                             "cer": _finite(cer(ref, hyp)) if ref else None, "transcript": hyp,
                             "original_transcript": ref})  # fmt: skip
        log(f"{name}: " + ", ".join(f"{k} {systems[name][k]}" for k in ("mcd_db", "f0_rmse_hz", "f0_within_20pct",
                                                                           "length_ratio", "cer")))  # fmt: skip
    return systems, per_clip, audio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.vocoder.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("vocoder", type=Path, help="a train_vocoder output folder (results/{lang}/vocoder)")
    parser.add_argument("out", type=Path, help="output folder (metrics.json, pairs/)")
    parser.add_argument("--units", type=Path, nargs="+", required=True, help="results/{lang}/units/{rec}.json")
    parser.add_argument("--pitch", type=Path, nargs="+", required=True, help="results/{lang}/pitch/{rec}.npy")
    parser.add_argument("--wavs", type=Path, nargs="+", required=True, help="results/{lang}/audio/{rec}.wav")
    parser.add_argument("--test", type=Path, nargs="+", required=True,
                        help="dataset/test.jsonl: the held-out recordings")
    parser.add_argument("--model", required=True, help="the recognizer (the workflow's transcribe.model)")
    parser.add_argument("--lang", required=True, help="its language adapter ('-' for none)")
    parser.add_argument("--models-dir", type=Path, help="where hub models were downloaded")
    parser.add_argument("--max-clips", type=int, default=24)
    parser.add_argument("--max-clip-s", type=float, default=12.0)
    parser.add_argument("--unit-mean-hours", type=float, default=UNIT_MEAN_HOURS,
                        help="at most this much of the other recordings for the unit means (0: all)")
    parser.add_argument("--report", type=Path, help="also write the report page here")
    parser.add_argument("--device", default="auto", help="for the generators and the recognizer")
    parser.add_argument("--language", help="the language's name on the page (default: VOCODER_DIR's parent)")
    args = parser.parse_args(argv)
    if args.max_clips < 1 or not args.max_clip_s > 0 or args.unit_mean_hours < 0:
        parser.error("--max-clips and --max-clip-s must be positive, --unit-mean-hours at least 0")
    started = time.perf_counter()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from tala.device import pick_device

    device = pick_device(args.device)
    vocoder = Vocoder(args.vocoder, device)
    training_log = read_training_log(args.vocoder)
    recordings = read_recordings(vocoder, args.units, args.pitch, args.wavs)
    test_names = split_recordings(args.test)
    held = [r for r in recordings if r.name in test_names]
    other = [r for r in recordings if r.name not in test_names]
    clips = held_out_clips(Corpus(held), args.max_clips, args.max_clip_s)
    adapter = None if args.lang in ("-", "") else args.lang
    metrics = {"language": args.language or args.vocoder.resolve().parent.name, "vocoder": str(args.vocoder),
               "clips": len(clips), "seconds": round(sum(c.seconds for c in clips), 2),
               "max_clip_s": args.max_clip_s, "recordings": [r.name for r in held],
               "recognizer": {"model": args.model, "adapter": adapter}}  # fmt: skip
    audio: dict[str, list[np.ndarray]] = {"original": [], **{s: [] for s in SYSTEMS}}
    if not clips:
        if not test_names:
            reason = "the dataset's test split names no recording"
        elif not held:
            reason = f"no units were given for the test recordings ({', '.join(sorted(test_names))})"
        else:
            reason = (f"the test recordings ({', '.join(r.name for r in held)}) have no speech segment of "
                      f"{MIN_CLIP_S:g} s or more")
        metrics.update(systems={}, per_clip=[],
                       note=f"nothing held out: {reason}, so the vocoder was not tested")  # fmt: skip
        log(f"test_vocoder: {metrics['note']}")
    else:
        material = Corpus(other)
        chosen = unit_mean_segments(material, args.unit_mean_hours)
        accumulated = accumulate_unit_mels(material, vocoder.n_units, chosen)
        metrics["unit_means"] = {"recordings": [r.name for r in other], "segments": len(chosen),
                                 "of_segments": len(material.segments),
                                 "hours": round(sum(material.segments[i].frames for i in chosen) * FRAME_S / 3600, 3),
                                 "mel_frames": int(accumulated.counts.sum()), "units_seen": accumulated.units_seen,
                                 "units": vocoder.n_units}  # fmt: skip
        log(f"unit means: {metrics['unit_means']['hours']:.2f} h in {len(chosen)} of {len(material.segments)} "
            f"segments, {accumulated.units_seen} of {vocoder.n_units} units seen")
        from tala.finetune.evaluate_asr import System, recognizer

        asr = recognizer("ctc", System("recognizer", args.model, adapter), args.models_dir, args.device, "auto")
        systems, per_clip, audio = evaluate(clips, vocoder, accumulated.means(), asr, log)
        metrics.update(systems=systems, per_clip=per_clip)
    metrics.update(notes=NOTES, tool=tala.tool("torch", "librosa", "praat-parselmouth", "jiwer", "transformers"))
    with atomic_dir(args.out / "pairs") as tmp:
        for i in range(len(clips)):
            for name in ("original", *SYSTEMS):
                if name in ("original", "vocoder") or i < BASELINE_PAIRS:
                    (tmp / f"{i:02d}_{name}.wav").write_bytes(_wav_bytes(audio[name][i]))
    if args.report:
        write_text_atomic(args.report, report_html(metrics, training_log, clips, audio))
    write_json_atomic(args.out / "metrics.json", metrics)
    log(f"test_vocoder: {len(clips)} clips, {metrics['seconds']:.1f} s, done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
