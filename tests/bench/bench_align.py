"""Benchmark of tala.align.align_transcript: an hour-long chapter, the kernel against torchaudio's size, text-to-text.

    PYTHONPATH=scripts .venv/bin/python tests/bench/bench_align.py [--hours 1] [--skip-hour]

1. *One hour.* The four Samoan demo chapters are transcribed with the demo model
   (resources/demo/model), then repeated one after the other to ``--hours`` (emissions, greedy
   words, WAV and verses shifted; every chapter keeps its spoken heading, which is not in the
   text): ~180,000 frames, ~45,000 tokens. ``python -m tala.align.align_transcript`` runs on it with the workflow's
   defaults (ctc, edge refinement) in a subprocess: wall time, peak RSS (``ru_maxrss``), the band,
   and the verse boundary errors against the corpus' ground truth, shifted likewise (drift would
   show there). Goals: peak RSS <= 1 GiB; boundary error median <= 40 ms, p95 <= 120 ms.
2. *Kernel.* T = 30,000 frames, L = 3,000 tokens (random emissions with a planted path), the full
   exact Viterbi: wall time against torchaudio.functional.forced_align's 0.9 s measured on this CPU
   (and the same input through torchaudio, when it imports, paths compared).
3. *Text-to-text.* 10,000 text words against 10,000 transcript words: goal < 1 s.

``--exact`` also aligns the long chapter on the whole reachable band (the exact Viterbi, ~T x S
cells: minutes) and checks that the anchored band gave the same verse times.

Each measurement runs in its own interpreter (peak RSS is its own); numba's compiled kernels are
cached on disk, so a first run compiles them once, outside the timings. Exits 0 whether or not
the goals are met, 1 when a child failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from measure import mark, peak_rss_mb, print_table, run_measured  # noqa: E402  (tests/bench/measure.py)

CACHE = REPO / ".bench" / "align"
DEMO = REPO / "resources" / "demo"
LANGUAGE, ADAPTER = "samoan", "smo"
TORCHAUDIO_REFERENCE_S = 0.9
RSS_GOAL_MB = 1024
MEDIAN_GOAL_S, P95_GOAL_S = 0.040, 0.120
TEXT_GOAL_S = 1.0
RECIPE_VERSION = 1


# --- inputs -----------------------------------------------------------------------------------

def demo_chapters() -> list[dict]:
    """The Samoan demo chapters transcribed by the demo model (cached)."""
    from tala.audio.convert import convert_file
    from tala.asr.transcribe import transcribe_file
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    folder = CACHE / "chapters"
    folder.mkdir(parents=True, exist_ok=True)
    chapters = []
    for truth_path in sorted((DEMO / LANGUAGE / "truth").glob("*.json")):
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        stem = folder / truth_path.stem
        wav, asr, emissions = stem.with_suffix(".wav"), stem.with_suffix(".json"), stem.with_suffix(".npy")
        if not asr.is_file():
            convert_file(DEMO / LANGUAGE / truth["audio"], wav)
            transcribe_file(wav, asr, emissions, model=str(DEMO / "model"), adapter=ADAPTER, progress=False)
        chapters.append({"truth": truth, "wav": wav, "asr": json.loads(asr.read_text(encoding="utf-8")),
                         "emissions": emissions})
    return chapters


def _normalize(text: str) -> str:
    import re
    import unicodedata

    text = re.sub(r"[ʻ'‘`’]", "ʻ", unicodedata.normalize("NFC", text).lower())
    kept = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(kept.split())


def long_chapter(hours: float) -> dict[str, Path]:
    """The demo chapters repeated to ``hours``: asr JSON, emissions, WAV, text JSON, truth (cached)."""
    import soundfile as sf

    folder = CACHE / f"long-{hours:g}h-v{RECIPE_VERSION}"
    paths = {"asr": folder / "long.json", "emissions": folder / "long.npy", "wav": folder / "long.wav",
             "text": folder / "long.text.json", "truth": folder / "long.truth.json"}
    if all(p.is_file() for p in paths.values()):
        return paths
    chapters = demo_chapters()
    folder.mkdir(parents=True, exist_ok=True)
    first_asr = chapters[0]["asr"]
    frame_s, rate = first_asr["frame_s"], first_asr["sample_rate"]
    samples_per_frame = round(frame_s * rate)
    total_frames = round(hours * 3600 / frame_s)
    blocks, words, verses, truth, offset_frames, index = [], [], [], [], 0, 0
    with sf.SoundFile(str(paths["wav"]), "w", rate, 1, "PCM_16", format="WAV") as wav_out:
        while offset_frames < total_frames:
            chapter = chapters[index % len(chapters)]
            index += 1
            emissions = np.load(chapter["emissions"])
            audio, _ = sf.read(str(chapter["wav"]), dtype="int16")
            # Whole frames only, so that the WAV and the emissions stay on one grid.
            audio = np.pad(audio, (0, max(0, len(emissions) * samples_per_frame - len(audio))))
            audio = audio[:len(emissions) * samples_per_frame]
            offset_s = offset_frames * frame_s
            blocks.append(emissions)
            wav_out.write(audio)
            words += [dict(w, start=round(w["start"] + offset_s, 6), end=round(w["end"] + offset_s, 6))
                      for w in chapter["asr"]["words"]]
            for verse in chapter["truth"]["verses"]:
                number = len(verses) + 1
                verses.append({"number": number, "label": str(number), "text": verse["text"],
                               "normalized": _normalize(verse["text"])})
                truth.append({"number": number, "start": verse["start"] + offset_s, "end": verse["end"] + offset_s})
            offset_frames += len(emissions)
    emissions = np.concatenate(blocks)
    np.save(paths["emissions"], emissions)
    asr = dict(first_asr, audio=str(paths["wav"]), words=words, text=" ".join(w["word"] for w in words),
               num_frames=len(emissions), num_samples=len(emissions) * samples_per_frame,
               duration_s=len(emissions) * frame_s)
    paths["asr"].write_text(json.dumps(asr, ensure_ascii=False), encoding="utf-8")
    paths["text"].write_text(json.dumps({"recording": "long", "verses": verses}, ensure_ascii=False), encoding="utf-8")
    paths["truth"].write_text(json.dumps({"verses": truth}), encoding="utf-8")
    return paths


def planted_case(frames: int, tokens: int, vocab: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float16 log-probabilities where a random token sequence is read at a steady pace, and the tokens."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(1, vocab, tokens)
    labels = np.zeros(frames, np.int64)
    onsets = np.sort(rng.choice(np.arange(frames // tokens // 2, frames - 1), tokens, replace=False))
    labels[onsets] = targets
    logits = rng.normal(0, 1.5, (frames, vocab))
    logits[np.arange(frames), labels] += 4.0
    logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return logits.astype(np.float16), targets


# --- the children -----------------------------------------------------------------------------

def child(mode: str, hours: float) -> dict:
    if mode == "imports":
        from tala.align import align_transcript as align  # noqa: F401

        return {}
    if mode in ("hour", "hour-checkpointed", "hour-exact"):
        from tala.align import ctc_align
        from tala.align.align_transcript import FULL_BAND_CELLS, align_chapter, main

        paths = long_chapter(hours)
        inputs = [str(paths["asr"]), str(paths["emissions"]), str(paths["text"])]
        started = time.perf_counter()
        if mode == "hour":  # the command line, as the workflow runs it
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                out = Path(tmp) / "aligned.json"
                if main([*inputs, str(out)]) != 0:
                    raise RuntimeError("align failed")
                result = json.loads(out.read_text(encoding="utf-8"))
        else:
            if mode == "hour-checkpointed":
                ctc_align.MAX_BACKPOINTER_BYTES = 0  # always the two-pass checkpointed Viterbi
            # hour-exact: the whole reachable band, i.e. the exact Viterbi.
            result = align_chapter(*inputs, full_band_cells=(1 << 62) if mode == "hour-exact" else FULL_BAND_CELLS)
        wall = time.perf_counter() - started
        truth = json.loads(paths["truth"].read_text(encoding="utf-8"))["verses"]
        errors = np.abs(np.array([[v["start"] - t["start"], v["end"] - t["end"]]
                                  for v, t in zip(result["verses"], truth)]).ravel())
        return {"wall_s": wall, "frames": round(result["duration_s"] / result["frame_s"]),
                "verses": len(result["verses"]), "band": result["settings"]["band"],
                "median_s": float(np.median(errors)), "p95_s": float(np.percentile(errors, 95)),
                "max_s": float(errors.max()), "chapter_cer": result["summary"]["chapter_cer"],
                "star_s": result["summary"]["star_s"],
                "times": [[v["start"], v["end"]] for v in result["verses"]]}
    if mode == "kernel":
        from tala.align import ctc_align

        emissions, tokens = planted_case(30_000, 3_000)
        topology = ctc_align.make_topology(tokens, 0)
        ctc_align.viterbi(emissions[:50], ctc_align.make_topology(tokens[:5], 0))  # load the compiled kernel
        started = time.perf_counter()
        path = ctc_align.viterbi(emissions, topology).path
        wall = time.perf_counter() - started
        result = {"wall_s": wall, "torchaudio": None}
        try:
            import torch
            import torchaudio.functional as F
        except Exception as err:  # noqa: BLE001 (any import failure means "not available")
            result["torchaudio_error"] = f"{type(err).__name__}: {err}"[:200]
            return result
        log_probs = torch.from_numpy(emissions.astype(np.float32))[None]
        targets = torch.from_numpy(tokens.astype(np.int32))[None]
        started = time.perf_counter()
        aligned, _ = F.forced_align(log_probs, targets, blank=0)
        torch_wall = time.perf_counter() - started
        ours = topology.labels[path]
        theirs = aligned[0].numpy()
        result["torchaudio"] = {"wall_s": torch_wall, "same_path": bool(np.array_equal(ours, theirs)),
                                "frames_differing": int(np.count_nonzero(ours != theirs))}
        return result
    if mode == "text":
        from tala.align import text_align

        rng = np.random.default_rng(0)
        lexicon = ["".join(rng.choice(list("aeioulmnstfgv"), int(rng.integers(1, 10)))) for _ in range(4000)]
        ref = list(rng.choice(lexicon, 10_000))
        hyp = [w[:-1] + "x" if rng.random() < 0.1 else w for w in ref]
        times = np.arange(len(hyp)) * 0.35
        text_align.align_words(ref[:10], hyp[:10], times[:10], times[:10] + 0.3)
        started = time.perf_counter()
        result = text_align.align_words(ref, hyp, times, times + 0.3)
        wall = time.perf_counter() - started
        return {"wall_s": wall, "matched": float(result.matched.mean())}
    raise ValueError(mode)


def run_child(mode: str, hours: float) -> dict:
    """One measurement in a fresh interpreter, with its peak RSS (MB) from os.wait4."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    command = [sys.executable, __file__, "--child", mode, "--hours", str(hours)]
    code, result, stderr, usage = run_measured(command, env)
    if code != 0:
        return {"error": f"{mode} failed ({code}): {stderr.strip().splitlines()[-1] if stderr.strip() else ''}"}
    result["peak_rss_mb"] = peak_rss_mb(usage)
    return result


