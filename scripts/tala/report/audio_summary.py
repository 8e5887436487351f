"""Per-language summary of the audio front end for the report: a table of recordings (duration,
spans, speech) and a histogram of span durations.

``python -m tala.report.audio_summary --language samoan --wavs a.wav b.wav --spans a.tsv b.tsv
--tsv out.tsv --html out.html --svg out.svg``
"""

from __future__ import annotations

import argparse
import csv
import html
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from tala import __version__
from tala.errors import InputError, run_cli
from tala.fileio import atomic_path, write_text_atomic

SPAN_HISTOGRAM_BIN_S = 2.0


@dataclass(frozen=True)
class RecordingSummary:
    recording: str
    duration_s: float
    spans: int
    speech_s: float
    speech_fraction: float
    median_span_s: float
    longest_span_s: float
    mean_level_db: float


def read_spans(path: str | Path) -> list[tuple[float, float, float]]:
    """Rows of a segment TSV as (start, end, level_db)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if reader.fieldnames is None or not {"start", "end", "level_db"} <= set(reader.fieldnames):
            raise InputError(path, "not a span table (expected the columns start, end, level_db)")
        return [(float(r["start"]), float(r["end"]), float(r["level_db"])) for r in reader]


def summarize(recording: str, duration_s: float, spans: list[tuple[float, float, float]]) -> RecordingSummary:
    lengths = np.array([end - start for start, end, _ in spans], dtype=float)
    levels = np.array([level for _, _, level in spans], dtype=float)
    speech_s = float(lengths.sum())
    if len(spans):
        # Average the spans' power, not their dB values, weighted by length.
        mean_level_db = float(10 * np.log10(np.average(10 ** (levels / 10), weights=lengths) + 1e-20))
    else:
        mean_level_db = float("nan")
    return RecordingSummary(
        recording=recording,
        duration_s=round(duration_s, 3),
        spans=len(spans),
        speech_s=round(speech_s, 3),
        speech_fraction=round(speech_s / duration_s, 3) if duration_s > 0 else 0.0,
        median_span_s=round(float(np.median(lengths)), 3) if len(spans) else 0.0,
        longest_span_s=round(float(lengths.max()), 3) if len(spans) else 0.0,
        mean_level_db=round(mean_level_db, 1),
    )


def _fmt_duration(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes}:{secs:04.1f}"


def render_html(language: str, rows: list[RecordingSummary]) -> str:
    total = sum(r.duration_s for r in rows)
    speech = sum(r.speech_s for r in rows)
    spans = sum(r.spans for r in rows)
    body = "\n".join(
        "<tr>"
        f"<td>{html.escape(r.recording)}</td>"
        f"<td>{_fmt_duration(r.duration_s)}</td>"
        f"<td>{r.spans}</td>"
        f"<td>{_fmt_duration(r.speech_s)}</td>"
        f"<td>{100 * r.speech_fraction:.0f}%</td>"
        f"<td>{r.median_span_s:.1f}</td>"
        f"<td>{r.longest_span_s:.1f}</td>"
        f"<td>{'' if np.isnan(r.mean_level_db) else f'{r.mean_level_db:.1f}'}</td>"
        "</tr>"
        for r in rows
    )
    warn = [r.recording for r in rows if r.spans == 0]
    warning = (
        f"<p class='warn'>No speech found in: {html.escape(', '.join(warn))} (silent or below the threshold).</p>"
        if warn
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tala: recordings, {html.escape(language)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
tfoot td {{ font-weight: bold; border-top: 2px solid #999; }}
.warn {{ color: #a40; }}
</style></head><body>
<h2>Recordings: {html.escape(language)}</h2>
<p>{len(rows)} recording(s), {_fmt_duration(total)} of audio, {spans} span(s) holding {_fmt_duration(speech)} of speech.</p>
{warning}
<table>
<thead><tr><th>recording</th><th>duration</th><th>spans</th><th>speech</th><th>speech share</th>
<th>median span (s)</th><th>longest span (s)</th><th>level (dBFS)</th></tr></thead>
<tbody>
{body}
</tbody>
<tfoot><tr><td>all</td><td>{_fmt_duration(total)}</td><td>{spans}</td><td>{_fmt_duration(speech)}</td>
<td>{100 * speech / total if total else 0:.0f}%</td><td></td><td></td><td></td></tr></tfoot>
</table>
<p><small>tala {__version__}</small></p>
</body></html>
"""


def write_histogram(path: str | Path, language: str, span_lengths_s: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Fixed salt and no date: the same spans give the same SVG bytes, so reruns change nothing.
    plt.rcParams["svg.hashsalt"] = "tala"
    fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    if span_lengths_s:
        top = max(span_lengths_s)
        bins = np.arange(0.0, top + SPAN_HISTOGRAM_BIN_S, SPAN_HISTOGRAM_BIN_S)
        ax.hist(span_lengths_s, bins=bins, color="#3a7ca5", edgecolor="white")
    else:
        ax.text(0.5, 0.5, "no spans", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("span duration (s)")
    ax.set_ylabel("spans")
    ax.set_title(f"{language}: {len(span_lengths_s)} spans")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None})
    plt.close(fig)


def write_tsv(path: str | Path, rows: list[RecordingSummary]) -> None:
    fields = list(RecordingSummary.__dataclass_fields__)
    lines = ["\t".join(fields)] + ["\t".join(str(v) for v in asdict(r).values()) for r in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.report.audio_summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", required=True)
    parser.add_argument("--wavs", nargs="+", required=True, type=Path, help="converted recordings")
    parser.add_argument("--spans", nargs="+", required=True, type=Path, help="their span TSVs, same order")
    parser.add_argument("--tsv", required=True, type=Path)
    parser.add_argument("--html", required=True, type=Path)
    parser.add_argument("--svg", required=True, type=Path)
    args = parser.parse_args(argv)
    if len(args.wavs) != len(args.spans):
        parser.error("--wavs and --spans must list the same number of files")
    rows, lengths = [], []
    for wav, tsv in zip(args.wavs, args.spans):
        try:
            info = sf.info(str(wav))
        except RuntimeError as err:
            raise InputError(wav, f"cannot read audio ({err})") from None
        spans = read_spans(tsv)
        rows.append(summarize(wav.stem, info.frames / info.samplerate, spans))
        lengths += [end - start for start, end, _ in spans]
    write_tsv(args.tsv, rows)
    write_text_atomic(args.html, render_html(args.language, rows))
    write_histogram(args.svg, args.language, lengths)
    print(f"{args.language}: {len(rows)} recordings, {len(lengths)} spans", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
