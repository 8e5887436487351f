"""Benchmark of the audio front end on at least ten minutes of read speech.

    PYTHONPATH=scripts .venv/bin/python tests/bench/bench_frontend.py [--minutes 10] [--skip-pydub]

(a) ``tala.audio.convert`` against the ffmpeg CLI alone (``ffmpeg -i in.mp3 -ar 16000 -ac 1 -c:a
    pcm_s16le out.wav``): wall time, best of 3 in the same run; goal: at least 0.8x its throughput.
(b) ``tala.audio.segment`` against pydub's ``detect_nonsilent`` (min_silence_len=500, silence_thresh=-40,
    seek_step=1: the 1 ms step matches our 1 ms hop) on the 16 kHz file from (a); goal: 100x
    faster. The raw non-silent ranges (before the min/max span rules and edge extension) are
    compared edge by edge. pydub calls a 500 ms *window* silent when its average RMS is under the
    threshold; we call each 10 ms *frame* silent. To show that this is the whole difference, pydub's
    rule is also re-implemented here with numpy and compared with pydub itself.

The audio is the demo chapters (resources/demo/*/audio/*) repeated to --minutes, encoded as
44.1 kHz stereo 128 kbps MP3 and cached in .bench/ (rebuilt when the demo changes). Without demo
audio it falls back to espeak-ng sentences, then to synthetic speech-like bursts. Exits 0 always.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from tala.audio_io import decode_blocks, probe_audio  # noqa: E402
from tala.audio.convert import convert_file  # noqa: E402
from tala.audio.segment import find_spans, nonsilent_ranges, read_frame_levels_db  # noqa: E402

BENCH_RATE = 44_100
CACHE = REPO / ".bench"
CONVERT_GOAL = 0.8  # our throughput / ffmpeg's
SEGMENT_GOAL = 100.0  # pydub time / ours
EDGE_TOLERANCE_MS = 10
MIN_SILENCE_MS = 500
THRESHOLD_DB = -40.0


# --- the audio ------------------------------------------------------------------------------

def _demo_sources() -> list[Path]:
    return sorted(p for p in (REPO / "resources" / "demo").glob("*/audio/*") if p.is_file())


def _stereo_44k(path: Path) -> np.ndarray:
    info = probe_audio(path)
    audio = np.concatenate(list(decode_blocks(path, info=info)))
    if info.sample_rate != BENCH_RATE:
        audio = soxr.resample(audio, info.sample_rate, BENCH_RATE, quality="HQ")
    return audio if audio.shape[1] == 2 else np.repeat(audio[:, :1], 2, axis=1)


def _espeak_speech(workdir: Path) -> list[np.ndarray]:
    sentences = [
        "In the beginning God created the heaven and the earth.",
        "And the earth was without form, and void; and darkness was upon the face of the deep.",
        "And God said, Let there be light: and there was light.",
        "I will lift up mine eyes unto the hills, from whence cometh my help.",
        "In the beginning was the Word, and the Word was with God, and the Word was God.",
        "Now it came to pass in the days when the judges ruled, that there was a famine in the land.",
    ]
    clips = []
    for i, text in enumerate(sentences):
        wav = workdir / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        speech, rate = sf.read(wav, dtype="float32", always_2d=True)
        clips.append(np.repeat(soxr.resample(speech, rate, BENCH_RATE), 2, axis=1))
    return clips


def _synthetic_speech(seconds: float) -> list[np.ndarray]:
    """Noise "syllables" (4-6 per second, 30 dB of dynamics) grouped into words and phrases."""
    rng = np.random.default_rng(0)
    clips = []
    for _ in range(int(seconds / 6) + 1):
        phrase = []
        for _ in range(rng.integers(3, 9)):
            n = int(rng.uniform(0.15, 0.35) * BENCH_RATE)
            envelope = np.sin(np.linspace(0, np.pi, n)) ** 2 * rng.uniform(0.05, 0.3)
            phrase += [rng.normal(0, 1, n) * envelope, np.zeros(int(rng.uniform(0.02, 0.2) * BENCH_RATE))]
        mono = np.concatenate(phrase).astype(np.float32)
        clips.append(np.stack([mono, mono], axis=1))
    return clips


def _demo_truth(path: Path) -> list[tuple[float, float]]:
    """Heading and verse times of a demo recording (seconds; known to the sample)."""
    truth = json.loads((path.parents[1] / "truth" / f"{path.stem}.json").read_text())
    return [(truth["heading"]["start"], truth["heading"]["end"])] + [
        (verse["start"], verse["end"]) for verse in truth["verses"]]


def build_bench_mp3(minutes: float) -> tuple[Path, str, list[tuple[float, float]] | None]:
    """The cached bench MP3 (built on first use), what it holds, and its speech times if known."""
    sources = _demo_sources()
    key = hashlib.sha256(repr([(str(p.relative_to(REPO)), p.stat().st_size, p.stat().st_mtime_ns)
                               for p in sources] + [minutes, "v2"]).encode()).hexdigest()[:10]
    kind = "demo" if sources else ("espeak" if shutil.which("espeak-ng") else "synthetic")
    mp3 = CACHE / f"speech_{kind}_{minutes:g}min_{key}.mp3"
    truth_json = mp3.with_suffix(".truth.json")
    description = {"demo": f"{len(sources)} demo chapters, repeated",
                   "espeak": "espeak-ng sentences (no demo audio found)",
                   "synthetic": "synthetic speech-like bursts (no demo audio, no espeak-ng)"}[kind]
    if mp3.exists():
        truth = json.loads(truth_json.read_text()) if truth_json.exists() else None
        return mp3, description, truth
    CACHE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "demo":
            clips = [_stereo_44k(p) for p in sources]
            clip_truth = [_demo_truth(p) for p in sources]
        elif kind == "espeak":
            clips, clip_truth = _espeak_speech(Path(tmp)), None
        else:
            clips, clip_truth = _synthetic_speech(minutes * 60), None
    rng = np.random.default_rng(1)
    parts, truth, total = [], [], 0
    while total < minutes * 60 * BENCH_RATE:
        for index, clip in enumerate(clips):
            if clip_truth is not None:
                truth += [(total / BENCH_RATE + a, total / BENCH_RATE + b) for a, b in clip_truth[index]]
            gap = np.zeros((int(rng.uniform(0.6, 1.5) * BENCH_RATE), 2), dtype=np.float32)
            parts += [clip.astype(np.float32), gap]
            total += len(clip) + len(gap)
            if total >= minutes * 60 * BENCH_RATE:
                break
    pcm = (np.clip(np.concatenate(parts), -1, 1 - 2 ** -15) * 32768).astype("<i2")
    part = mp3.with_suffix(".part.mp3")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "s16le", "-ar", str(BENCH_RATE),
                    "-ac", "2", "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", "128k", str(part)],
                   input=pcm.tobytes(), check=True)
    if clip_truth is not None:
        truth_json.write_text(json.dumps(truth))
    part.rename(mp3)
    return mp3, description, truth if clip_truth is not None else None


# --- timing helpers -------------------------------------------------------------------------

def _timed(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def _run(command: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def best_of(repeats: int, functions: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best wall time of each function; the functions take turns, so load affects all alike."""
    best = {name: float("inf") for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            best[name] = min(best[name], _timed(function)[0])
    return best


# --- (a) convert ----------------------------------------------------------------------------

def bench_convert(mp3: Path, workdir: Path) -> dict:
    ours_cli, ours_lib, theirs = workdir / "ours_cli.wav", workdir / "ours.wav", workdir / "ffmpeg.wav"
    times = best_of(3, {
        "ffmpeg": lambda: _run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(mp3), "-ar", "16000",
                                "-ac", "1", "-c:a", "pcm_s16le", str(theirs)]),
        "ours_cli": lambda: _run([sys.executable, "-m", "tala.audio.convert", str(mp3), str(ours_cli)]),
        "ours_lib": lambda: convert_file(mp3, ours_lib, progress=False),
    })
    ours, _ = sf.read(ours_lib, dtype="float32")
    ffmpeg, _ = sf.read(theirs, dtype="float32")
    n = min(len(ours), len(ffmpeg))
    difference_db = 10 * np.log10(np.mean((ours[:n] - ffmpeg[:n]) ** 2) / np.mean(ours[:n] ** 2))
    return {**times, "identical_cli_lib": ours_cli.read_bytes() == ours_lib.read_bytes(),
            "length_ours": len(ours), "length_ffmpeg": len(ffmpeg), "difference_db": difference_db,
            "wav": ours_lib}


