"""Leave-one-chapter-out validation of a recognizer's fine-tuning settings, without the test chapter.

    python -m tala.finetune.chapter_folds --trainer moonshine \\
        --manifests results/L/dataset/train.jsonl results/L/dataset/valid.jsonl --work work/folds/L \\
        --setting "lr 3e-4=--lr 3e-4 --max-steps 120" --setting "lr 1e-4=--lr 1e-4 --max-steps 120" \\
        -- --start resources/demo/moonshine --num-beams 4 --part-seconds 8

A corpus of a few chapters has a validation split of one chapter, and settings chosen on it are
chosen for that chapter. Here each chapter of the manifests (their ``recording``) is held out in
turn: the trainer (``tala.finetune.moonshine`` or ``tala.finetune.speechllm``) learns from the
other chapters' clips with each setting and validates on the held-out one every ``--eval-every``
steps, the start model first (``--evaluate-start``). The table (``folds.tsv``, ``folds.json`` in
``--work``): for each setting and evaluated step, each held-out chapter's CER and all of them
pooled (weighted by their reference characters), the start as step 0; ``best`` is the setting and
step with the lowest pooled CER. Give it the train and valid manifests, never the test one.

Each run's folder is its trainer's output: a killed run resumes from its checkpoints, a finished
one is read, not run again. A setting's runs are named by it: the same name with other options is
refused (give them a new name), and so are runs made from other clips (a new ``--work`` for a
rebuilt dataset). Runs go ``--jobs`` at a time, each on ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tala.ctc_text import normalize_for_scoring
from tala.errors import InputError, run_cli
from tala.fileio import jsonl_text, read_json, read_jsonl, write_json_atomic, write_jsonl_atomic, write_text_atomic

TRAINERS = {"moonshine": "tala.finetune.moonshine", "speechllm": "tala.finetune.speechllm"}
LOG_FILE = "training_log.jsonl"


def chapters_of(manifests: list[Path], text_field: str) -> dict[str, list[dict]]:
    """The manifests' records by chapter (``recording``), each record's ``audio`` made absolute so
    that a fold's manifest can live anywhere."""
    chapters: dict[str, list[dict]] = {}
    for manifest in manifests:
        for number, record in read_jsonl(manifest):
            recording = record.get("recording")
            if not all(isinstance(record.get(k), str) for k in ("recording", "audio", text_field)):
                raise InputError(f"{manifest}:{number}", f'needs "recording", "audio" and {text_field!r} strings')
            record = {**record, "audio": str((manifest.parent / record["audio"]).resolve())}
            chapters.setdefault(recording, []).append(record)
    if len(chapters) < 2:
        raise InputError(manifests[0], f"{len(chapters)} chapter(s) in the manifests: folds need at least 2")
    return chapters


def write_folds(chapters: dict[str, list[dict]], work: Path) -> dict[str, tuple[Path, Path]]:
    """For each chapter, a train manifest of the others' clips and a valid manifest of its own."""
    folds = {}
    for held in chapters:
        folder = work / "folds" / held
        train = [r for name, records in chapters.items() if name != held for r in records]
        for name, records in (("train", train), ("valid", chapters[held])):
            write_jsonl_atomic(folder / f"{name}.jsonl", records)
        folds[held] = (folder / "train.jsonl", folder / "valid.jsonl")
    return folds


