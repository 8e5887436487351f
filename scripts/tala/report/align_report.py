"""Per-language alignment quality for the report: a table of recordings (verses aligned, scores,
transcript-vs-text CER, audio given to ``<star>``) and, where ground-truth verse times exist
(the demo's ``truth/`` folders), the verse boundary errors against them.

``python -m tala.report.align_report --language samoan --aligned a.json b.json [--tsv out.tsv]
[--html out.html] [--truth-dir resources/demo/samoan/truth [--svg boundary_errors.svg]]``
"""

from __future__ import annotations

import argparse
import html
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tala import __version__
from tala.errors import InputError, run_cli
from tala.fileio import atomic_path, read_json_object, write_text_atomic

# The accuracy goals of the alignment on the demo (verse edges against the exact truth).
GOAL_MEDIAN_MS = 40.0
GOAL_P95_MS = 120.0


@dataclass(frozen=True)
class AlignmentSummary:
    recording: str
    method: str
    duration_s: float
    verses: int
    mean_score: float
    chapter_cer: float
    worst_verse_cer: float
    star_s: float
    boundary_median_ms: float | None = None
    boundary_p95_ms: float | None = None
    boundary_max_ms: float | None = None


def read_aligned(path: str | Path) -> dict:
    """An aligned JSON: an accepted chapter's (with verses) or a rejected one's (status, reason)."""
    data = read_json_object(path)
    if data.get("status") == "rejected":
        return data
    if "verses" not in data:
        raise InputError(path, "not an alignment (no 'verses')")
    return data


def boundary_errors_s(aligned: dict, truth: dict) -> np.ndarray:
    """|aligned - truth| of every verse start and end, verses matched by number."""
    truth_by_number = {v["number"]: v for v in truth["verses"]}
    errors = []
    for verse in aligned["verses"]:
        ref = truth_by_number.get(verse["number"])
        if ref is not None:
            errors += [abs(verse["start"] - ref["start"]), abs(verse["end"] - ref["end"])]
    return np.asarray(errors, dtype=float)


def summarize(recording: str, aligned: dict, errors_s: np.ndarray | None) -> AlignmentSummary:
    verses = aligned["verses"]
    summary = aligned.get("summary", {})
    cers = [v["cer"] for v in verses if v.get("cer") is not None]
    scores = [v["score"] for v in verses if v.get("score") is not None]
    star_s = sum(span["end"] - span["start"] for span in aligned.get("star", []))
    row = AlignmentSummary(
        recording=recording,
        method=aligned.get("method", ""),
        duration_s=round(float(aligned.get("duration_s", 0.0)), 3),
        verses=len(verses),
        mean_score=round(float(np.mean(scores)), 4) if scores else float("nan"),
        chapter_cer=round(float(summary.get("chapter_cer", np.mean(cers) if cers else float("nan"))), 4),
        worst_verse_cer=round(max(cers), 4) if cers else float("nan"),
        star_s=round(star_s, 2),
    )
    if errors_s is not None and len(errors_s):
        ms = errors_s * 1000
        row = AlignmentSummary(**{**asdict(row), "boundary_median_ms": round(float(np.median(ms)), 1),
                                  "boundary_p95_ms": round(float(np.percentile(ms, 95)), 1),
                                  "boundary_max_ms": round(float(ms.max()), 1)})  # fmt: skip
    return row


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return html.escape(str(value))


def notes_html(rejected: list[dict], warnings: dict[str, list[str]]) -> str:
    """The chapters that were not aligned, and what the text reader warned about, as HTML."""
    parts = []
    if rejected:
        items = "".join(f"<li><b>{html.escape(str(r['recording']))}</b>: {html.escape(str(r.get('file', '')))}: "
                        f"{html.escape(str(r.get('reason', '')))}</li>" for r in rejected)
        parts.append(f"<h3>Not aligned ({len(rejected)})</h3><ul class='warn'>{items}</ul>")
    if warnings:
        items = "".join(f"<li><b>{html.escape(rec)}</b>: {html.escape(w)}</li>"
                        for rec, lines in warnings.items() for w in lines)
        parts.append(f"<h3>Check the text</h3><ul class='warn'>{items}</ul>")
    return "\n".join(parts)