# --- (b) segment ----------------------------------------------------------------------------

def ours_raw_ranges_ms(wav: Path) -> np.ndarray:
    levels = read_frame_levels_db(wav)
    ranges = nonsilent_ranges(levels.levels_db, levels.hop_s, THRESHOLD_DB, MIN_SILENCE_MS / 1000,
                              levels.frame_s, total_hops=round(levels.duration_s / levels.hop_s))
    return ranges * levels.hop_s * 1000


def ours_extended_ranges_ms(wav: Path) -> np.ndarray:
    """The raw ranges after the edge extension of find_spans, without the min/max span rules."""
    levels = read_frame_levels_db(wav)
    spans = find_spans(levels.levels_db, levels.hop_s, THRESHOLD_DB, MIN_SILENCE_MS / 1000, 0.0, 1e9,
                       frame_s=levels.frame_s, duration_s=levels.duration_s)
    return np.array([(s.start, s.end) for s in spans]).reshape(-1, 2) * 1000


def ours_segment(wav: Path) -> list:
    levels = read_frame_levels_db(wav)
    return find_spans(levels.levels_db, levels.hop_s, frame_s=levels.frame_s, duration_s=levels.duration_s)


def pydub_ranges_ms(wav: Path) -> np.ndarray:
    from pydub import AudioSegment
    from pydub.silence import detect_nonsilent

    segment = AudioSegment.from_wav(str(wav))
    return np.array(detect_nonsilent(segment, min_silence_len=MIN_SILENCE_MS, silence_thresh=THRESHOLD_DB,
                                     seek_step=1), dtype=float).reshape(-1, 2)


