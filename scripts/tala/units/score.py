"""How good are a language's units? Scored against the letters of the forced alignment, beside a
k-means on MFCCs with the same k (step ``score_units``).

    python -m tala.units.score OUT.json OUT.html --language L --units U1.json ... --aligned A1.json ...
        --wavs W1.wav ... --segments S1.tsv ... [--motifs motif_analysis.json] [--kmeans kmeans.json]
        [--k 100] [--fit-hours 10] [--passes 1] [--batch-frames 10000] [--seed 0]

The forced alignment places every letter of the official text (``aligned/{rec}.json``, key
``letters``); each 20 ms unit frame whose centre falls in a letter's span is labelled with that
letter (frames in pauses, between words or in ``<star>`` audio are not scored). Over those frames,
as the HuBERT paper scores units against phones (Hsu et al. 2021, section IV-B): *letter purity*
(how well a unit predicts its letter, E_z max_y p(y|z)), *cluster purity* (how well a letter
predicts its unit, E_y max_z p(z|y)) and *PNMI* (the share of the letters' entropy the units
explain, I(y; z) / H(y)). Letters are not phones (one letter, several sounds; digraphs), so these
are lower bounds of the phone scores, but they compare models, layers and k on one corpus.

The baseline is the HuBERT paper's starting point: 39-dimensional MFCCs (13 + deltas + delta-deltas,
per-segment CMVN, :mod:`tala.units.mfcc`) on the same 50 Hz frame grid, clustered by the same
streaming k-means with the same k, seed, passes and sample size (``--fit-hours`` of the segments,
drawn as fit_kmeans draws them), computed here on the fly. Also for both: how many of the k units
occur, the entropy of the unit distribution and the mean run length.

Outputs: ``OUT.json`` (language, k, model, layer, ``model_units`` and ``mfcc_units`` each with the
scores (``letter_frames``: the frames scored) and statistics (``frames``: all unit frames), ``pnmi_ratio`` = model PNMI / MFCC PNMI, recordings and frames scored, the
top motifs of ``--motifs``) and ``OUT.html``, the same as tables. Deterministic.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

import numpy as np

import tala
from tala.errors import InputError, run_cli
from tala.fileio import read_json_object, write_json_atomic, write_text_atomic
from tala.units.features import Segment, log, open_wav, read_segment_audio, read_segments
from tala.units.fit_kmeans import sample_segments
from tala.units.kmeans import KMeansError, StreamingKMeans, assign
from tala.units.mfcc import mfcc_frames
from tala.units.quality import UnitLetterCounts, UnitStatistics

MFCC_DIM = 39
TOP_IN_HTML = 20


def read_letters(path: Path) -> tuple[str, list[tuple[str, float, float]]] | None:
    """(recording, letters) of an aligned chapter; None when it was rejected or has no letters."""
    record = read_json_object(path)
    if record.get("status") != "ok" or not record.get("letters"):
        return None
    try:
        letters = [(str(letter), float(start), float(end)) for letter, start, end in record["letters"]]
    except (TypeError, ValueError):
        raise InputError(path, "'letters' must be [letter, start, end] triples") from None
    return str(record.get("recording") or path.stem), letters


def fit_mfcc_kmeans(sample: list[Segment], wavs: dict[str, Path], *, k: int, passes: int, seed: int,
                    batch_frames: int, language: str) -> StreamingKMeans:
    kmeans = StreamingKMeans(k, MFCC_DIM, seed=seed, batch_frames=batch_frames)
    by_recording: dict[str, list[Segment]] = {}
    for segment in sample:
        by_recording.setdefault(segment.recording, []).append(segment)
    for _ in range(passes):
        for recording, segments in by_recording.items():
            with open_wav(wavs[recording]) as handle:
                for segment in segments:
                    kmeans.add(mfcc_frames(read_segment_audio(handle, segment)))
        try:
            kmeans.end_pass()
        except KMeansError as err:
            raise InputError(language, f"MFCC baseline with k = {k}: {err}") from None
    return kmeans


def score(units_files: list[Path], aligned_files: list[Path], wavs: dict[str, Path], segments: dict[str, list[Segment]],
          *, k: int, fit_hours: float | None, passes: int, batch_frames: int, seed: int, language: str) -> dict:
    letters = {}
    for path in aligned_files:
        found = read_letters(path)
        if found is not None:
            letters[found[0]] = found[1]
    all_segments = [s for rec in segments for s in segments[rec]]
    sample = sample_segments(all_segments, fit_hours, seed)
    if not sample:
        raise InputError(language, "no speech segments: nothing to score")
    mfcc_kmeans = fit_mfcc_kmeans(sample, wavs, k=k, passes=passes, seed=seed, batch_frames=batch_frames,
                                  language=language)
    centroids = mfcc_kmeans.centroids
    model_counts, mfcc_counts = UnitLetterCounts(k), UnitLetterCounts(k)
    model_stats, mfcc_stats = UnitStatistics(k), UnitStatistics(k)
    info, scored = {}, []
    for path in units_files:
        record = read_json_object(path)
        recording = str(record.get("recording") or path.stem)
        info = info or {key: record.get(key) for key in ("model", "layer", "k", "kmeans")}
        if record.get("k") != k:
            raise InputError(path, f"units of a k-means with k = {record.get('k')}, expected {k}")
        spans = letters.get(recording)
        with open_wav(wavs[recording]) as handle:
            for segment in record["segments"]:
                units = np.asarray(segment["units"], np.int64)
                model_stats.add(units)
                features = mfcc_frames(read_segment_audio(handle, Segment(recording, segment["start"], segment["end"])))
                mfcc_units = assign(features, centroids).astype(np.int64) if len(features) else units[:0]
                if len(mfcc_units) != len(units):
                    raise InputError(path, f"segment at {segment['start']} s has {len(units)} units but "
                                           f"{len(mfcc_units)} frames of audio: units from another audio file?")
                mfcc_stats.add(mfcc_units)
                if spans:
                    model_counts.add_spans(spans, segment["start"], units)
                    mfcc_counts.add_spans(spans, segment["start"], mfcc_units)
        if spans:
            scored.append(recording)
    model_scores = {**_letter_scores(model_counts), **model_stats.result()}
    mfcc_scores = {**_letter_scores(mfcc_counts), **mfcc_stats.result(),
                   "inertia_per_frame": round(mfcc_kmeans.last_pass_inertia
                                              / max(1, mfcc_kmeans.frames_seen // max(1, mfcc_kmeans.passes_done)), 6)}
    ratio = None
    if model_scores.get("pnmi") is not None and mfcc_scores.get("pnmi"):
        ratio = model_scores["pnmi"] / mfcc_scores["pnmi"]
    return {"language": language, "k": k, "model": info.get("model"), "layer": info.get("layer"),
            "kmeans": info.get("kmeans"), "recordings": len(units_files), "recordings_scored": len(scored),
            "frames_scored": model_scores["letter_frames"], "model_units": _rounded(model_scores),
            "mfcc_units": _rounded(mfcc_scores),
            "pnmi_ratio": None if ratio is None else round(ratio, 4),
            "baseline": {"features": "MFCC 13 + deltas + delta-deltas (39), per-segment CMVN, 50 Hz",
                         "fit_hours": fit_hours, "passes": passes, "seed": seed, "segments": len(sample)}}


def _letter_scores(counts: UnitLetterCounts) -> dict:
    """The scores against the letters, their frame count named apart from the units' own "frames"."""
    scores = counts.scores()
    scores["letter_frames"] = scores.pop("frames")
    return scores


