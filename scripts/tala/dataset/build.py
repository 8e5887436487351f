"""Gather one language's segments into train/valid/test splits, a summary and a dataset card.

    python -m tala.dataset.build --language samoan --segments a.jsonl b.jsonl ... --out-dir DIR
                           [--root DIR] [--ratios 0.8 0.1 0.1] [--seed 1234] [--problems JSON]

Splits are made *by recording*, so no chapter is heard in two splits. They are chosen to bring the
seconds of kept audio per split as close to ``ratios`` as possible (the sum of the absolute
differences): with up to EXHAUSTIVE_MAX_RECORDINGS recordings by trying every assignment, beyond
that greedily (the next recording goes to the split furthest below its share). The seed shuffles
the recordings first, which breaks ties (recordings of equal length) and orders the greedy pass;
the same inputs and seed give the same files byte for byte. With at least as many recordings as
splits of non-zero ratio, each of those splits gets at least one recording.

The segment JSONLs come from ``tala.dataset.clips``; their ``audio`` paths are relative to ROOT (default:
DIR). An empty one (a chapter whose alignment was rejected) is allowed, and so are none at all
(every chapter failed): the splits are then empty and the summary and card say why. ``--problems``
is a JSON list of ``{"recording", "stage", "reason"}`` objects (``severity`` and ``file`` kept
where given, as ``tala.report.problems`` writes them), the chapters that failed upstream (damaged audio,
no text, alignment rejected, ...); they are listed in summary.json and in the card, right after
the sizes, so that what to fix is seen at once.

Writes into DIR (nothing else):

- ``train.jsonl``, ``valid.jsonl``, ``test.jsonl``: one row per clip, ``audio`` relative to DIR;
- ``nemo/{split}.json``: NeMo manifests, ``audio_filepath`` relative to ``nemo/`` (NeMo resolves
  it against the manifest's folder);
- ``lhotse/{split}_recordings.jsonl.gz`` and ``lhotse/{split}_supervisions.jsonl.gz``: Lhotse
  RecordingSet and SupervisionSet manifests, one Recording and one supervision per clip. Lhotse
  resolves a relative ``source`` against the *current directory*, so the sources are relative to
  DIR, like the JSONL's ``audio``: load them from DIR (``os.chdir``, as for Hugging Face
  ``datasets``), or make them absolute with ``RecordingSet.with_path_prefix(DIR)``. They are
  plain gzipped JSON lines, written without lhotse, byte for byte reproducible (no time stamp or
  file name in the gzip header);
- ``summary.json`` and the card ``README.md``.

``nemo/`` and ``lhotse/`` are each written into a temporary folder and renamed into place whole,
every other file atomically, so a killed job never leaves a half-written result.
"""

from __future__ import annotations

import argparse
import gzip
import io
import itertools
import json
import os
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import tala
from tala.audio_io import SAMPLE_RATE
from tala.errors import InputError, run_cli
from tala.fileio import (atomic_dir, jsonl_text, read_json, read_jsonl, write_json_atomic, write_jsonl_atomic,
                         write_text_atomic)

SPLITS = ("train", "valid", "test")
RATIOS = (0.8, 0.1, 0.1)
SEED = 1234
EXHAUSTIVE_MAX_RECORDINGS = 8  # 3^8 = 6561 assignments: instant
CARD_DROPPED_ROWS = 50  # the card lists this many dropped segments (and flagged ids); summary.json has them all
PROBLEM_FIELDS = ("recording", "stage", "reason")
PROBLEM_EXTRAS = ("severity", "file")  # kept in summary.json where the problems file has them (tala.report.problems)

DATASET_FIELDS = ("id", "audio", "text", "normalized", "duration", "language", "recording", "verses",
                  "start", "end", "score", "cer", "word_times")


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

def read_segments(path: str | Path) -> list[dict]:
    """The lines of a segment JSONL; InputError naming it if it is missing or malformed."""
    path = Path(path)
    records = []
    for number, record in read_jsonl(path):
        missing = [key for key in ("id", "recording", "kept", "text", "duration") if key not in record]
        if missing:
            raise InputError(path, f"line {number}: missing {', '.join(missing)} (not a tala.dataset.clips JSONL?)")
        if record["kept"] and not record.get("audio"):
            raise InputError(path, f"line {number}: a kept segment without 'audio'")
        records.append(record)
    return records