def pydub_rule_numpy_ms(wav: Path) -> np.ndarray:
    """pydub's detect_nonsilent(seek_step=1) rule, vectorized: a 500 ms window is silent when its
    RMS (over int16 samples, 1 ms steps) is at most the threshold; silence = union of such windows."""
    pcm, rate = sf.read(wav, dtype="int16")
    ms = rate // 1000
    n_ms = len(pcm) // ms
    energy = np.square(pcm[: n_ms * ms].astype(np.float64)).reshape(n_ms, ms).sum(axis=1)
    cumulative = np.concatenate([[0.0], np.cumsum(energy)])
    window_rms = np.sqrt((cumulative[MIN_SILENCE_MS:] - cumulative[:-MIN_SILENCE_MS]) / (MIN_SILENCE_MS * ms))
    silent_start = window_rms <= 10 ** (THRESHOLD_DB / 20) * 32768
    covered = np.convolve(silent_start.astype(np.int32), np.ones(MIN_SILENCE_MS, np.int32))[:n_ms] > 0
    edges = np.diff(np.concatenate([[1], covered.astype(np.int8), [1]]))
    starts, ends = np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)
    return np.stack([starts, ends], axis=1).astype(float)


def edge_agreement(ours: np.ndarray, reference: np.ndarray, tolerance_ms: float) -> dict:
    """Each reference start (end) against the nearest of our starts (ends)."""
    differences = []
    for column in (0, 1):
        if len(ours) == 0:
            differences += [np.inf] * len(reference)
            continue
        for edge in reference[:, column]:
            differences.append(float(np.min(np.abs(ours[:, column] - edge))))
    differences = np.array(differences)
    return {"ranges_ours": len(ours), "ranges_reference": len(reference), "edges": len(differences),
            "within": int(np.sum(differences <= tolerance_ms)),
            "max_ms": float(differences.max()) if len(differences) else 0.0,
            "median_ms": float(np.median(differences)) if len(differences) else 0.0}


