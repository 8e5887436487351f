"""Benchmark of tala.asr.transcribe against transformers' ASR pipeline, on the same model and audio.

    PYTHONPATH=scripts .venv/bin/python tests/bench/bench_transcribe.py [--minutes 10] [--hour]
                                                                       [--batch-size N] [--skip-pipeline]

The model is base-sized (Wav2Vec2Config defaults, ~95 M parameters) in MMS style
(``do_stable_layer_norm``, ``feat_extract_norm="layer"``, ``adapter_attn_dim=16``, a Samoan
character vocabulary) with seeded random weights, built once into ``.bench/transcribe/``. Random
weights make the transcripts meaningless, so only time, memory and the number of frames are
compared.

The audio is the eight demo chapters (resources/demo/*/audio/*) converted to 16 kHz mono and
repeated to ``--minutes`` (default 10), cached in ``.bench/transcribe/``. ``--hour`` adds a
one-hour file (the same, repeated) to show how peak memory grows with the length of a recording.

Each run is its own subprocess, so that its peak resident set (``ru_maxrss`` from ``os.wait4``)
is its own:
  tala      ``transcribe_file(..., chunk_s=30, context_s=2)`` (the workflow's defaults; batch size 1 on a CPU)
  pipeline  ``pipeline("automatic-speech-recognition", model=..., chunk_length_s=30)`` called on the
            WAV's path, with its default stride (chunk_length_s / 6 = 5 s each side), batch size 1
  footprint the model loaded and run on one second of audio: the baseline for "model + 1 GiB"
Throughput is seconds of audio per second of wall time, model loading included for both.
Goals: tala >= 1.5x the pipeline's throughput; tala's peak RSS <= footprint + 1 GiB and flat in
the recording's length (the 1-hour file within 100 MB of the 10-minute one). Exits 0 always.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from measure import mark, peak_rss_mb, print_table, run_measured  # noqa: E402  (tests/bench/measure.py)

CACHE = REPO / ".bench" / "transcribe"
RATE = 16_000
THROUGHPUT_GOAL = 1.5
MEMORY_HEADROOM_MB = 1024
FLAT_TOLERANCE_MB = 100
LETTERS = "aefgilmnopstuvhkrʻāēīōū"
MODEL_SEED = 1234


# --- the model and the audio ------------------------------------------------------------------

def build_model(folder: Path) -> Path:
    """A base-sized MMS-style CTC model with seeded random weights (cached)."""
    stamp = folder / "bench-stamp.json"
    recipe = {"seed": MODEL_SEED, "letters": LETTERS, "version": 1}
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == recipe:
        return folder
    import torch
    from safetensors.torch import save_file
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    folder.mkdir(parents=True, exist_ok=True)
    tokens = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for letter in LETTERS:
        tokens[letter] = len(tokens)
    (folder / "vocab.json").write_text(json.dumps({"smo": tokens}, ensure_ascii=False), encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), target_lang="smo")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(MODEL_SEED)
    config = Wav2Vec2Config(vocab_size=len(tokens), do_stable_layer_norm=True, feat_extract_norm="layer",
                            adapter_attn_dim=16, pad_token_id=0)
    model = Wav2Vec2ForCTC(config).eval()
    model.save_pretrained(folder)
    # The adapter file holds the weights the model already has: both tools run the same model.
    save_file({k: v.detach().contiguous() for k, v in model._get_adapters().items()},
              str(folder / "adapter.smo.safetensors"))
    stamp.write_text(json.dumps(recipe), encoding="utf-8")
    return folder


def _demo_sources() -> list[Path]:
    return sorted(p for p in (REPO / "resources" / "demo").glob("*/audio/*") if p.is_file())


def demo_speech() -> np.ndarray:
    """The demo chapters at 16 kHz mono, one after the other (int16)."""
    from tala.audio.convert import convert_file

    sources = _demo_sources()
    if not sources:
        raise SystemExit("no demo audio under resources/demo/*/audio")
    key = hashlib.sha256(json.dumps([(p.name, p.stat().st_size) for p in sources]).encode()).hexdigest()[:12]
    joined = CACHE / f"demo-{key}.wav"
    if not joined.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        pieces = []
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            for i, src in enumerate(sources):
                wav = Path(tmp) / f"{i}.wav"
                convert_file(src, wav)
                pieces.append(sf.read(str(wav), dtype="int16")[0])
        sf.write(str(joined), np.concatenate(pieces), RATE, subtype="PCM_16", format="WAV")
    return sf.read(str(joined), dtype="int16")[0]


def repeated_audio(speech: np.ndarray, seconds: float, name: str) -> Path:
    """``speech`` repeated to ``seconds`` (whole repetitions, then cut), written in blocks."""
    path = CACHE / name
    total = round(seconds * RATE)
    if path.is_file() and sf.info(str(path)).frames == total:
        return path
    with sf.SoundFile(str(path), "w", RATE, 1, "PCM_16", format="WAV") as out:
        written = 0
        while written < total:
            block = speech[:total - written]
            out.write(block)
            written += len(block)
    return path


# --- the children -----------------------------------------------------------------------------

def child(mode: str, audio: str, model: str, batch_size: int | None) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    duration = sf.info(audio).frames / RATE
    if mode == "footprint":
        # The model loaded as tala loads it, plus one forward pass on a second of audio, so that
        # the runtime's own buffers (oneDNN, allocator pools) count as footprint too.
        import torch

        from tala.hub import load_ctc_model

        ctc_model, _ = load_ctc_model(model, "smo", "cpu")
        with torch.inference_mode():
            ctc_model(torch.zeros(1, RATE))
        return {"mode": mode}
    if mode == "tala":
        from tala.asr.transcribe import transcribe_file

        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            result = transcribe_file(audio, Path(tmp) / "out.json", Path(tmp) / "out.emissions.npy", model=model,
                                     adapter="smo", device="cpu", chunk_s=30, context_s=2, batch_size=batch_size,
                                     progress=False)
        wall = time.perf_counter() - started
        return {"mode": mode, "wall_s": wall, "audio_s": duration, "frames": result["num_frames"],
                "text_chars": len(result["text"])}
    if mode == "pipeline":
        from transformers import pipeline

        asr = pipeline("automatic-speech-recognition", model=model, chunk_length_s=30, device="cpu")
        frames = 0
        postprocess = asr.postprocess

        def counting_postprocess(model_outputs, *args, **kwargs):
            # The frames the pipeline keeps: each chunk's tokens minus its strides, as it cuts them.
            nonlocal frames
            for output in model_outputs:
                tokens = output["tokens"]
                total, left, right = output.get("stride", (tokens.shape[1], 0, 0))
                frames += min(tokens.shape[1], total - right) - left
            return postprocess(model_outputs, *args, **kwargs)

        asr.postprocess = counting_postprocess
        text = asr(audio)["text"]
        wall = time.perf_counter() - started
        return {"mode": mode, "wall_s": wall, "audio_s": duration, "frames": frames, "text_chars": len(text)}
    raise ValueError(mode)


def run_child(mode: str, audio: Path, model: Path, batch_size: int | None, threads: int) -> dict:
    """Run one measurement in a fresh interpreter; adds its own peak RSS (MB) from os.wait4."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO / "scripts"), OMP_NUM_THREADS=str(threads),
               TRANSFORMERS_VERBOSITY="error")
    command = [sys.executable, __file__, "--child", mode, "--audio", str(audio), "--model", str(model),
               *(["--batch-size", str(batch_size)] if batch_size is not None else [])]
    code, result, stderr, usage = run_measured(command, env)
    if code != 0:
        raise RuntimeError(f"{mode} failed ({code}):\n{stderr[-3000:]}")
    result["peak_rss_mb"] = peak_rss_mb(usage)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    return result