# --- the report -------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1.0, help="length of the long chapter (default 1)")
    parser.add_argument("--skip-hour", action="store_true", help="kernel and text-to-text only")
    parser.add_argument("--exact", action="store_true",
                        help="also align the long chapter on the full band (exact Viterbi; minutes) and compare")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.hours)))
        return 0

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"bench_align: {platform.processor() or platform.machine()}, {os.cpu_count()} cores", file=sys.stderr)
    # Compiles (and caches) the numba kernels, so no timed run pays for it.
    run_child("kernel", args.hours)
    rows = [("", "measured", "goal", "")]
    failed = False
    if not args.skip_hour:
        if not (DEMO / "model" / "config.json").is_file():
            rows.append((f"{args.hours:g} h chapter", "skipped: no demo model", "", ""))
        else:
            long_chapter(args.hours)  # built (cached) outside the measured child
            base = run_child("imports", args.hours)
            hour = run_child("hour", args.hours)
            checkpointed = run_child("hour-checkpointed", args.hours)
            exact = run_child("hour-exact", args.hours) if args.exact else None
            if "error" in hour or "error" in checkpointed:
                failed = True
                hour = hour if "error" in hour else checkpointed
                rows.append((f"{args.hours:g} h chapter", hour["error"], "", "MISS"))
            else:
                label = f"{args.hours:g} h"
                band = hour["band"]
                rows += [
                    (f"{label}: frames / verses", f"{hour['frames']} / {hour['verses']}", "", ""),
                    (f"{label}: wall time (s)", f"{hour['wall_s']:.1f}", "", ""),
                    (f"{label}: band", f"{band['band']}, {band.get('band_s', '-')} s, {band['cells'] / 1e6:.0f} M cells"
                     + (f", widened {band['widened']}x" if band.get("widened") else ""), "", ""),
                    (f"{label}: peak RSS (MB)", f"{hour['peak_rss_mb']:.0f} (imports {base['peak_rss_mb']:.0f})",
                     f"<= {RSS_GOAL_MB}", mark(hour["peak_rss_mb"] <= RSS_GOAL_MB)),
                    (f"{label}, checkpointed: wall time (s)", f"{checkpointed['wall_s']:.1f}", "", ""),
                    (f"{label}, checkpointed: peak RSS (MB)", f"{checkpointed['peak_rss_mb']:.0f}",
                     f"<= {RSS_GOAL_MB}", mark(checkpointed["peak_rss_mb"] <= RSS_GOAL_MB)),
                    (f"{label}, checkpointed: same verse times", str(checkpointed["times"] == hour["times"]), "True",
                     mark(checkpointed["times"] == hour["times"])),
                ]
                if exact is not None and "error" not in exact:
                    rows += [
                        (f"{label}, exact (full band): wall time (s)", f"{exact['wall_s']:.1f}", "", ""),
                        (f"{label}, exact (full band): peak RSS (MB)", f"{exact['peak_rss_mb']:.0f}", "", ""),
                        (f"{label}, exact: same verse times as the band", str(exact["times"] == hour["times"]),
                         "True", mark(exact["times"] == hour["times"])),
                    ]
                rows += [
                    (f"{label}: boundary error median (ms)", f"{hour['median_s'] * 1000:.1f}",
                     f"<= {MEDIAN_GOAL_S * 1000:.0f}", mark(hour["median_s"] <= MEDIAN_GOAL_S)),
                    (f"{label}: boundary error p95 / max (ms)",
                     f"{hour['p95_s'] * 1000:.1f} / {hour['max_s'] * 1000:.0f}",
                     f"<= {P95_GOAL_S * 1000:.0f}", mark(hour["p95_s"] <= P95_GOAL_S)),
                    (f"{label}: chapter CER / star (s)", f"{hour['chapter_cer']:.3f} / {hour['star_s']:.0f}", "", ""),
                ]
    kernel = run_child("kernel", args.hours)
    if "error" in kernel:
        failed = True
        rows.append(("kernel T=30,000 L=3,000", kernel["error"], "", "MISS"))
    else:
        rows.append(("kernel T=30,000 L=3,000 (s)", f"{kernel['wall_s']:.2f}",
                     f"torchaudio {TORCHAUDIO_REFERENCE_S} s (reference)",
                     f"{kernel['wall_s'] / TORCHAUDIO_REFERENCE_S:.2f}x"))
        rows.append(("kernel peak RSS (MB)", f"{kernel['peak_rss_mb']:.0f}", "", ""))
        torch_result = kernel.get("torchaudio")
        if torch_result is None:
            rows.append(("torchaudio", "not available", "", ""))
            print("torchaudio: not available")
        else:
            rows.append(("torchaudio forced_align, same input (s)", f"{torch_result['wall_s']:.2f}",
                         "same path", mark(torch_result["same_path"])
                         + ("" if torch_result["same_path"] else f" ({torch_result['frames_differing']} frames)")))
    text = run_child("text", args.hours)
    if "error" in text:
        failed = True
        rows.append(("text-to-text 10,000 words", text["error"], "", "MISS"))
    else:
        rows.append(("text-to-text 10,000 x 10,000 words (s)", f"{text['wall_s']:.3f}", f"< {TEXT_GOAL_S:g}",
                     mark(text["wall_s"] < TEXT_GOAL_S)))
    print_table(rows, load_before, started)
    return 1 if failed else 0  # a child that could not run (a missed goal alone exits 0)


if __name__ == "__main__":
    sys.exit(main())
