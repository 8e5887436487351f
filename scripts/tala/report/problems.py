"""One language's problems table: every chapter left out or worth a look, with the file to fix and why.

    python -m tala.report.problems --language L --inspection INSPECTION.json [--aligned A.json ...]
                            --json OUT.json [--tsv OUT.tsv] [--html OUT.html]

Gathers what the steps recorded instead of failing the run: the up-front inspection (audio that
cannot be read: the chapter is excluded; a missing or unreadable DOCX: the chapter is audio-only;
warnings about the verses found), and the chapters the aligner rejected (another chapter's text,
no speech, a text read_text could not use). Each row: recording, stage, severity, file, reason.

Severities, worst first: ``excluded`` (nothing made from the chapter), ``rejected`` (transcribed
but not aligned: no timings, not in the dataset), ``audio-only`` (no usable text), ``warning``
(in the dataset, but check the text). ``OUT.json`` is read by the dataset card and by the
workflow's last log lines; the HTML is the report's "problems" page.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import sys
from pathlib import Path

from tala.errors import InputError, run_cli
from tala.fileio import read_json_object, write_json_atomic, write_text_atomic

SEVERITIES = ("excluded", "rejected", "audio-only", "warning")
COLUMNS = ("recording", "stage", "severity", "file", "reason")


def inspection_problems(inspection: dict, path: str | Path = "<inspection>") -> list[dict]:
    records = inspection.get("recordings")
    if not isinstance(records, list):
        raise InputError(path, "no 'recordings' list (not a tala.inspect.inputs result?)")
    return [{"recording": record["recording"], **problem} for record in records
            for problem in record.get("problems", [])]


def alignment_problems(aligned: dict, path: str | Path) -> list[dict]:
    """A rejected chapter's row; none for an accepted one."""
    if aligned.get("status") != "rejected":
        return []
    return [{"recording": str(aligned.get("recording") or Path(path).stem), "stage": str(aligned.get("stage", "align")),
             "severity": "rejected", "file": str(aligned.get("file", path)), "reason": str(aligned.get("reason", ""))}]


def sort_problems(problems: list[dict]) -> list[dict]:
    def key(problem: dict) -> tuple:
        severity = problem.get("severity")
        rank = SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)
        return rank, problem["recording"], problem.get("stage", ""), problem.get("reason", "")
    return [{column: problem.get(column, "") for column in COLUMNS} for problem in sorted(problems, key=key)]


def problems_tsv(problems: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(COLUMNS)
    for problem in problems:
        writer.writerow([" ".join(str(problem[column]).split()) for column in COLUMNS])
    return out.getvalue()


def problems_html(language: str, problems: list[dict], recordings: int) -> str:
    counts = {severity: sum(p["severity"] == severity for p in problems) for severity in SEVERITIES}
    if problems:
        lead = (f"{recordings} recording(s); {counts['excluded']} excluded, {counts['rejected']} rejected, "
                f"{counts['audio-only']} audio-only, {counts['warning']} warning(s). The dataset, timings and "
                f"reports are built from the others.")
        rows = "\n".join("<tr class='{}'>".format(html.escape(p["severity"])) + "".join(
            f"<td>{html.escape(str(p[column]))}</td>" for column in COLUMNS) + "</tr>" for p in problems)
        table = (f"<table><thead><tr>{''.join(f'<th>{c}</th>' for c in COLUMNS)}</tr></thead>"
                 f"<tbody>\n{rows}\n</tbody></table>")
    else:
        lead, table = f"{recordings} recording(s), no problems: every chapter was read, aligned and used.", ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tala: problems, {html.escape(language)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }}
tr.excluded td, tr.rejected td {{ color: #a10; }} tr.audio-only td {{ color: #a50; }}
</style></head><body>
<h2>Problems: {html.escape(language)}</h2>
<p>{html.escape(lead)}</p>
{table}
<p><small>excluded: the audio could not be read, nothing was made from it; rejected: transcribed, but the
text does not fit the audio (another chapter's text, no speech), so no timings and no clips;
audio-only: no usable official text (missing, unreadable, no verse numbers found); warning: used, but
check the text (e.g. a verse count that looks wrong).</small></p>
</body></html>
"""


def collect_problems(inspection_path: str | Path, aligned_paths: list[str | Path]) -> tuple[list[dict], int]:
    """The sorted problem rows and the number of recordings inspected."""
    inspection = read_json_object(inspection_path)
    problems = inspection_problems(inspection, inspection_path)
    for path in aligned_paths:
        problems += alignment_problems(read_json_object(path), path)
    return sort_problems(problems), len(inspection["recordings"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.report.problems", description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", required=True)
    parser.add_argument("--inspection", required=True, help="tala.inspect.inputs' JSON")
    parser.add_argument("--aligned", nargs="*", default=[], help="the language's aligned JSONs")
    parser.add_argument("--json", required=True, help="the problems as a JSON list")
    parser.add_argument("--tsv", help="the problems as TSV")
    parser.add_argument("--html", help="the problems as an HTML page")
    args = parser.parse_args(argv)
    problems, recordings = collect_problems(args.inspection, args.aligned)
    write_json_atomic(args.json, problems)
    if args.tsv:
        write_text_atomic(args.tsv, problems_tsv(problems))
    if args.html:
        write_text_atomic(args.html, problems_html(args.language, problems, recordings))
    for problem in problems:
        print(f"{problem['severity']}: {problem['file']}: {problem['reason']}", file=sys.stderr)
    print(f"problems: {args.language}: {len(problems)} over {recordings} recordings", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
