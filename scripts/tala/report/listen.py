"""A page for listening to a language's dataset clips next to their text, for the report.

    python -m tala.report.listen --language samoan --dataset results/samoan/dataset --html listen.html
                          [--max-clips 40] [--bitrate 32k]

Snakemake's report viewer shows files but cannot play WAV, and a report must be one
self-contained file: so each clip is encoded to a small MP3 (ffmpeg, mono, ``--bitrate``) and
embedded in the page as a ``data:`` URI under an ``<audio>`` player, with its text, split,
recording, times, CER and score. Large datasets are sampled: at most ``--max-clips`` clips,
spread evenly over each split's recordings (the worst-scored clip of each recording always
included, since that is the one worth a listen). Without ffmpeg the clips are embedded as WAV.
"""

from __future__ import annotations

import argparse
import base64
import html
import shutil
import subprocess
import sys
from pathlib import Path

from tala import __version__
from tala.errors import InputError, run_cli
from tala.fileio import read_jsonl, write_text_atomic

SPLITS = ("train", "valid", "test")
MAX_CLIPS = 40
BITRATE = "32k"


def read_rows(dataset: Path) -> list[dict]:
    rows = []
    for split in SPLITS:
        path = dataset / f"{split}.jsonl"
        if not path.is_file():
            raise InputError(path, "missing: not a dataset folder written by tala.dataset.build")
        rows += [{**row, "split": split} for _, row in read_jsonl(path)]
    return rows


def pick_clips(rows: list[dict], max_clips: int) -> list[dict]:
    """All rows if they fit; else per recording its worst-scored clip, then clips spread evenly
    over the recording, round-robin across recordings, up to ``max_clips``. Deterministic."""
    if len(rows) <= max_clips:
        return sorted(rows, key=_order)
    by_recording: dict[str, list[dict]] = {}
    for row in sorted(rows, key=_order):
        by_recording.setdefault(row["recording"], []).append(row)
    chosen: dict[str, dict] = {}
    for clips in by_recording.values():
        if len(chosen) >= max_clips:
            break
        worst = min(clips, key=lambda r: (r.get("score") if r.get("score") is not None else 0.0, r["id"]))
        chosen[worst["id"]] = worst
    # Spread over each recording: its middle clip first, then alternately outwards.
    queues = [[clips[i] for i in sorted(range(len(clips)), key=lambda i, m=len(clips) // 2: (abs(i - m), i))]
              for clips in by_recording.values()]  # fmt: skip
    while len(chosen) < max_clips and any(queues):
        for queue in queues:
            while queue and queue[0]["id"] in chosen:
                queue.pop(0)
            if queue and len(chosen) < max_clips:
                row = queue.pop(0)
                chosen[row["id"]] = row
    return sorted(chosen.values(), key=_order)


def _order(row: dict) -> tuple:
    return SPLITS.index(row["split"]), row["recording"], float(row["start"])


def encode_clip(path: Path, bitrate: str) -> tuple[str, bytes]:
    """(MIME type, bytes) of the clip as a small MP3, or the WAV itself without ffmpeg."""
    if not path.is_file():
        raise InputError(path, "clip missing: the dataset folder is incomplete")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return "audio/wav", path.read_bytes()
    proc = subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-ac", "1", "-c:a", "libmp3lame",
                           "-b:a", bitrate, "-f", "mp3", "-map_metadata", "-1", "-fflags", "+bitexact", "-"],
                          capture_output=True)  # fmt: skip
    if proc.returncode != 0 or not proc.stdout:
        raise InputError(path, f"ffmpeg could not encode the clip: {proc.stderr.decode(errors='replace').strip()}")
    return "audio/mpeg", proc.stdout


def _number(value, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def render_html(language: str, picked: list[dict], total: int, players: list[tuple[str, bytes]]) -> str:
    rows = []
    for row, (mime, data) in zip(picked, players):
        source = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        verses = row.get("verses") or []
        span = f"{verses[0]}–{verses[-1]}" if len(verses) > 1 else (str(verses[0]) if verses else "")
        rows.append(
            "<tr>"
            f"<td>{html.escape(row['split'])}</td>"
            f"<td>{html.escape(row['recording'])}</td>"
            f"<td>{html.escape(span)}</td>"
            f"<td>{float(row['start']):.2f}–{float(row['end']):.2f}</td>"
            f"<td><audio controls preload=\"none\" src=\"{source}\"></audio></td>"
            f"<td class=\"text\">{html.escape(row['text'])}</td>"
            f"<td>{_number(row.get('cer'), 3)}</td>"
            f"<td>{_number(row.get('score'), 3)}</td>"
            "</tr>"
        )
    shown = f"all {total}" if len(picked) == total else f"{len(picked)} of {total}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tala: listen to the {html.escape(language)} dataset</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; vertical-align: middle; text-align: left; }}
td.text {{ max-width: 40em; }}
audio {{ height: 2em; }}
</style></head><body>
<h2>Listen: {html.escape(language)} dataset clips</h2>
<p>{shown} clips (each recording's worst-scored clip included), as MP3 at low bitrate for listening;
the dataset itself holds 16 kHz WAV. CER: the model's transcript against the text; score: mean
log-probability per frame of the alignment (closer to 0 is better).</p>
<table>
<thead><tr><th>split</th><th>recording</th><th>verses</th><th>time (s)</th><th>clip</th><th>text</th>
<th>CER</th><th>score</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
<p><small>tala {__version__}</small></p>
</body></html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.report.listen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", required=True)
    parser.add_argument("--dataset", required=True, type=Path, help="folder with train/valid/test.jsonl")
    parser.add_argument("--html", required=True, type=Path)
    parser.add_argument("--max-clips", type=int, default=MAX_CLIPS, help="(default: %(default)s)")
    parser.add_argument("--bitrate", default=BITRATE, help="MP3 bitrate of the embedded clips (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.max_clips < 1:
        parser.error("--max-clips must be at least 1")
    rows = read_rows(args.dataset)
    picked = pick_clips(rows, args.max_clips)
    players = [encode_clip(args.dataset / row["audio"], args.bitrate) for row in picked]
    write_text_atomic(args.html, render_html(args.language, picked, len(rows), players))
    size_mb = sum(len(data) for _, data in players) / 1e6
    print(f"{args.language}: {len(picked)} of {len(rows)} clips embedded ({size_mb:.1f} MB) -> {args.html}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