def read_problems(path: str | Path) -> list[dict]:
    """The problems file: a JSON list of {"recording", "stage", "reason"} objects (strings; a
    "severity" and "file" are kept too, other keys left out); InputError naming it if it is missing
    or not that. Sorted by recording, stage and reason, duplicates removed."""
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(path, 'expected a JSON list of {"recording", "stage", "reason"} objects')
    for position, item in enumerate(data, 1):
        if not isinstance(item, dict) or not all(isinstance(item.get(key), str) for key in PROBLEM_FIELDS):
            raise InputError(path, f"item {position}: expected an object with string 'recording', 'stage' "
                                   f"and 'reason'")
    return sort_problems(data)


def sort_problems(problems: list[dict]) -> list[dict]:
    """Problems with their known keys only, sorted by recording, stage and reason, duplicates removed."""
    keys = PROBLEM_FIELDS + PROBLEM_EXTRAS
    known = [{key: str(item[key]) for key in keys if key in PROBLEM_FIELDS or isinstance(item.get(key), str)}
             for item in problems]
    unique = {json.dumps(item, sort_keys=True, ensure_ascii=False): item for item in known}
    ordered = sorted(unique.items(), key=lambda pair: ([pair[1].get(key, "") for key in keys], pair[0]))
    return [item for _, item in ordered]


# ---------------------------------------------------------------------------------------------
# Splitting
# ---------------------------------------------------------------------------------------------

def _split_error(totals: list[float], targets: list[float]) -> float:
    return sum(abs(t - g) for t, g in zip(totals, targets))


def assign_splits(durations: dict[str, float], ratios: tuple[float, ...] = RATIOS,
                  seed: int = SEED) -> dict[str, int]:
    """Each recording's split index, bringing the seconds per split closest to ``ratios``.

    Deterministic under ``seed``; every split with a non-zero ratio gets a recording when there
    are enough recordings, and a split with ratio 0 gets none.
    """
    total_ratio = sum(ratios)
    ratios = tuple(r / total_ratio for r in ratios)
    order = sorted(durations)
    random.Random(seed).shuffle(order)
    total = sum(durations.values())
    targets = [r * total for r in ratios]
    allowed = [k for k, r in enumerate(ratios) if r > 0]
    must_fill = allowed if len(order) >= len(allowed) else []

    if len(order) <= EXHAUSTIVE_MAX_RECORDINGS:
        best, best_error = None, float("inf")
        for choice in itertools.product(allowed, repeat=len(order)):
            if any(k not in choice for k in must_fill):
                continue
            totals = [0.0] * len(ratios)
            for rec, k in zip(order, choice):
                totals[k] += durations[rec]
            error = _split_error(totals, targets)
            if error < best_error - 1e-9:
                best, best_error = choice, error
        return dict(zip(order, best)) if best is not None else {}

    assignment: dict[str, int] = {}
    totals = [0.0] * len(ratios)
    for rec in order:
        k = max(allowed, key=lambda s: (targets[s] - totals[s], -s))
        assignment[rec] = k
        totals[k] += durations[rec]
    # One pass of single moves that lower the error, then make sure no wanted split is empty.
    for rec in order:
        here = assignment[rec]
        for k in allowed:
            if k == here:
                continue
            moved = list(totals)
            moved[here] -= durations[rec]
            moved[k] += durations[rec]
            counts = Counter(assignment.values())
            if counts[here] == 1 and here in must_fill:
                continue
            if _split_error(moved, targets) < _split_error(totals, targets) - 1e-9:
                assignment[rec], totals, here = k, moved, k
    for k in must_fill:
        if k not in assignment.values():
            counts = Counter(assignment.values())
            donor = max(allowed, key=lambda s: (counts[s], -s))
            rec = min((r for r in order if assignment[r] == donor), key=lambda r: (durations[r], r))
            assignment[rec] = k
    return assignment


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------

def dataset_row(record: dict, language: str, audio: str) -> dict:
    row = {key: record.get(key) for key in DATASET_FIELDS}
    row.update(audio=audio, language=language)
    return row


def nemo_line(row: dict) -> dict:
    return {"audio_filepath": Path("..", row["audio"]).as_posix(), "duration": row["duration"], "text": row["text"]}