def truth_scores(ranges_ms: np.ndarray, truth: list[tuple[float, float]], min_gap_s: float = 0.6) -> dict:
    """How a method's non-silent ranges match the true speech times.

    Edge errors are measured at the true pauses of at least ``min_gap_s`` (where both methods
    must put an edge), signed as method - truth; "speech lost" is true speech that the method
    calls silence, "clipped" counts headings and verses with a range edge more than 20 ms inside.
    """
    speech = np.array(truth) * 1000
    gaps = speech[1:, 0] - speech[:-1, 1]
    starts = speech[1:, 0][gaps >= min_gap_s * 1000]
    ends = speech[:-1, 1][gaps >= min_gap_s * 1000]
    start_errors = np.array([ranges_ms[np.argmin(np.abs(ranges_ms[:, 0] - t)), 0] - t for t in starts])
    end_errors = np.array([ranges_ms[np.argmin(np.abs(ranges_ms[:, 1] - t)), 1] - t for t in ends])
    covered = 0.0
    for a, b in speech:
        overlap = np.minimum(ranges_ms[:, 1], b) - np.maximum(ranges_ms[:, 0], a)
        covered += float(np.sum(np.clip(overlap, 0, None)))
    edges = ranges_ms.ravel()
    inside = [(a, b) for a, b in speech if np.any((edges > a + 20) & (edges < b - 20))]
    errors = np.abs(np.concatenate([start_errors, end_errors]))
    return {"edges": len(errors), "within_10": int(np.sum(errors <= 10)), "within_20": int(np.sum(errors <= 20)),
            "median_start": float(np.median(start_errors)), "median_end": float(np.median(end_errors)),
            "lost_ms": float(np.sum(speech[:, 1] - speech[:, 0]) - covered), "clipped": len(inside),
            "intervals": len(speech)}


def bench_segment(wav: Path, skip_pydub: bool) -> dict:
    cli = [sys.executable, "-m", "tala.audio.segment", str(wav), str(wav.with_suffix(".tsv"))]
    times = best_of(3, {
        "ours_lib": lambda: ours_segment(wav),
        "ours_cli": lambda: _run(cli),
        "pydub_rule_numpy": lambda: pydub_rule_numpy_ms(wav),
    })
    ours = ours_raw_ranges_ms(wav)
    result = {**times, "ours_ranges": ours, "spans": len(ours_segment(wav)),
              "ours_extended": ours_extended_ranges_ms(wav)}
    numpy_rule = pydub_rule_numpy_ms(wav)
    if not skip_pydub:
        result["pydub"], pydub = _timed(lambda: pydub_ranges_ms(wav))
        result["agree_ours"] = edge_agreement(ours, pydub, EDGE_TOLERANCE_MS)
        result["agree_numpy_rule"] = edge_agreement(numpy_rule, pydub, 0)
        result["disagreements"] = _worst_disagreements(ours, pydub)
        result["pydub_ranges"] = pydub
    return result


def _worst_disagreements(ours: np.ndarray, reference: np.ndarray, count: int = 3) -> list[tuple[float, str]]:
    """The reference edges farthest from any of ours: (edge in ms, description)."""
    rows = []
    for column, name in ((0, "start"), (1, "end")):
        for edge in reference[:, column]:
            nearest = ours[np.argmin(np.abs(ours[:, column] - edge)), column]
            text = f"pydub {name} at {edge / 1000:.3f} s, nearest of ours {(nearest - edge) / 1000:+.3f} s away"
            rows.append((abs(nearest - edge), edge, text))
    return [(edge, text) for _, edge, text in sorted(rows, reverse=True)[:count]]


def _true_pause_at(edge_ms: float, truth: list[tuple[float, float]]) -> str:
    speech = np.array(truth) * 1000
    gaps = list(zip(speech[:-1, 1], speech[1:, 0]))
    end, start = min(gaps, key=lambda gap: min(abs(gap[0] - edge_ms), abs(gap[1] - edge_ms)))
    return f"true pause there: {(start - end) / 1000:.3f} s"


