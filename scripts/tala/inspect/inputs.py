"""Inspect one language's raw recordings and official texts before any job runs on them.

    python -m tala.inspect.inputs --language L --out INSPECTION.json
        [--recording REC AUDIO TEXT ...] [--audio-only] [--skip-style NAME ...]
        [--skip-pattern REGEX ...] [--jobs N]

The workflow runs this as a Snakemake checkpoint: what it finds decides which chapters the rest of
the DAG is built for, so one damaged file never stops its language. Per recording:

- the audio is probed the way ``tala.audio.convert`` will read it (``tala.audio_io.probe_audio``: empty
  or non-audio files, no audio stream, truncated MP3/WAV); a recording whose audio fails is
  **excluded**: it is not converted, transcribed nor aligned;
- the official text (DOCX) is read for its verses (``tala.align.read_text.read_verses``) without the model;
  a missing, unreadable or verse-less text makes the recording **audio-only**: it is converted,
  segmented and transcribed, but not aligned nor in the dataset;
- the text reader's warnings (a verse count that looks wrong, gaps in the numbers) are kept as
  **warnings**: the chapter goes on, and the problems table shows what to check.

The output lists every recording with its status and problems (each naming the file and the
reason), sorted by recording id; ``--audio-only`` is for a language without texts (no text is
expected, so none is missing). The checks are cheap (headers, MP3 frame headers, the DOCX XML):
a 1,189-chapter Bible takes a minute or two, spread over ``--jobs`` processes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

import tala
from tala.audio_io import probe_audio
from tala.errors import InputError, run_cli
from tala.fileio import write_json_atomic
from tala.align.read_text import SKIP_STYLES, read_verses

OK = "ok"
AUDIO_ONLY = "audio-only"
EXCLUDED = "excluded"


@dataclass(frozen=True)
class RecordingFiles:
    recording: str
    audio: str
    text: str | None  # None: the language has no texts


def inspect_recording(files: RecordingFiles, skip_styles: tuple[str, ...] = SKIP_STYLES,
                      skip_patterns: tuple[str, ...] = ()) -> dict:
    """The inspection record of one recording: status, problems and what was found."""
    record: dict = {"recording": files.recording, "audio": files.audio, "text": files.text,
                    "status": OK, "problems": []}
    try:
        info = probe_audio(files.audio)
        record["audio_format"] = info.describe()
        record["duration_s"] = None if info.duration_s is None else round(info.duration_s, 3)
    except InputError as err:
        record["status"] = EXCLUDED
        record["problems"].append({"stage": "inspect", "severity": EXCLUDED, "file": files.audio,
                                   "reason": f"{err.reason}: not processed"})
        return record

    if files.text is None:
        return record
    if not Path(files.text).is_file():
        record["status"] = AUDIO_ONLY
        record["problems"].append({"stage": "inspect", "severity": AUDIO_ONLY, "file": files.text,
                                   "reason": "no official text: transcribed, not aligned nor in the dataset"})
        return record
    try:
        verses, _, warnings = read_verses(files.text, skip_styles, [re.compile(p) for p in skip_patterns])
    except InputError as err:
        record["status"] = AUDIO_ONLY
        record["problems"].append({"stage": "inspect", "severity": AUDIO_ONLY, "file": files.text,
                                   "reason": f"{err.reason}: transcribed, not aligned nor in the dataset"})
        return record
    record["verses"] = len(verses)
    for warning in warnings:
        record["problems"].append({"stage": "inspect", "severity": "warning", "file": files.text,
                                   "reason": warning})
    return record


def _inspect_star(args: tuple) -> dict:
    return inspect_recording(*args)


def inspect_language(recordings: list[RecordingFiles], skip_styles: tuple[str, ...] = SKIP_STYLES,
                     skip_patterns: tuple[str, ...] = (), jobs: int = 1, progress: bool = False) -> list[dict]:
    """Inspection records of every recording, in recording order."""
    work = [(files, skip_styles, skip_patterns) for files in sorted(recordings, key=lambda f: f.recording)]
    bar = tqdm(total=len(work), desc="inspect", unit="rec", file=sys.stderr, disable=not progress,
               mininterval=5.0)
    with bar:
        if jobs <= 1 or len(work) < 2:
            records = []
            for item in work:
                records.append(_inspect_star(item))
                bar.update()
            return records
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            records = []
            for record in pool.map(_inspect_star, work, chunksize=8):
                records.append(record)
                bar.update()
            return records


def summary_line(language: str, records: list[dict]) -> str:
    counts = {status: sum(r["status"] == status for r in records) for status in (OK, AUDIO_ONLY, EXCLUDED)}
    warnings = sum(p["severity"] == "warning" for r in records for p in r["problems"])
    return (f"inspect: {language}: {len(records)} recordings: {counts[OK]} ok, {counts[AUDIO_ONLY]} audio-only, "
            f"{counts[EXCLUDED]} excluded, {warnings} text warnings")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.inspect.inputs",
        description="Check a language's raw recordings and DOCX texts up front; write which chapters "
                    "the workflow processes and why the others are left out.")
    parser.add_argument("--language", required=True)
    parser.add_argument("--out", required=True, help="inspection JSON to write")
    parser.add_argument("--recording", nargs=3, action="append", default=[], metavar=("REC", "AUDIO", "TEXT"),
                        help="a recording id, its raw audio and its DOCX (which may be missing); repeatable")
    parser.add_argument("--audio-only", action="store_true", help="the language has no texts: TEXT is ignored")
    parser.add_argument("--skip-style", action="append", metavar="NAME",
                        help="paragraph style not read aloud, as for tala.align.read_text (default: its defaults)")
    parser.add_argument("--skip-pattern", action="append", default=[], metavar="REGEX",
                        help="skip paragraphs whose whole text matches, as for tala.align.read_text")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="processes (default: %(default)s)")
    args = parser.parse_args(argv)
    for pattern in args.skip_pattern:
        try:
            re.compile(pattern)
        except re.error as err:
            parser.error(f"--skip-pattern {pattern!r}: {err}")
    ids = [rec for rec, _, _ in args.recording]
    if len(set(ids)) != len(ids):
        parser.error("a recording id is given twice")

    files = [RecordingFiles(rec, audio, None if args.audio_only else text) for rec, audio, text in args.recording]
    skip_styles = tuple(args.skip_style) if args.skip_style else SKIP_STYLES
    records = inspect_language(files, skip_styles, tuple(args.skip_pattern), jobs=args.jobs,
                               progress=len(files) >= 50)
    for record in records:
        for problem in record["problems"]:
            print(f"{problem['severity']}: {problem['file']}: {problem['reason']}", file=sys.stderr)
    write_json_atomic(args.out, {
        "language": args.language,
        "audio_only": args.audio_only,
        "settings": {"skip_styles": list(skip_styles), "skip_patterns": args.skip_pattern},
        "recordings": records,
        "tool": tala.tool("python-docx", "soundfile"),
    })
    print(summary_line(args.language, records), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