def lhotse_recording(row: dict) -> dict:
    """A row's clip as a Lhotse Recording (as ``Recording.to_dict`` writes it), ``source`` relative
    to the dataset folder."""
    num_samples = int(round(row["duration"] * SAMPLE_RATE))
    return {"id": row["id"], "sources": [{"type": "file", "channels": [0], "source": row["audio"]}],
            "sampling_rate": SAMPLE_RATE, "num_samples": num_samples, "duration": num_samples / SAMPLE_RATE,
            "channel_ids": [0]}


def lhotse_supervision(row: dict) -> dict:
    """A row as a Lhotse SupervisionSegment covering its whole clip (the speaker is unknown); its
    ``word_times`` as the word alignment (the normalized words: [symbol, start, duration, score])."""
    supervision = {"id": row["id"], "recording_id": row["id"], "start": 0.0,
                   "duration": int(round(row["duration"] * SAMPLE_RATE)) / SAMPLE_RATE, "channel": 0,
                   "text": row["text"], "language": row["language"],
                   "custom": {key: row[key] for key in ("recording", "verses", "normalized", "score", "cer")}}
    if row.get("word_times"):
        supervision["alignment"] = {"word": [[word, start, round(end - start, 3), None] for word, (start, end)
                                             in zip(row["normalized"].split(), row["word_times"])]}
    return supervision


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzipped with no time stamp or file name in the header: the same bytes every run."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as handle:
        handle.write(data)
    return buffer.getvalue()