def run_name(setting: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", setting).strip("_") or "setting"


def clips_digest(chapters: dict[str, list[dict]]) -> str:
    """What the folds are made of: the SHA-256 of the chapters' records."""
    return hashlib.sha256(jsonl_text(r for c in sorted(chapters) for r in chapters[c]).encode()).hexdigest()


def claim_runs(work: Path, settings: dict[str, list[str]], common: list[str], clips: str) -> None:
    """Record each setting's options and the clips' digest beside its runs; the same name with
    other options, or runs made from other clips (the dataset rebuilt), is an error: their finished
    runs would be read as the new setting's."""
    names: dict[str, str] = {}
    for setting, options in settings.items():
        folder = work / "runs" / run_name(setting)
        if names.setdefault(folder.name, setting) != setting:
            raise InputError(folder, f"settings {names[folder.name]!r} and {setting!r} name the same runs")
        recorded, wanted = folder / "options.json", {"options": common, "setting": options, "clips": clips}
        if recorded.is_file():
            before = read_json(recorded)
            if before.get("clips") != clips:
                raise InputError(recorded, f"setting {setting!r} was run on other clips than the manifests hold now; "
                                           f"give a new --work or remove {folder}")  # fmt: skip
            if before != wanted:
                raise InputError(recorded, f"setting {setting!r} was run with other options; name it anew or remove {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(recorded, wanted)


def run_fold(trainer: str, train: Path, valid: Path, out: Path, options: list[str], threads: int) -> Path:
    """The trainer on one fold (skipped when its output folder is complete); its log's path."""
    if not (out / LOG_FILE).is_file():
        command = [sys.executable, "-m", TRAINERS[trainer], "--train", str(train), "--valid", str(valid),
                   "--out", str(out), "--threads", str(threads), "--no-progress", "--evaluate-start", *options]  # fmt: skip
        log = out.parent / f"{out.name}.log"
        out.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as stream:
            done = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT,
                                  env={**os.environ, "OMP_NUM_THREADS": str(threads)})  # fmt: skip
        if done.returncode != 0:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
            raise InputError(out, f"the trainer failed ({' '.join(tail)}); its log: {log}")
    return out / LOG_FILE


def curve(log: Path) -> dict[int, float]:
    """Validation CER by step from a trainer's log (the start is step 0; the record of which step's
    weights were kept is not an evaluation)."""
    return {r["step"]: r["eval_cer"] for _, r in read_jsonl(log) if "eval_cer" in r and "event" not in r}


def table(curves: dict[str, dict[str, dict[int, float]]], weights: dict[str, int]) -> list[dict]:
    """One row per setting and step evaluated in every fold: each chapter's CER and the pooled one."""
    rows = []
    for setting, by_chapter in curves.items():
        steps = sorted(set.intersection(*(set(c) for c in by_chapter.values())))
        for step in steps:
            cers = {chapter: by_chapter[chapter][step] for chapter in sorted(by_chapter)}
            pooled = sum(cers[c] * weights[c] for c in cers) / sum(weights[c] for c in cers)
            rows.append({"setting": setting, "step": step, "cer": round(pooled, 5), "chapters": cers})
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tala.finetune.chapter_folds", description=__doc__.splitlines()[0])
    parser.add_argument("--trainer", choices=sorted(TRAINERS), required=True)
    parser.add_argument("--manifests", nargs="+", type=Path, required=True, metavar="JSONL",
                        help="the train and valid manifests (never the test one)")
    parser.add_argument("--work", type=Path, required=True, help="folder of the folds, runs and table")
    parser.add_argument("--setting", action="append", required=True, metavar="NAME=OPTIONS",
                        help="a setting to compare: its name, '=', the trainer options it adds")
    parser.add_argument("--text-field", default="normalized")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="threads of each run")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="after --: the trainer options every run gets")
    args = parser.parse_args(argv)
    args.options = args.options[1:] if args.options[:1] == ["--"] else args.options
    settings = {}
    for item in args.setting:
        name, sep, options = item.partition("=")
        if not sep or not name.strip():
            parser.error(f"--setting {item!r}: expected NAME=OPTIONS")
        settings[name.strip()] = shlex.split(options)
    args.settings = settings
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chapters = chapters_of(args.manifests, args.text_field)
    claim_runs(args.work, args.settings, args.options, clips_digest(chapters))
    folds = write_folds(chapters, args.work)
    weights = {c: sum(len(normalize_for_scoring(r[args.text_field])) for r in records) for c, records in chapters.items()}
    jobs = [(setting, chapter) for setting in args.settings for chapter in folds]
    print(f"{len(chapters)} chapters ({', '.join(chapters)}), {len(args.settings)} settings: {len(jobs)} runs",
          file=sys.stderr)  # fmt: skip

    def one(job):
        setting, chapter = job
        out = args.work / "runs" / run_name(setting) / chapter
        log = run_fold(args.trainer, *folds[chapter], out, [*args.options, *args.settings[setting]], args.threads)
        print(f"  {setting} / held out {chapter}: done", file=sys.stderr)
        return job, curve(log)

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        done = list(pool.map(one, jobs))
    curves: dict[str, dict[str, dict[int, float]]] = {}
    for (setting, chapter), c in done:
        curves.setdefault(setting, {})[chapter] = c
    rows = table(curves, weights)
    if not rows:
        raise InputError(args.work / "runs", "no step was evaluated in every fold (--eval-every, --evaluate-start)")
    best = min(rows, key=lambda r: (r["cer"], r["step"]))
    write_json_atomic(args.work / "folds.json", {
        "trainer": args.trainer, "manifests": [str(m) for m in args.manifests], "options": args.options,
        "settings": {k: shlex.join(v) for k, v in args.settings.items()}, "chapters": weights,
        "rows": rows, "best": best})  # fmt: skip
    names = sorted(weights)
    lines = ["\t".join(["setting", "step", "cer", *names])]
    lines += ["\t".join([r["setting"], str(r["step"]), f"{r['cer']:.4f}", *(f"{r['chapters'][c]:.4f}" for c in names)])
              for r in rows]  # fmt: skip
    write_text_atomic(args.work / "folds.tsv", "\n".join(lines) + "\n")
    print(f"best: {best['setting']} at step {best['step']}: pooled CER {best['cer']:.4f} "
          f"(start {rows[0]['cer']:.4f}); {args.work / 'folds.tsv'}", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