def _rounded(scores: dict) -> dict:
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in scores.items()}


ROWS = [("pnmi", "PNMI (I(letter; unit) / H(letter))"), ("letter_purity", "letter purity"),
        ("cluster_purity", "cluster purity"), ("units_used", "units used"), ("entropy_bits", "unit entropy (bits)"),
        ("mean_run_ms", "mean run (ms)"), ("frames", "unit frames"), ("letter_frames", "frames with a letter (scored)"),
        ("letters", "distinct letters")]


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else f"{value:,}"


def render_html(result: dict, motifs: dict | None) -> str:
    esc = html.escape
    rows = "\n".join(f"<tr><td>{esc(label)}</td><td>{_cell(result['model_units'].get(key))}</td>"
                     f"<td>{_cell(result['mfcc_units'].get(key))}</td></tr>" for key, label in ROWS)
    ratio = result["pnmi_ratio"]
    motif_rows = ""
    if motifs and motifs.get("top_motifs"):
        for m in motifs["top_motifs"][:TOP_IN_HTML]:
            letters = ", ".join(f"{esc(x['letters'])} ({x['count']})" for x in m.get("letters") or [])
            where = m.get("listen") or {}
            motif_rows += (f"<tr><td>{esc(str(m['piece']))}</td><td>{m['count']:,}</td><td>{m['mean_ms']:.0f}</td>"
                           f"<td>{100 * m['share']:.2f}%</td><td>{letters}</td>"
                           f"<td>{esc(str(where.get('recording', '')))} {where.get('start', '')}–{where.get('end', '')} s</td></tr>\n")
        motif_table = f"""<h3>Top motifs (BPE, vocabulary {motifs.get('vocab_size')})</h3>
<table><thead><tr><th>units</th><th>count</th><th>mean ms</th><th>share</th><th>letters under it</th><th>listen</th></tr></thead>
<tbody>
{motif_rows}</tbody></table>"""
    else:
        motif_table = ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tala: units, {esc(result['language'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
</style></head><body>
<h2>Acoustic units: {esc(result['language'])}</h2>
<p>k = {result['k']} units of layer {esc(str(result['layer']))} of {esc(str(result['model']))}, scored on
{_cell(result['frames_scored'])} letter frames of {result['recordings_scored']} of {result['recordings']} recording(s).
PNMI of the model's units / the MFCC baseline's: <b>{'–' if ratio is None else f'{ratio:.2f}×'}</b>.</p>
<table><thead><tr><th>metric</th><th>model units</th><th>MFCC units (baseline)</th></tr></thead>
<tbody>
{rows}
</tbody></table>
{motif_table}
<p><small>tala {tala.__version__}</small></p>
</body></html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.units.score", description=__doc__.splitlines()[0])
    parser.add_argument("out_json", type=Path)
    parser.add_argument("out_html", type=Path)
    parser.add_argument("--language", required=True)
    parser.add_argument("--units", nargs="*", type=Path, default=[], help="quantize_units JSONs")
    parser.add_argument("--aligned", nargs="*", type=Path, default=[], help="aligned chapters (with 'letters')")
    parser.add_argument("--wavs", nargs="*", type=Path, default=[], help="16 kHz WAVs, one per recording")
    parser.add_argument("--segments", nargs="*", type=Path, default=[], help="their segments TSVs, same order")
    parser.add_argument("--motifs", type=Path, default=None, help="train_bpe's motif_analysis.json")
    parser.add_argument("--kmeans", type=Path, default=None, help="fit_kmeans' kmeans.json (k from it)")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--fit-hours", type=float, default=None)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--batch-frames", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.wavs) != len(args.segments):
        parser.error(f"--wavs ({len(args.wavs)}) and --segments ({len(args.segments)}) must pair up")
    if args.kmeans is not None:
        args.k = int(read_json_object(args.kmeans).get("k", args.k))
    wavs = {tsv.stem: wav for wav, tsv in zip(args.wavs, args.segments)}
    segments = {tsv.stem: read_segments(tsv, tsv.stem) for tsv in args.segments}
    missing = [path for path in args.units if path.stem not in wavs]
    if missing:
        raise InputError(missing[0], "no WAV/segments given for this recording")
    result = score(args.units, args.aligned, wavs, segments, k=args.k, fit_hours=args.fit_hours, passes=args.passes,
                   batch_frames=args.batch_frames, seed=args.seed, language=args.language)
    motifs = read_json_object(args.motifs) if args.motifs is not None else None
    if motifs is not None:
        result["top_motifs"] = motifs.get("top_motifs", [])[:TOP_IN_HTML]
        result["bpe_vocab_size"] = motifs.get("vocab_size")
    result["tool"] = tala.tool("numpy", "scipy")
    write_text_atomic(args.out_html, render_html(result, motifs))
    write_json_atomic(args.out_json, result)
    m, b = result["model_units"], result["mfcc_units"]
    log(f"score_units: {args.language}: PNMI {_cell(m.get('pnmi'))} (MFCC {_cell(b.get('pnmi'))}, ratio "
        f"{_cell(result['pnmi_ratio'])}), letter purity {_cell(m.get('letter_purity'))} "
        f"(MFCC {_cell(b.get('letter_purity'))}), {m.get('units_used')} of {args.k} units used")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