def write_dir_atomic(final: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (name -> bytes) into a temporary folder beside ``final``, then put it in
    place of ``final`` whole (an old ``final`` and anything else in it is gone)."""
    with atomic_dir(final) as tmp_dir:
        for name, data in files.items():
            (tmp_dir / name).write_bytes(data)


def build_dataset(segment_files: list[str | Path], out_dir: str | Path, language: str, *,
                  root: str | Path | None = None, ratios: tuple[float, ...] = RATIOS, seed: int = SEED,
                  problems: list[dict] | None = None) -> dict:
    """Write the splits, NeMo and Lhotse manifests, summary.json and README.md; return the summary.

    ``segment_files`` may be empty (every chapter failed): the outputs are then written empty,
    with ``problems`` (``{"recording", "stage", "reason"}`` dicts) saying why.
    """
    out_dir = Path(out_dir)
    root = Path(root) if root is not None else out_dir
    records: list[dict] = []
    seen: dict[str, Path] = {}
    empty_files: list[str] = []
    for path in segment_files:
        file_records = read_segments(path)
        if not file_records:
            empty_files.append(Path(path).stem)
        for record in file_records:
            if seen.setdefault(record["id"], Path(path)) != Path(path):
                raise InputError(path, f"segment id {record['id']} also in {seen[record['id']]}")
            if record["kept"]:
                clip = root / record["audio"]
                if not clip.is_file():
                    raise InputError(path, f"clip {record['audio']} not found under {root} "
                                           f"(the segments' audio paths are relative to --root)")
                record = {**record, "audio": Path(os.path.relpath(clip, out_dir)).as_posix()}
            records.append(record)
    records.sort(key=lambda r: (r["recording"], r["start"] if r.get("start") is not None else -1.0, r["id"]))

    kept = [r for r in records if r["kept"]]
    recordings = sorted({r["recording"] for r in records} | set(empty_files))
    kept_seconds = {rec: 0.0 for rec in recordings}
    for r in kept:
        kept_seconds[r["recording"]] += r["duration"]
    splittable = {rec: s for rec, s in kept_seconds.items() if s > 0}
    assignment = assign_splits(splittable, tuple(ratios), seed)

    rows: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for r in kept:
        if r["recording"] not in assignment:  # only zero-length clips
            continue
        rows[SPLITS[assignment[r["recording"]]]].append(dataset_row(r, language, r["audio"]))
    for name in SPLITS:
        write_jsonl_atomic(out_dir / f"{name}.jsonl", rows[name])
    write_dir_atomic(out_dir / "nemo", {
        f"{name}.json": jsonl_text([nemo_line(row) for row in rows[name]]).encode() for name in SPLITS})
    lhotse_files = {}
    for name in SPLITS:
        lhotse_files[f"{name}_recordings.jsonl.gz"] = gzip_bytes(
            jsonl_text([lhotse_recording(row) for row in rows[name]]).encode())
        lhotse_files[f"{name}_supervisions.jsonl.gz"] = gzip_bytes(
            jsonl_text([lhotse_supervision(row) for row in rows[name]]).encode())
    write_dir_atomic(out_dir / "lhotse", lhotse_files)

    summary = make_summary(language, records, recordings, assignment, tuple(ratios), seed,
                           sort_problems(problems or []))
    write_json_atomic(out_dir / "summary.json", summary)
    write_text_atomic(out_dir / "README.md", dataset_card(summary))
    return summary


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 4)


def make_summary(language: str, records: list[dict], recordings: list[str], assignment: dict[str, int],
                 ratios: tuple[float, ...], seed: int, problems: list[dict]) -> dict[str, Any]:
    kept = [r for r in records if r["kept"]]
    dropped = [r for r in records if not r["kept"]]
    splits = {}
    for k, name in enumerate(SPLITS):
        members = [r for r in kept if assignment.get(r["recording"]) == k]
        seconds = round(sum(r["duration"] for r in members), 3)
        splits[name] = {"ratio": ratios[k], "hours": _hours(seconds), "seconds": seconds,
                        "segments": len(members),
                        "recordings": sorted(rec for rec, s in assignment.items() if s == k)}
    per_recording = {}
    for rec in recordings:
        mine = [r for r in records if r["recording"] == rec]
        per_recording[rec] = {
            "split": SPLITS[assignment[rec]] if rec in assignment else None,
            "kept_segments": sum(r["kept"] for r in mine),
            "kept_seconds": round(sum(r["duration"] for r in mine if r["kept"]), 3),
            "dropped_segments": sum(not r["kept"] for r in mine),
            "dropped_seconds": round(sum(r["duration"] or 0.0 for r in mine if not r["kept"]), 3),
        }
    by_recording: dict[str, dict[str, int]] = {}
    for r in dropped:
        kinds = by_recording.setdefault(r["recording"], {})
        kinds[_kind(r)] = kinds.get(_kind(r), 0) + 1
    flagged: dict[str, list[str]] = {}
    for r in kept:
        for flag in r.get("flags") or []:
            flagged.setdefault(flag, []).append(r["id"])
    pieces = [r for r in kept if r.get("partial_verses")]
    return {
        "language": language,
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "splits": splits,
        "total": {"hours": _hours(sum(r["duration"] for r in kept)),
                  "seconds": round(sum(r["duration"] for r in kept), 3), "segments": len(kept),
                  "recordings": len(assignment)},
        "split_long_verses": {"verses": len({(r["recording"], v) for r in pieces for v in r["partial_verses"]}),
                              "pieces": len(pieces)},
        "dropped": {
            "segments": len(dropped),
            "seconds": round(sum(r["duration"] or 0.0 for r in dropped), 3),
            "by_reason": dict(sorted(Counter(_kind(r) for r in dropped).items())),
            "by_recording": dict(sorted((rec, dict(sorted(k.items()))) for rec, k in by_recording.items())),
            "segments_list": [{"id": r["id"], "recording": r["recording"], "verses": r.get("verses"),
                               "start": r.get("start"), "end": r.get("end"), "reason": r.get("reason")}
                              for r in dropped],
        },
        "flagged": {flag: ids for flag, ids in sorted(flagged.items())},
        "recordings": per_recording,
        "recordings_without_kept_segments": sorted(rec for rec in recordings if rec not in assignment),
        "problems": problems,
        "tool": tala.tool(),
    }


def _kind(record: dict) -> str:
    return record.get("reason_kind") or (record.get("reason") or "unknown").split()[0].rstrip(":")


# ---------------------------------------------------------------------------------------------
# The card
# ---------------------------------------------------------------------------------------------

def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def dataset_card(summary: dict) -> str:
    """The dataset card (markdown): sizes, problems, recordings, what was dropped and why, how to load it."""
    language = summary["language"]
    present = [name for name in SPLITS if summary["splits"][name]["segments"]]
    lines = [
        f"# {language}: read scripture, verse-aligned ASR dataset",
        "",
        f"Clips of whole verses (16 kHz mono PCM16 WAV) cut in the pauses of read-scripture "
        f"recordings, with the official text; a verse too long for one clip is cut between its words. "
        f"Made by the tala workflow (`tala.dataset.clips`, `tala.dataset.build`); "
        f"split by recording (no chapter in two splits), seed {summary['seed']}.",
        "",
        "## Splits",
        "",
        "| split | ratio | hours | segments | recordings |",
        "|---|---:|---:|---:|---|",
    ]
    for name in SPLITS:
        split = summary["splits"][name]
        lines.append(f"| {name} | {split['ratio']:g} | {split['hours']:.3f} | {split['segments']} | "
                     f"{', '.join(split['recordings']) or '-'} |")
    total = summary["total"]
    lines += [f"| **total** | | {total['hours']:.3f} | {total['segments']} | {total['recordings']} |", ""]
    if not total["segments"]:
        lines += ["The dataset is empty: no recording gave a clip (see Problems and Dropped).", ""]
    long_verses = summary["split_long_verses"]
    if long_verses["pieces"]:
        lines += [f"Verses too long for one clip, cut between words: {long_verses['verses']} "
                  f"({long_verses['pieces']} clips hold a part of one; their `text` is that part).", ""]
    else:
        lines += ["No verse had to be cut between words.", ""]

    lines += ["## Problems", ""]
    if summary["problems"]:
        lines += ["Chapters left out of the dataset (or worth a look), and why:", "",
                  "| recording | stage | reason |", "|---|---|---|"]
        lines += [f"| {_md(item['recording'])} | {_md(item['stage'])} | {_md(item['reason'])} |"
                  for item in summary["problems"]]
        lines.append("")
    else:
        lines += ["None.", ""]

    lines += ["## Recordings", "", "| recording | split | kept segments | kept seconds | dropped segments |",
              "|---|---|---:|---:|---:|"]
    for rec, info in summary["recordings"].items():
        lines.append(f"| {rec} | {info['split'] or '-'} | {info['kept_segments']} | {info['kept_seconds']:.1f} | "
                     f"{info['dropped_segments']} |")
    lines.append("")

    dropped = summary["dropped"]
    lines += ["## Dropped", ""]
    if not dropped["segments"]:
        lines += ["Nothing was dropped.", ""]
    else:
        lines += [f"{dropped['segments']} segments ({dropped['seconds']:.1f} s) were left out:", ""]
        explain = {"cer": "what the aligner's model heard differs from the text (character error rate above "
                          "the limit): misread, skipped or extra words, or a wrong text",
                   "too-short": "shorter than the minimum clip length, with no neighbour across a pause to join",
                   "over-max": "longer than the maximum clip length and not cuttable between words (no word "
                               "times, words that do not match the text, or a single word over the maximum)",
                   "unaligned": "the aligner could not place the verse (no score or times)"}
        for kind, count in dropped["by_reason"].items():
            lines.append(f"- **{kind}**: {count} ({explain.get(kind, 'see summary.json')})")
        lines += ["", "| segment | recording | verses | reason |", "|---|---|---|---|"]
        for item in dropped["segments_list"][:CARD_DROPPED_ROWS]:
            verses = ",".join(str(v) for v in item["verses"] or [])
            lines.append(f"| {item['id']} | {item['recording']} | {verses} | {_md(item['reason'])} |")
        if len(dropped["segments_list"]) > CARD_DROPPED_ROWS:
            lines.append(f"| ... | | | {len(dropped['segments_list']) - CARD_DROPPED_ROWS} more in summary.json |")
        lines.append("")
    for flag, ids in summary["flagged"].items():
        more = f", ... {len(ids) - CARD_DROPPED_ROWS} more in summary.json" if len(ids) > CARD_DROPPED_ROWS else ""
        lines += [f"Kept but flagged **{flag}** ({len(ids)}): {', '.join(ids[:CARD_DROPPED_ROWS])}{more}", ""]
    if summary["recordings_without_kept_segments"]:
        lines += ["Recordings with no kept segment: " + ", ".join(summary["recordings_without_kept_segments"]), ""]

    data_files = ", ".join(f'"{name}": "{name}.jsonl"' for name in present)
    first = present[0] if present else "train"
    lines += [
        "## Loading",
        "",
        "`audio` paths are relative to this folder. Hugging Face `datasets` resolves relative paths "
        "against the *current directory*, not the JSONL's folder (huggingface/datasets#7313), so load it "
        "from this folder:",
        "",
        "```python",
        "import os",
        "from datasets import Audio, load_dataset",
        "",
        "os.chdir(\"path/to/this/folder\")",
        f"ds = load_dataset(\"json\", data_files={{{data_files}}})",
        "ds = ds.cast_column(\"audio\", Audio(sampling_rate=16000))",
        f"example = ds[\"{first}\"][0]",
        "example[\"audio\"][\"array\"], example[\"text\"]",
        "```",
        "",
        "NeMo: `nemo/{train,valid,test}.json` are manifests (`audio_filepath` relative to `nemo/`, "
        "`duration`, `text`).",
        "",
        "Lhotse: `lhotse/{split}_recordings.jsonl.gz` and `lhotse/{split}_supervisions.jsonl.gz` are a "
        "RecordingSet and a SupervisionSet (one recording and one supervision per clip; `custom` holds "
        "`recording`, `verses`, `normalized`, `score`, `cer`; `alignment[\"word\"]` the normalized words' "
        "times, where known). Their sources are relative to this folder, "
        "which Lhotse resolves against the current directory: load them from here (or call "
        "`recordings.with_path_prefix(\"path/to/this/folder\")`). An empty split's files are empty.",
        "",
        "```python",
        "import os",
        "from lhotse import CutSet, load_manifest",
        "",
        "os.chdir(\"path/to/this/folder\")",
        f"cuts = CutSet.from_manifests(recordings=load_manifest(\"lhotse/{first}_recordings.jsonl.gz\"),",
        f"                             supervisions=load_manifest(\"lhotse/{first}_supervisions.jsonl.gz\"))",
        "cuts[0].load_audio(), cuts[0].supervisions[0].text",
        "```",
        "",
        "## Fields",
        "",
        "- `id`: `{recording}_{index}_{first verse}-{last verse}`",
        "- `audio`: the clip, relative to this folder",
        "- `text`: the official text of the verses in the clip (of its part of a verse cut between words); "
        "`normalized`: as the aligner saw it",
        "- `duration` (s), `start`/`end` (s in the recording, padding included)",
        "- `language`, `recording`, `verses` (verse numbers)",
        "- `score`: mean log-probability per frame of the alignment (closer to 0 is better)",
        "- `cer`: character error rate of the aligner model's greedy transcript against `normalized`",
        "- `word_times`: [start, end] (s from the clip's start) of each word of `normalized`, as aligned "
        "(null where the aligner's words did not match the text); the LoRA trainers cut a long clip between "
        "words with them (`part_seconds`)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tala.dataset.build",
        description="Split one language's segments by recording into train/valid/test; write the "
                    "JSONL splits, NeMo and Lhotse manifests, summary.json and a dataset card.")
    parser.add_argument("--language", required=True, help="language name, as in the config")
    parser.add_argument("--segments", nargs="*", default=[],
                        help="segment JSONLs from tala.dataset.clips (none: every chapter failed)")
    parser.add_argument("--out-dir", required=True, help="the dataset folder (the clips are under it)")
    parser.add_argument("--root", help="the segments' audio paths are relative to this (default: --out-dir)")
    parser.add_argument("--ratios", nargs=3, type=float, default=list(RATIOS), metavar=("TRAIN", "VALID", "TEST"),
                        help="share of the audio per split (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=SEED, help="shuffles recordings (default: %(default)s)")
    parser.add_argument("--problems", metavar="JSON",
                        help='JSON list of {"recording", "stage", "reason"}: chapters that failed upstream, '
                             "listed in the summary and card")
    args = parser.parse_args(argv)
    if any(r < 0 for r in args.ratios) or sum(args.ratios) <= 0:
        parser.error("--ratios must be non-negative with a positive sum")
    problems = read_problems(args.problems) if args.problems else []
    summary = build_dataset(args.segments, args.out_dir, args.language, root=args.root,
                            ratios=tuple(args.ratios), seed=args.seed, problems=problems)
    for name in SPLITS:
        split = summary["splits"][name]
        print(f"{name}: {split['segments']} segments, {split['seconds']:.1f} s, {len(split['recordings'])} recordings")
    print(f"dropped: {summary['dropped']['segments']} segments {summary['dropped']['by_reason']}")
    print(f"problems: {len(summary['problems'])}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