# --- report ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="audio length (default: %(default)s)")
    parser.add_argument("--skip-pydub", action="store_true", help="skip the slow pydub run")
    args = parser.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("bench_frontend: ffmpeg is not installed; nothing to compare against")
        return 0

    mp3, description, truth = build_bench_mp3(args.minutes)
    duration = probe_audio(mp3).duration_s
    print(f"audio: {duration / 60:.1f} min of {description}, 44.1 kHz stereo MP3 128 kbps ({mp3.name})")
    ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split()[2]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"ffmpeg {ffmpeg_version}")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        convert = bench_convert(mp3, workdir)
        segment = bench_segment(convert["wav"], args.skip_pydub)

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    cli_ratio = convert["ffmpeg"] / convert["ours_cli"]
    lib_ratio = convert["ffmpeg"] / convert["ours_lib"]
    rows = [
        ("convert (CLI vs CLI)", f"{convert['ours_cli']:.3f} s", f"ffmpeg {convert['ffmpeg']:.3f} s",
         f"{cli_ratio:.2f}x", f">= {CONVERT_GOAL}x", verdict(cli_ratio >= CONVERT_GOAL)),
        ("convert (in-process)", f"{convert['ours_lib']:.3f} s", f"ffmpeg {convert['ffmpeg']:.3f} s",
         f"{lib_ratio:.2f}x", f">= {CONVERT_GOAL}x", verdict(lib_ratio >= CONVERT_GOAL)),
    ]
    if "pydub" in segment:
        lib_speedup = segment["pydub"] / segment["ours_lib"]
        cli_speedup = segment["pydub"] / segment["ours_cli"]
        rows += [
            ("segment (in-process)", f"{segment['ours_lib']:.3f} s", f"pydub {segment['pydub']:.1f} s",
             f"{lib_speedup:.0f}x", f">= {SEGMENT_GOAL:.0f}x", verdict(lib_speedup >= SEGMENT_GOAL)),
            # Python start-up and imports (~0.12 s) dominate the CLI's time on this file size.
            ("segment (CLI)", f"{segment['ours_cli']:.3f} s", f"pydub {segment['pydub']:.1f} s",
             f"{cli_speedup:.0f}x", "(info)", ""),
            ("pydub rule in numpy", f"{segment['pydub_rule_numpy']:.3f} s", f"pydub {segment['pydub']:.1f} s",
             f"{segment['pydub'] / segment['pydub_rule_numpy']:.0f}x", "", ""),
        ]
    header = ("step", "ours", "reference", "ratio", "goal", "result")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())

    print(f"\nconvert output: {convert['length_ours']} samples (ffmpeg: {convert['length_ffmpeg']}), "
          f"ours - ffmpeg = {convert['difference_db']:.1f} dB re signal (resampler filters differ), "
          f"CLI and in-process outputs identical: {convert['identical_cli_lib']}")
    print(f"segment: {len(segment['ours_ranges'])} raw non-silent ranges, {segment['spans']} spans after "
          f"the 2-120 s rules")
    if "agree_ours" in segment:
        ours, rule = segment["agree_ours"], segment["agree_numpy_rule"]
        ok = ours["within"] == ours["edges"]
        print(f"edges vs pydub ({ours['ranges_reference']} ranges, ours {ours['ranges_ours']}): "
              f"{ours['within']}/{ours['edges']} within {EDGE_TOLERANCE_MS} ms, median {ours['median_ms']:.0f} ms, "
              f"max {ours['max_ms']:.0f} ms  [{verdict(ok)}]")
        for edge, text in segment["disagreements"]:
            print(f"    largest: {text}" + (f" ({_true_pause_at(edge, truth)})" if truth else ""))
        print(f"pydub's window rule re-implemented in numpy vs pydub: {rule['within']}/{rule['edges']} "
              f"edges identical, max {rule['max_ms']:.0f} ms (so the rule is the whole difference)")
    else:
        print("pydub skipped (--skip-pydub)")
    if truth:
        print(f"\nagainst the demo's true verse times ({len(truth)} headings/verses; edges at pauses >= 0.6 s; "
              f"signed errors = method - truth):")
        methods = {"ours, raw (-40 dB frames)": segment["ours_ranges"],
                   "ours, edges extended": segment["ours_extended"]}
        if "pydub_ranges" in segment:
            methods["pydub detect_nonsilent"] = segment["pydub_ranges"]
        for name, ranges in methods.items():
            score = truth_scores(ranges, truth)
            print(f"  {name:26s} {score['within_10']}/{score['edges']} edges within 10 ms, "
                  f"{score['within_20']} within 20 ms; median start {score['median_start']:+.0f} ms, "
                  f"end {score['median_end']:+.0f} ms; speech lost {score['lost_ms'] / 1000:.2f} s; "
                  f"{score['clipped']}/{score['intervals']} verses clipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