def render_html(language: str, rows: list[AlignmentSummary], all_errors_ms: np.ndarray | None,
                notes: str = "") -> str:
    fields = list(AlignmentSummary.__dataclass_fields__)
    if all_errors_ms is None:
        fields = [f for f in fields if not f.startswith("boundary_")]
    head = "".join(f"<th>{html.escape(f.replace('_', ' '))}</th>" for f in fields)
    body = "\n".join("<tr>" + "".join(f"<td>{_cell(getattr(r, f))}</td>" for f in fields) + "</tr>" for r in rows)
    verses = sum(r.verses for r in rows)
    truth_line = ""
    if all_errors_ms is not None and len(all_errors_ms):
        median, p95 = float(np.median(all_errors_ms)), float(np.percentile(all_errors_ms, 95))
        ok = median <= GOAL_MEDIAN_MS and p95 <= GOAL_P95_MS
        truth_line = (f"<p class='{'ok' if ok else 'warn'}'>Against the ground truth: verse edges off by "
                      f"{median:.0f} ms (median) and {p95:.0f} ms (95th percentile) over {len(all_errors_ms)} "
                      f"edges; goals {GOAL_MEDIAN_MS:.0f} and {GOAL_P95_MS:.0f} ms.</p>")  # fmt: skip
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tala: alignment, {html.escape(language)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child, td:first-child, td:nth-child(2) {{ text-align: left; }}
.warn {{ color: #a40; }} .ok {{ color: #274; }}
</style></head><body>
<h2>Alignment: {html.escape(language)}</h2>
<p>{len(rows)} recording(s), {verses} verse(s) aligned.</p>
{truth_line}
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
{notes}
<p><small>score: mean log-probability per frame of the verse's aligned characters (0 is best); chapter
CER: the model's greedy words paired with the official text's words, letter edits over the text's
letters (spaces not counted; transcript words outside the text, such as a spoken heading, left out);
worst verse CER: the greedy transcript of a verse's time span against that verse; star: seconds of
audio the text does not contain (spoken headings, intros, music). tala {__version__}</small></p>
</body></html>
"""


def write_boundary_plot(path: str | Path, language: str, errors_ms: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "tala"
    names = list(errors_ms)
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.45 * max(len(names), 1)), layout="constrained")
    rng = np.random.default_rng(0)  # jitter only: fixed so that the SVG is reproducible
    for i, name in enumerate(names):
        values = errors_ms[name]
        ax.scatter(values, i + rng.uniform(-0.15, 0.15, len(values)), s=10, alpha=0.6, color="#3a7ca5")
        if len(values):
            ax.plot([np.median(values)] * 2, [i - 0.3, i + 0.3], color="#222", linewidth=2)
    ax.axvline(GOAL_MEDIAN_MS, color="#274", linestyle="--", linewidth=1, label=f"median goal {GOAL_MEDIAN_MS:.0f} ms")
    ax.axvline(GOAL_P95_MS, color="#a40", linestyle=":", linewidth=1, label=f"95th pct goal {GOAL_P95_MS:.0f} ms")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("verse edge error against the ground truth (ms)")
    ax.set_title(f"{language}: verse boundary errors")
    ax.legend(loc="lower right", fontsize="small")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None})
    plt.close(fig)


def write_tsv(path: str | Path, rows: list[AlignmentSummary]) -> None:
    fields = list(AlignmentSummary.__dataclass_fields__)
    lines = ["\t".join(fields)] + ["\t".join("" if v is None else str(v) for v in asdict(r).values()) for r in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.report.align_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", required=True)
    parser.add_argument("--aligned", nargs="+", required=True, type=Path, help="results/{lang}/aligned/*.json")
    parser.add_argument("--tsv", type=Path, help="the table as TSV")
    parser.add_argument("--html", type=Path, help="the table as HTML")
    parser.add_argument("--truth-dir", type=Path, help="ground-truth verse times, <recording>.json each")
    parser.add_argument("--svg", type=Path, help="boundary error plot (needs --truth-dir)")
    args = parser.parse_args(argv)
    if args.svg and not args.truth_dir:
        parser.error("--svg needs --truth-dir")
    if not (args.tsv or args.html or args.svg):
        parser.error("nothing to write: give --tsv, --html and/or --svg")
    rows, errors_ms, rejected, warnings = [], {}, [], {}
    for path in args.aligned:
        aligned = read_aligned(path)
        recording = aligned.get("recording", path.stem)
        if aligned.get("status") == "rejected":
            rejected.append({**aligned, "recording": recording})
            continue
        if aligned.get("text_warnings"):
            warnings[recording] = list(aligned["text_warnings"])
        errors = None
        if args.truth_dir:
            truth_path = args.truth_dir / f"{recording}.json"
            if truth_path.is_file():
                errors = boundary_errors_s(aligned, read_json_object(truth_path))
                errors_ms[recording] = errors * 1000
            else:
                print(f"warning: {truth_path}: no ground truth for {recording}", file=sys.stderr)
        rows.append(summarize(recording, aligned, errors))
    all_errors = np.concatenate(list(errors_ms.values())) if errors_ms else None
    if args.tsv:
        write_tsv(args.tsv, rows)
    if args.html:
        write_text_atomic(args.html, render_html(args.language, rows, all_errors if args.truth_dir else None,
                                                 notes_html(rejected, warnings)))
    if args.svg:
        write_boundary_plot(args.svg, args.language, errors_ms)
    if all_errors is not None and len(all_errors):
        print(f"{args.language}: boundary error median {np.median(all_errors):.1f} ms, "
              f"p95 {np.percentile(all_errors, 95):.1f} ms over {len(all_errors)} edges", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
