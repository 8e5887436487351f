"""Gather a language's unit files into the corpus files the motifs and the vocoder read (step
``collect_units``).

    python -m tala.units.collect OUT_TIMESTAMPED.jsonl OUT_BPE.txt --units A.json B.json ... [--dedup]

``corpus_timestamped.jsonl``: one line per speech segment, recordings in the order given, segments
in time order: ``{"recording", "start", "end", "units": [...], "times": [...], "frames": [...]}``,
``times`` the start second of each unit and ``frames`` how many 20 ms frames it lasts: all 1, or
with ``--dedup`` runs of one unit merged into one entry (its start and run length), as GSLM's
deduplicated units. ``all_units_for_bpe.txt``: one segment a line, space-separated unit ids (never
deduplicated: train_bpe's ``bpe.dedup`` decides), the seed project's format. Segments without
units (shorter than one frame) are left out of both. One recording at a time is in memory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tala.errors import InputError, run_cli
from tala.fileio import atomic_path, read_json_object
from tala.units.features import log


def runs(units: list[int]) -> tuple[list[int], list[int]]:
    """Run-length encoding: (the unit of each run, its length)."""
    values, lengths = [], []
    for unit in units:
        if values and values[-1] == unit:
            lengths[-1] += 1
        else:
            values.append(unit)
            lengths.append(1)
    return values, lengths


def segment_line(recording: str, segment: dict, frame_s: float, dedup: bool) -> dict:
    units = [int(u) for u in segment["units"]]
    values, lengths = runs(units) if dedup else (units, [1] * len(units))
    times, offset = [], 0
    for length in lengths:
        times.append(round(segment["start"] + offset * frame_s, 3))
        offset += length
    return {"recording": recording, "start": segment["start"], "end": segment["end"], "units": values,
            "times": times, "frames": lengths}


def collect(unit_files: list[Path], out_jsonl: Path, out_txt: Path, dedup: bool = False) -> dict:
    counts = {"recordings": 0, "segments": 0, "units": 0, "frames": 0}
    with atomic_path(out_jsonl) as tmp_jsonl, atomic_path(out_txt) as tmp_txt:
        with open(tmp_jsonl, "w", encoding="utf-8") as jsonl, open(tmp_txt, "w", encoding="utf-8") as txt:
            for path in unit_files:
                record = read_json_object(path)
                try:
                    recording, frame_s = str(record["recording"]), float(record["frame_s"])
                    segments = list(record["segments"])
                except (KeyError, TypeError, ValueError):
                    raise InputError(path, "not a quantize_units file (recording, frame_s, segments)") from None
                counts["recordings"] += 1
                for segment in segments:
                    if not segment.get("units"):
                        continue
                    line = segment_line(recording, segment, frame_s, dedup)
                    jsonl.write(json.dumps(line, separators=(",", ":")) + "\n")
                    txt.write(" ".join(map(str, segment["units"])) + "\n")
                    counts["segments"] += 1
                    counts["units"] += len(line["units"])
                    counts["frames"] += len(segment["units"])
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tala.units.collect", description=__doc__.splitlines()[0])
    parser.add_argument("out_jsonl", type=Path, help="corpus_timestamped.jsonl")
    parser.add_argument("out_txt", type=Path, help="all_units_for_bpe.txt")
    parser.add_argument("--units", nargs="*", type=Path, default=[], help="quantize_units JSON files, in order")
    parser.add_argument("--dedup", action=argparse.BooleanOptionalAction, default=False,
                        help="merge runs of one unit in the timestamped corpus (default: %(default)s)")
    args = parser.parse_args(argv)
    counts = collect(args.units, args.out_jsonl, args.out_txt, args.dedup)
    log(f"collect_units: {counts['recordings']} recordings, {counts['segments']} segments, {counts['frames']:,} "
        f"frames ({counts['units']:,} units{' after dedup' if args.dedup else ''}) -> {args.out_jsonl}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