# --- the report -------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the main test file (default 10)")
    parser.add_argument("--hour", action="store_true", help="also measure peak memory on a 1-hour file")
    parser.add_argument("--batch-size", type=int, help="tala's windows per forward pass (default: tala's, 1 on a CPU)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch threads per run")
    parser.add_argument("--skip-pipeline", action="store_true", help="tala only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.audio, args.model, args.batch_size)))
        return 0

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    model = build_model(CACHE / "model-base")
    speech = demo_speech()
    main_audio = repeated_audio(speech, args.minutes * 60, f"speech-{args.minutes:g}min.wav")
    print(f"bench_transcribe: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} threads; model {model} (base size, random weights); "
          f"audio {args.minutes:g} min of demo speech", file=sys.stderr)

    footprint = run_child("footprint", main_audio, model, args.batch_size, args.threads)["peak_rss_mb"]
    runs = {"tala": run_child("tala", main_audio, model, args.batch_size, args.threads)}
    print(f"  tala:     {runs['tala']}", file=sys.stderr)
    if not args.skip_pipeline:
        runs["pipeline"] = run_child("pipeline", main_audio, model, args.batch_size, args.threads)
        print(f"  pipeline: {runs['pipeline']}", file=sys.stderr)
    hour = {}
    if args.hour:
        hour_audio = repeated_audio(speech, 3600, "speech-60min.wav")
        hour["tala"] = run_child("tala", hour_audio, model, args.batch_size, args.threads)
        print(f"  tala 1 h:     {hour['tala']}", file=sys.stderr)
        if not args.skip_pipeline:
            hour["pipeline"] = run_child("pipeline", hour_audio, model, args.batch_size, args.threads)
            print(f"  pipeline 1 h: {hour['pipeline']}", file=sys.stderr)

    speed = {name: run["audio_s"] / run["wall_s"] for name, run in runs.items()}
    cpu_speed = {name: run["audio_s"] / run["cpu_s"] for name, run in runs.items()}
    label = f"{args.minutes:g} min"
    rows = [("", "tala", "pipeline", "tala/pipeline", "goal", "")]
    if "pipeline" in runs:
        ratio = speed["tala"] / speed["pipeline"]
        rows.append((f"throughput, {label} (audio s/s)", f"{speed['tala']:.2f}", f"{speed['pipeline']:.2f}",
                     f"{ratio:.2f}x", f">= {THROUGHPUT_GOAL}x", mark(ratio >= THROUGHPUT_GOAL)))
        rows.append((f"wall time, {label} (s)", f"{runs['tala']['wall_s']:.1f}", f"{runs['pipeline']['wall_s']:.1f}",
                     "", "", ""))
        # CPU seconds are far less disturbed than wall time by other work on the machine.
        rows.append((f"audio s per CPU s, {label}", f"{cpu_speed['tala']:.2f}", f"{cpu_speed['pipeline']:.2f}",
                     f"{cpu_speed['tala'] / cpu_speed['pipeline']:.2f}x", "", ""))
    else:
        rows.append((f"throughput, {label} (audio s/s)", f"{speed['tala']:.2f}", "-", "", "", ""))
    pipe = runs.get("pipeline", {})
    rows.append((f"frames, {label}", str(runs["tala"]["frames"]), str(pipe.get("frames", "-")),
                 f"{runs['tala']['frames'] - pipe['frames']:+d}" if pipe else "", "", ""))
    rows.append(("model footprint (MB RSS)", f"{footprint:.0f}", f"{footprint:.0f}", "", "", ""))
    ours = runs["tala"]["peak_rss_mb"]
    rows.append((f"peak RSS, {label} (MB)", f"{ours:.0f}", f"{pipe.get('peak_rss_mb', float('nan')):.0f}",
                 "", f"<= {footprint + MEMORY_HEADROOM_MB:.0f}", mark(ours <= footprint + MEMORY_HEADROOM_MB)))
    if hour:
        ours_hour = hour["tala"]["peak_rss_mb"]
        pipe_hour = hour.get("pipeline", {})
        rows.append(("peak RSS, 1 h (MB)", f"{ours_hour:.0f}", f"{pipe_hour.get('peak_rss_mb', float('nan')):.0f}",
                     "", f"<= {footprint + MEMORY_HEADROOM_MB:.0f}",
                     mark(ours_hour <= footprint + MEMORY_HEADROOM_MB)))
        growth_pipe = (f"{pipe_hour['peak_rss_mb'] - pipe['peak_rss_mb']:+.0f}" if pipe_hour and pipe else "-")
        rows.append((f"peak RSS growth, {label} -> 1 h (MB)", f"{ours_hour - ours:+.0f}", growth_pipe, "",
                     f"<= {FLAT_TOLERANCE_MB}", mark(ours_hour - ours <= FLAT_TOLERANCE_MB)))
        rows.append(("throughput, 1 h (audio s/s)", f"{hour['tala']['audio_s'] / hour['tala']['wall_s']:.2f}",
                     f"{pipe_hour['audio_s'] / pipe_hour['wall_s']:.2f}" if pipe_hour else "-", "", "", ""))
        rows.append(("frames, 1 h", str(hour["tala"]["frames"]), str(pipe_hour.get("frames", "-")), "", "", ""))
    print_table(rows, load_before, started, "wall-time ratios are noisy (the CPU-time ratio much less so)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
